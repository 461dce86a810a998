"""The web console on the HTTP front: try the service in a browser.

    GET  /, /console              the page (static/console: Preact + htm, vendored, nothing from a CDN)
    GET  /console/service.json    the form, from the wrapper's declared fields (console_form)
    GET  /console/status.json     the live panel: calls per second, p50/p99, licences, workers

Each takes ``?service=NAME`` (default: the first service); the form lists every service, and the
page shows one at a time (``/console?service=NAME``), with a link to each of the others.
    POST /console/snippets        the call just made, as curl, grpcurl, aiges call and Python
    GET  /console/static/...      the page's scripts and styles, and the vendored libraries

The page calls the ASE JSON API like any client (POST the route for one call, a WebSocket on it
for a session), so what works in the console works from curl. Its Content-Security-Policy allows
this server only: a script or style that tried to load from elsewhere would fail in the browser.
Every answer of these routes (the error ones too) says ``X-Content-Type-Options: nosniff``, so a
browser takes each for the type it is served as. While the workers are still loading,
``service.json`` answers 503 (10112) with Retry-After, and the page waits and asks again.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aiges.errors import AigesError, ErrorCode
from aiges.protocol.json_body import parse_json
from aiges.schema import declared_outputs
from aiges.server.http import console_form, console_snippets
from aiges.server.recent_calls import of_service
from aiges.server.service import Service

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront

STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "console" / "index.html"
StatusSource = Callable[[], Mapping[str, Any]]
"""The server's state as ``App.snapshot()`` gives it (address, phase, health, uptime)."""
NOSNIFF = ("X-Content-Type-Options", "nosniff")


def csp(page: str) -> str:
    """This server only; the page's one inline script (its import map) by its hash."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in re.findall(r"<script type=\"importmap\">(.*?)</script>", page, re.S)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; media-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'self'"
    )


def status(service: Service, source: StatusSource | None) -> dict[str, Any]:
    """The live panel's figures: the server's snapshot, the service's workers and recent calls."""
    state = service.engine.status()
    snapshot = dict(source()) if source is not None else {}
    return {
        "service": service.label,
        "version": service.version,
        "address": snapshot.get("address", ""),
        "phase": snapshot.get("phase", ""),
        "health": snapshot.get("health", "serving" if state.live else "starting"),
        "uptime_s": snapshot.get("uptime_s", 0),
        "calls": of_service(service.label).summary(),
        "licences": {"total": state.licences_total, "used": state.licences_used, "free": state.licences_free},
        "sessions": state.sessions,
        "inflight": state.inflight,
        "draining": state.draining,
        "workers": [
            {"index": w.index, "state": w.state, "pid": w.pid, "gpu": w.gpu, "restarts": w.restarts}
            for w in state.workers
        ],
    }


def grpc_address(request: web.Request, source: StatusSource | None) -> str:
    """Where the gRPC service answers, for the commands: the address the server advertises,
    with the host the browser used when the server listens on every interface."""
    address = str(source().get("address", "")) if source is not None else ""
    if not address:
        return "HOST:PORT"
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "", "[::]"):
        return f"{request.url.host or '127.0.0.1'}:{port}"
    return address


def add_routes(router: web.UrlDispatcher, front: HttpFront, source: StatusSource | None) -> None:
    """The console's routes; before the ASE JSON API's catch-all (a wrapper whose ``route`` is one
    of these paths is still served on gRPC and OIP, not here)."""
    page = PAGE.read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": csp(page), "Cache-Control": "no-cache"}

    async def console(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html", headers=headers)

    async def service(request: web.Request) -> web.Response:
        chosen, model = front.pick(request)
        info = chosen.engine.info()
        described = console_form.form(model, info.capabilities if info is not None else frozenset())
        described["grpc"] = grpc_address(request, source)
        described["services"] = [
            {"name": s.label, "version": s.version, "ready": front.model_ready(s), "current": s is chosen}
            for s in front.services
        ]
        return web.json_response(described, headers={"Cache-Control": "no-store"})

    async def live(request: web.Request) -> web.Response:
        return web.json_response(status(front.pick_service(request), source), headers={"Cache-Control": "no-store"})

    async def snippets(request: web.Request) -> web.Response:
        _, model = front.pick(request)
        body = parse_json(await request.read())
        if not isinstance(body, dict):
            raise AigesError(ErrorCode.INVALID_DATA, "the body must be a JSON object with the request")
        described = console_form.form(model, frozenset())
        call = console_snippets.parse_call(
            body,
            service_id=model.name,
            route=described["route"],
            http_base=f"{request.scheme}://{request.host}",
            grpc_address=grpc_address(request, source),
            expect=declared_outputs(model.schema),
            service=model.name if front.services.several else "",
        )
        return web.json_response(console_snippets.snippets(call))

    routes = [
        router.add_get("/", console),
        router.add_get("/console", console),
        router.add_get("/console/", console),
        router.add_get("/console/service.json", service),
        router.add_get("/console/status.json", live),
        router.add_post("/console/snippets", snippets),
    ]
    owned = {route.resource for route in routes if route.resource is not None}
    owned.add(router.add_static("/console/static", STATIC, follow_symlinks=False, show_index=False))

    async def nosniff(request: web.Request, response: web.StreamResponse) -> None:
        """On every response of these routes, as it is sent: the handlers' own, the error
        middleware's and the static files' (found, missing or refused)."""
        if request.match_info.route.resource in owned:
            response.headers[NOSNIFF[0]] = NOSNIFF[1]

    front.app.on_response_prepare.append(nosniff)
