"""The ``RequestContext`` of a call, as each kind of front builds it: the handle the front gave
the call, the caller its check authenticated, the trace the client sent, the deadline and the
priority.

    gRPC (every gRPC front)  the caller bound by the interceptor; the call's gRPC deadline;
                             priority from the ``x-request-priority`` metadata
    HTTP                     the caller the middleware stored on the request; the deadline from
                             ``X-Request-Timeout`` (seconds) or ``Grpc-Timeout`` (gRPC's form,
                             e.g. ``250m``); priority from ``X-Request-Priority``
    per call                 ``tighter``: a front's own limit (xsf ``waitTime`` on a one-shot,
                             OIP's ``timeout`` parameter) and priority (OIP's ``priority``)

A priority is an integer, 0 by default; higher is served first, and under overload refusals fall
on the lowest. A deadline the caller gives is absolute from then on (``time.monotonic()``); the
service's ``[fc] deadline_ms`` applies where none is given (the engine's).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import grpc
from aiohttp import web

from aiges.engine.context import RequestContext, deadline_in
from aiges.errors import AigesError, ErrorCode
from aiges.server.security.caller import CallerSource, http_caller

PRIORITY = "x-request-priority"
TIMEOUT = "x-request-timeout"
GRPC_TIMEOUT = "grpc-timeout"
GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def bad_value(name: str, text: str, expected: str) -> AigesError:
    return AigesError(ErrorCode.INVALID_PARAM_VALUE, f"{name} must be {expected}, got {text!r}")


def parse_priority(text: str | None, name: str = PRIORITY) -> int:
    if text is None or text == "":
        return 0
    try:
        return int(text)
    except ValueError:
        raise bad_value(name, text, "an integer (higher is served first)") from None


def parse_seconds(text: str, name: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise bad_value(name, text, "a number of seconds") from None
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise bad_value(name, text, "a positive number of seconds")
    return seconds


def parse_grpc_timeout(text: str) -> float:
    """gRPC's ``grpc-timeout`` form: up to 8 digits and a unit (H, M, S, m, u, n)."""
    unit = GRPC_UNITS.get(text[-1:]) if text else None
    digits = text[:-1]
    if unit is None or not digits.isdigit() or len(digits) > 8 or int(digits) == 0:
        raise bad_value("Grpc-Timeout", text, "digits and a unit (H, M, S, m, u, n), e.g. 250m")
    return int(digits) * unit


def tighter(context: RequestContext, timeout_s: float | None = None, priority: int | None = None) -> RequestContext:
    """The context with a front's own limit (the earlier deadline wins) and priority applied."""
    if timeout_s is not None:
        deadline = time.monotonic() + timeout_s
        if context.deadline is None or deadline < context.deadline:
            context.deadline = deadline
    if priority is not None:
        context.priority = priority
    return context


def with_oip_parameters(context: RequestContext, parameters: Mapping[str, str]) -> RequestContext:
    """OIP's request parameters ``timeout`` (microseconds, as Triton's) and ``priority``."""
    timeout = parameters.get("timeout")
    timeout_s = None
    if timeout is not None:
        if not timeout.isdigit() or int(timeout) == 0:
            raise bad_value("parameter timeout", timeout, "a positive whole number of microseconds")
        timeout_s = int(timeout) / 1e6
    priority = parameters.get("priority")
    return tighter(context, timeout_s, parse_priority(priority, "parameter priority") if priority else None)


def grpc_context(tag: str, call: grpc.aio.ServicerContext, callers: CallerSource, trace: str = "") -> RequestContext:
    priority = 0
    for key, value in call.invocation_metadata() or ():
        if key == PRIORITY and isinstance(value, str):
            priority = parse_priority(value)
    return RequestContext(tag, callers.of(call), trace, deadline_in(call.time_remaining()), priority)


def http_context(tag: str, request: web.Request, trace: str = "") -> RequestContext:
    headers = request.headers
    return RequestContext(
        tag, http_caller(request), trace, deadline_in(http_timeout(headers)), parse_priority(headers.get(PRIORITY))
    )


def http_timeout(headers: Mapping[str, str]) -> float | None:
    text = headers.get(TIMEOUT)
    if text is not None:
        return parse_seconds(text, "X-Request-Timeout")
    text = headers.get(GRPC_TIMEOUT)
    return parse_grpc_timeout(text) if text is not None else None
