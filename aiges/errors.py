"""AIGes error codes and the one exception type that carries them.

Code deep in the engine raises ``AigesError(code, detail)``; the front that received the request
turns it into its wire form exactly once. The numbers are the original loader's (frame/error.go),
so existing clients keep their retry and reporting logic.
"""

from __future__ import annotations

import math
from enum import IntEnum


class ErrorCode(IntEnum):
    OK = 0
    INVALID_OP = 10003
    INVALID_HANDLE = 10008
    INVALID_DATA = 10009
    ENGINE_INACTIVE = 10101
    ONCE_TIMEOUT = 10102
    ELASTIC_LICENCE = 10104
    SESSION_REPEAT = 10105
    INVALID_OUTPUT = 10106
    INVALID_PARAM_VALUE = 10107
    WORKER_CRASH = 10109
    LICENSE_NOT_ENOUGH = 10110
    OUTPUT_BACKLOG = 10111
    STARTING = 10112
    RESOURCE_UNKNOWN = 10120
    RESOURCE_LIMIT = 10121
    RESOURCE_UNSUPPORTED = 10122
    AUTH_MISSING = 10130
    AUTH_MALFORMED = 10131
    AUTH_UNKNOWN_KEY = 10132
    AUTH_SIGNATURE = 10133
    AUTH_DATE = 10134
    AUTH_REPLAY = 10135
    AUTH_SERVICE = 10136
    AUTH_ADMIN = 10137
    AUTH_HOST = 10138
    AUTH_NONCE = 10139
    APP_RATE = 10140
    APP_SESSIONS = 10141
    STATE_FULL = 10142
    PB_MARSHAL = 10400
    PB_UNMARSHAL = 10401
    UNKNOWN_SERVICE = 10404
    WRAPPER_INIT = 10901
    WRAPPER_LOAD = 10903
    WRAPPER_UNLOAD = 10904
    WRAPPER_CREATE = 10905
    WRAPPER_DESTROY = 10906
    WRAPPER_WRITE = 10907
    WRAPPER_READ = 10908
    WRAPPER_EXEC = 10909
    WRAPPER_ASYNC = 10910


MESSAGES: dict[int, str] = {
    ErrorCode.OK: "ok",
    ErrorCode.INVALID_OP: "invalid service operation",
    ErrorCode.INVALID_HANDLE: "service instance invalid",
    ErrorCode.INVALID_DATA: "input invalid data",
    ErrorCode.ENGINE_INACTIVE: "service instance inactive, already release",
    ErrorCode.ONCE_TIMEOUT: "service exec once request timeout",
    ErrorCode.ELASTIC_LICENCE: "licence resize failed",
    ErrorCode.SESSION_REPEAT: "session handle already in use",
    ErrorCode.INVALID_OUTPUT: "wrapper output data invalid(key or type)",
    ErrorCode.INVALID_PARAM_VALUE: "service para value invalid",
    ErrorCode.WORKER_CRASH: "worker process crashed, session lost",
    ErrorCode.LICENSE_NOT_ENOUGH: "service license not enough",
    ErrorCode.OUTPUT_BACKLOG: "session output not read: more is waiting than the server holds for a session",
    ErrorCode.STARTING: "the service is starting: the model is still loading",
    ErrorCode.RESOURCE_UNKNOWN: "personalised resource not loaded",
    ErrorCode.RESOURCE_LIMIT: "personalised resources: over the configured count or size",
    ErrorCode.RESOURCE_UNSUPPORTED: "the wrapper cannot load personalised resources",
    ErrorCode.AUTH_MISSING: "no credentials: sign the request (host, date, authorization), or present a client "
    "certificate an app is named by",
    ErrorCode.AUTH_MALFORMED: "the authorization is not in the form the platform signs",
    ErrorCode.AUTH_UNKNOWN_KEY: "unknown api_key",
    ErrorCode.AUTH_SIGNATURE: "the signature does not match the request",
    ErrorCode.AUTH_DATE: "the signed date is missing, unreadable or outside the allowed clock skew",
    ErrorCode.AUTH_REPLAY: "this signature was already used",
    ErrorCode.AUTH_SERVICE: "the app is not allowed to call this service",
    ErrorCode.AUTH_ADMIN: "an admin operation: the app is not an admin",
    ErrorCode.AUTH_HOST: "the signed host is not one this server answers for ([auth] hosts)",
    ErrorCode.AUTH_NONCE: "this server requires every signature to carry an x-aiges-nonce ([auth] require_nonce)",
    ErrorCode.APP_RATE: "the app is over its call rate",
    ErrorCode.APP_SESSIONS: "the app has as many sessions open as it may",
    ErrorCode.STATE_FULL: "the server cannot remember more now (its replay cache or the host's app table is full)",
    ErrorCode.PB_MARSHAL: "marshal pb message fail",
    ErrorCode.PB_UNMARSHAL: "unmarshal pb message fail",
    ErrorCode.UNKNOWN_SERVICE: "no such service here: name one this server serves (LoaderInput.serviceId, the model)",
    ErrorCode.WRAPPER_INIT: "wrapper init failed",
    ErrorCode.WRAPPER_LOAD: "wrapper resource load failed",
    ErrorCode.WRAPPER_UNLOAD: "wrapper resource unload failed",
    ErrorCode.WRAPPER_CREATE: "wrapper create failed",
    ErrorCode.WRAPPER_DESTROY: "wrapper destroy failed",
    ErrorCode.WRAPPER_WRITE: "wrapper write failed",
    ErrorCode.WRAPPER_READ: "wrapper read failed",
    ErrorCode.WRAPPER_EXEC: "wrapper exec failed",
    ErrorCode.WRAPPER_ASYNC: "wrapper async result failed",
}


