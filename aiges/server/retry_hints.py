"""When a refused caller may retry, as each wire says it (``AigesError.retry_after_s``): gRPC
trailing metadata ``retry-after-ms`` and ``grpc-retry-pushback-ms`` (which gRPC's own retry
policy obeys), HTTP ``Retry-After`` (whole seconds, at least 1)."""

from __future__ import annotations

import math

from aiges.errors import AigesError

RETRY_AFTER_MS = "retry-after-ms"
PUSHBACK_MS = "grpc-retry-pushback-ms"


def grpc_hints(error: AigesError) -> tuple[tuple[str, str], ...]:
    if error.retry_after_s is None:
        return ()
    ms = str(max(math.ceil(error.retry_after_s * 1000), 1))
    return ((RETRY_AFTER_MS, ms), (PUSHBACK_MS, ms))


def http_retry_after(error: AigesError) -> str | None:
    if error.retry_after_s is None:
        return None
    return str(max(math.ceil(error.retry_after_s), 1))
