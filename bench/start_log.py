"""The start log of the overload benchmark's models (``bench/overload.py``), standard library only
so that aiges's wrapper, MLServer's model and PyTriton's callable (each in its own interpreter)
share it.

Each execution appends one line, ``<start> <sent>``: the wall-clock time (``time.time()``) at which
the model began the call and the send time the caller put in the call's ``sent`` tensor. The file
is opened with O_APPEND, so the lines of several worker processes and threads do not mix; the
benchmark reads it after each run.
"""

import os
import time

LOG_ENV = "OVERLOAD_START_LOG"
SERVICE_MS_ENV = "OVERLOAD_SERVICE_MS"


class StartLog:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def started(self, sent: bytes | str) -> None:
        """Record that a call sent at ``sent`` (seconds since the epoch, as text) starts now."""
        start = time.time()
        text = sent.decode() if isinstance(sent, bytes) else sent
        os.write(self.fd, f"{start:.6f} {float(text):.6f}\n".encode())


def from_environment() -> tuple[StartLog, float]:
    """The log named by ``OVERLOAD_START_LOG`` and the service time in seconds (``OVERLOAD_SERVICE_MS``)."""
    return StartLog(os.environ[LOG_ENV]), float(os.environ.get(SERVICE_MS_ENV, "20")) / 1000
