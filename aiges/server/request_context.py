"""The ``RequestContext`` of a call, as each kind of front builds it: the handle the front gave
the call, the caller its check authenticated, the trace the client sent, and the deadline.

    gRPC  the caller bound by the interceptor (``GrpcCallers``); the call's gRPC deadline
    HTTP  the caller the middleware stored on the request (``CALLER_KEY``)
"""

from __future__ import annotations

import grpc
from aiohttp import web

from aiges.engine.context import RequestContext, deadline_in
from aiges.server.security.caller import CallerSource, http_caller


def grpc_context(tag: str, call: grpc.aio.ServicerContext, callers: CallerSource, trace: str = "") -> RequestContext:
    return RequestContext(tag, callers.of(call), trace, deadline_in(call.time_remaining()))


def http_context(tag: str, request: web.Request, trace: str = "") -> RequestContext:
    return RequestContext(tag, http_caller(request), trace)
