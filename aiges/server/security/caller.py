"""Who is calling, handed from the caller check to the front that builds the call's context.

The gRPC interceptor (``grpc_auth``) binds the app it authenticated to the call's
``ServicerContext`` in a ``GrpcCallers`` table that the fronts read (``callers.of(context)``),
and the HTTP middleware (``http_auth``) stores it on the request under ``CALLER_KEY``. Both hand
on a ``Caller`` (``aiges.engine.context``): the app id, its rights and quota, and the address
the request came from. With ``[auth] mode = "none"`` nothing is bound and every call is
anonymous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc
from aiohttp import web

from aiges.engine.context import ANONYMOUS, Caller, Quota
from aiges.errors import AigesError, ErrorCode
from aiges.server.security.app_keys import App

ADMIN_OPS = frozenset({"AILBType", "AILoad", "AIUnLoad"})
"""xsf ops that change the server (licences, resources): only admin apps may send them."""

CALLER_KEY = web.RequestKey("aiges_caller", Caller)


@dataclass(frozen=True, slots=True)
class AppCaller(Caller):
    """An authenticated app, with the services it may call (``[[app]] services``; "*" for any):
    with several services the front that routes a call checks them (``allowed``)."""

    services: frozenset[str] = frozenset()


def allowed(caller: Caller, service: str) -> bool:
    """May ``caller`` call ``service``: not authenticated (``[auth] mode = "none"``), or an app
    that lists it (or "*")."""
    if not isinstance(caller, AppCaller):
        return True
    return "*" in caller.services or service in caller.services


def caller_of(app: App, address: str = "", identity: str = "") -> Caller:
    return AppCaller(
        app_id=app.app_id,
        admin=app.admin,
        quota=Quota(app.rate, int(app.burst), app.max_sessions),
        identity=identity,
        address=address,
        services=frozenset(app.services),
    )


class CallerSource(Protocol):
    """Where a gRPC front learns who is calling."""

    def of(self, context: grpc.aio.ServicerContext) -> Caller: ...


class GrpcCallers:
    """The authenticated caller of each gRPC call in progress, by its ``ServicerContext``."""

    def __init__(self) -> None:
        self._callers: dict[grpc.aio.ServicerContext, Caller] = {}

    def bind(self, context: grpc.aio.ServicerContext, caller: Caller) -> None:
        self._callers[context] = caller

    def unbind(self, context: grpc.aio.ServicerContext) -> None:
        self._callers.pop(context, None)

    def of(self, context: grpc.aio.ServicerContext) -> Caller:
        return self._callers.get(context, ANONYMOUS)

    @property
    def bound(self) -> int:
        """Calls in progress with a caller bound (each is unbound when its call ends)."""
        return len(self._callers)


def http_caller(request: web.Request) -> Caller:
    caller: Caller = request.get(CALLER_KEY, ANONYMOUS)
    return caller


def admin_refusal(caller: Caller, what: str) -> AigesError:
    return AigesError(ErrorCode.AUTH_ADMIN, f"{what} is an admin operation; app {caller.app_id} is not an admin")


async def require_admin(context: grpc.aio.ServicerContext, caller: Caller, op: str) -> None:
    """Refuse (PERMISSION_DENIED, with the AIGes code 10137) an admin op from an authenticated app
    that is not an admin."""
    if caller.authenticated and not caller.admin:
        from aiges.server.security.grpc_auth import refuse

        await refuse(context, admin_refusal(caller, f"op {op}"), "xsf")
