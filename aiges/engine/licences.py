"""Licences (``[fc] max``): how many one-shot calls and open sessions are served at once.

One pool is shared by both, as in the original loader. Running out is not a queue: the caller
gets 10110 at once, so an xsf client can retry on another instance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from aiges.errors import AigesError, ErrorCode


class Licences:
    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0

    @property
    def free(self) -> int:
        return self.total - self.used

    def acquire(self) -> None:
        if self.used >= self.total:
            raise AigesError(ErrorCode.LICENSE_NOT_ENOUGH, f"service license not enough ({self.total} in use)")
        self.used += 1

    def release(self) -> None:
        if self.used <= 0:
            raise RuntimeError("licence released twice")
        self.used -= 1

    @contextmanager
    def hold(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
