"""Who is calling: the app a request was authenticated as, for the code it reaches.

The gRPC interceptor and the HTTP middleware set ``CALLER`` for the request's task (tasks it
starts inherit it); it stays None when ``[auth] mode`` is none, so every check below is a no-op
then.
"""

from __future__ import annotations

from contextvars import ContextVar

import grpc

from aiges.errors import AigesError, ErrorCode
from aiges.server.security.app_keys import App

CALLER: ContextVar[App | None] = ContextVar("aiges_caller", default=None)

ADMIN_OPS = frozenset({"AILBType", "AILoad", "AIUnLoad"})
"""xsf ops that change the server (licences, resources): only admin apps may send them."""


def admin_refusal(app: App, what: str) -> AigesError:
    return AigesError(ErrorCode.AUTH_ADMIN, f"{what} is an admin operation; app {app.app_id} is not an admin")


async def require_admin(context: grpc.aio.ServicerContext, op: str) -> None:
    """Refuse (PERMISSION_DENIED, with the AIGes code) an admin op from an app that is not an admin."""
    app = CALLER.get()
    if app is None or app.admin:
        return
    from aiges.server.security.grpc_auth import refuse

    await refuse(context, admin_refusal(app, f"op {op}"), "xsf")
