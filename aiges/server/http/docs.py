"""``/openapi.json`` and ``/docs``: the API described, from the wrapper's declarations.

The docs page is one self-contained HTML document (no script or stylesheet fetched from
elsewhere), so it also works inside clusters with no way out: each operation, the ASE JSON request
and response schemas, and a ready-to-run example call.
"""

from __future__ import annotations

import base64
import html
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aiges.schema import route_of
from aiges.schema.openapi import build_openapi

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront
    from aiges.server.model import Model

STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
    "code,pre{font:13px ui-monospace,monospace;background:#f4f4f4}pre{padding:.8em;overflow:auto}"
    "td{padding:.2em .8em .2em 0;vertical-align:top}.m{font-weight:bold}"
)


def schema_of(model: Model) -> dict[str, Any]:
    """The wrapper's schema; a bare one for wrappers that declare nothing (function style, C)."""
    if model.schema:
        return dict(model.schema)
    meta = {"serviceId": model.name, "version": model.version, "route": route_of(model.name, model.version, None)}
    return {"meta": meta, "schemainput": {"type": "object"}, "schemaoutput": {"type": "object"}}


def example_call(schema: dict[str, Any]) -> dict[str, Any]:
    """A request body built from the declarations: each input with sample data, default params."""
    properties = schema["schemainput"].get("properties", {})
    service_id = schema["meta"]["serviceId"]
    params = properties.get("parameter", {}).get("properties", {}).get(service_id, {}).get("properties", {})
    payload = {}
    for name, spec in properties.get("payload", {}).get("properties", {}).items():
        type_key = next((k for k in ("text", "audio", "image", "video", "other") if k in spec["properties"]), "text")
        payload[name] = {type_key: base64.b64encode(b"hello aiges").decode(), "status": 3}
    parameter = {key: spec["defaultVal"] for key, spec in params.items() if "defaultVal" in spec}
    return {"header": {"app_id": "example"}, "parameter": {service_id: parameter}, "payload": payload}


def page(schema: dict[str, Any], document: dict[str, Any], base: str) -> str:
    meta = schema["meta"]
    rows = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            rows.append(
                f"<tr><td class=m>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation.get('operationId', ''))}</td></tr>"
            )
    example = json.dumps(example_call(schema), indent=2, ensure_ascii=False)
    curl = f"curl -s {base}{meta['route']} -H 'content-type: application/json' -d @request.json"

    def block(value: Any) -> str:
        return f"<pre>{html.escape(json.dumps(value, indent=2, ensure_ascii=False))}</pre>"

    return f"""<!doctype html>
<html><head><meta charset=utf-8><title>{html.escape(meta["serviceId"])} - aiges</title><style>{STYLE}</style></head>
<body><h1>{html.escape(meta["serviceId"])} <small>{html.escape(meta["version"])}</small></h1>
<p>Served by aiges. The machine-readable description is <a href="/openapi.json">/openapi.json</a>.</p>
<h2>Routes</h2><table>{"".join(rows)}</table>
<p>The ASE JSON route also takes a WebSocket: each text frame one request (status 0 first, 1 continuing,
2 last), each output batch pushed back as a response as soon as it is produced.</p>
<h2>Example call</h2><p><code>request.json</code>:</p><pre>{html.escape(example)}</pre>
<pre>{html.escape(curl)}</pre>
<h2>Request</h2>{block(schema["schemainput"])}
<h2>Response</h2>{block(schema["schemaoutput"])}
</body></html>"""


def add_routes(router: web.UrlDispatcher, front: HttpFront) -> None:
    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(build_openapi(schema_of(front.current_model())))

    async def docs(request: web.Request) -> web.Response:
        schema = schema_of(front.current_model())
        base = f"{request.scheme}://{request.host}"
        return web.Response(text=page(schema, build_openapi(schema), base), content_type="text/html")

    async def index(request: web.Request) -> web.Response:
        raise web.HTTPFound("/docs")

    router.add_get("/openapi.json", openapi)
    router.add_get("/docs", docs)
    router.add_get("/", index)