class AigesError(Exception):
    """An error with an AIGes code; ``message`` is what the client sees in ``err``;
    ``retry_after_s``, when set, is when a retry could be served (the fronts send it as
    ``Retry-After`` / ``retry-after-ms``)."""

    retry_after_s: float | None = None

    def __init__(self, code: int, detail: str | None = None) -> None:
        self.code = int(code)
        self.message = detail if detail else MESSAGES.get(self.code, "error")
        super().__init__(self.message)

    def __reduce__(self) -> tuple[type[AigesError], tuple[int, str]]:
        return (AigesError, (self.code, self.message))

    def __repr__(self) -> str:
        return f"AigesError({self.code}, {self.message!r})"


class Overloaded(AigesError):
    """10110, refused at the door: the call could not start (or finish) before its deadline, or
    no licence is free; ``retry_after_s`` says when capacity is expected back."""

    def __init__(self, detail: str, retry_after_s: float) -> None:
        hint_s = max(retry_after_s, 0.001)
        super().__init__(ErrorCode.LICENSE_NOT_ENOUGH, f"{detail}; retry in {math.ceil(hint_s * 1000)} ms")
        self.detail = detail
        self.hint_s = hint_s
        self.retry_after_s = self.hint_s

    def __reduce__(self) -> tuple[type[Overloaded], tuple[str, float]]:  # type: ignore[override]
        return (Overloaded, (self.detail, self.hint_s))


def wrapper_error_text(text: str, code: int) -> str:
    """The original's form of a wrapper-reported error: ``"<wrapperError(n)>;code=<n>"``."""
    return f"{text};code={code}"


HTTP_STATUS: dict[int, int] = {
    ErrorCode.OK: 200,
    ErrorCode.INVALID_OP: 400,
    ErrorCode.INVALID_DATA: 400,
    ErrorCode.INVALID_PARAM_VALUE: 400,
    ErrorCode.SESSION_REPEAT: 400,
    ErrorCode.PB_UNMARSHAL: 400,
    ErrorCode.OUTPUT_BACKLOG: 400,
    ErrorCode.RESOURCE_LIMIT: 400,
    ErrorCode.RESOURCE_UNSUPPORTED: 400,
    ErrorCode.INVALID_HANDLE: 404,
    ErrorCode.ENGINE_INACTIVE: 404,
    ErrorCode.RESOURCE_UNKNOWN: 404,
    ErrorCode.UNKNOWN_SERVICE: 404,
    ErrorCode.LICENSE_NOT_ENOUGH: 503,
    ErrorCode.STARTING: 503,
    ErrorCode.ONCE_TIMEOUT: 504,
    ErrorCode.AUTH_MISSING: 401,
    ErrorCode.AUTH_MALFORMED: 401,
    ErrorCode.AUTH_UNKNOWN_KEY: 401,
    ErrorCode.AUTH_SIGNATURE: 401,
    ErrorCode.AUTH_DATE: 401,
    ErrorCode.AUTH_REPLAY: 401,
    ErrorCode.AUTH_SERVICE: 403,
    ErrorCode.AUTH_ADMIN: 403,
    ErrorCode.AUTH_HOST: 401,
    ErrorCode.AUTH_NONCE: 401,
    ErrorCode.APP_RATE: 429,
    ErrorCode.APP_SESSIONS: 429,
    ErrorCode.STATE_FULL: 503,
}


def http_status(code: int) -> int:
    """The HTTP status the HTTP and OIP fronts answer an AIGes code with: the caller's fault 400,
    no or bad credentials 401, an app not allowed 403, an unknown or ended session 404, an app over
    its own limits 429, no licence or draining 503 (retry elsewhere), a timeout 504, and anything
    the wrapper or a worker did 500."""
    return HTTP_STATUS.get(code, 500)


# The original Python SDK's ``aiges.errors`` constants, kept for wrappers that import them: the
# codes its gRPC plugin server answered with.
OK = 0
INIT_ERROR = 30001  # the wrapper could not be initialised (wrapperInit raised)
USER_INIT_ERROR = 30002  # wrapperInit returned non-zero
USER_EXEC_ERROR = 30003  # a call into the wrapper failed
