"""``from aiges.utils.log import log``, as wrappers written for the original SDK do.

``log`` is the logger ``wrapper``. Inside an aiges worker its records go to the worker's
stderr through the worker's own logging set-up, which the server captures and logs with the
worker id. Anywhere else (``python wrapper.py`` running the wrapper's ``__main__``, where
nothing has set logging up) they are printed to stderr from INFO up in the original's format
(``fmt``), as the original SDK printed them.

``getLogger`` and ``getFileLogger`` reconfigure it as the original's functions of those names
did: the first with a console handler, the second writing ``<logpath>/<name>.log``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

fmt = "%(asctime)s - %(name)s:%(funcName)s:%(lineno)s - %(levelname)s:  %(message)s"
level = logging.DEBUG
logpath = "/log/app"


class _ConsoleFallback(logging.StreamHandler[TextIO]):
    """Prints a record only while the root logger has no handler: a worker (or any program that
    set logging up) gets the record through propagation instead, so nothing is printed twice."""

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


formatter = logging.Formatter(fmt)
ch = _ConsoleFallback(sys.stderr)
ch.setFormatter(formatter)
ch.setLevel(logging.INFO)

log = logging.getLogger("wrapper")
log.setLevel(logging.INFO)  # the original printed INFO and up, whatever else was configured
log.addHandler(ch)


def _replace_handlers(logger: logging.Logger, handler: logging.Handler) -> None:
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)


def getLogger(fmt: str = fmt, level: int = level, name: str = "root") -> logging.Logger:  # noqa: N802
    """``log`` with a fresh console handler in format ``fmt``. As in the original, whose handler
    passed INFO and up whatever ``level`` said, records below INFO are not shown. ``name`` is
    accepted for the original's signature; as there, the one shared ``log`` is what is
    configured and returned."""
    handler = _ConsoleFallback(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(logging.INFO)
    log.setLevel(max(level, logging.INFO))
    _replace_handlers(log, handler)
    return log


def getFileLogger(fmt: str = fmt, level: int = level, name: str = "wrapper") -> logging.Logger:  # noqa: N802
    """The logger ``name`` writing to ``<logpath>/<name>.log`` (``/log/app``, or ``/tmp/log/app``
    on macOS; the folder is created). Its records still propagate, so inside a worker they
    reach the server's log too."""
    global logpath
    if sys.platform.lower() == "darwin":
        logpath = "/tmp/log/app"
    os.makedirs(logpath, exist_ok=True)
    logger = logging.getLogger(name)
    handler = logging.FileHandler(os.path.join(logpath, name + ".log"))
    handler.setFormatter(logging.Formatter(fmt))
    handler.setLevel(level)
    _replace_handlers(logger, handler)
    logger.setLevel(level)
    logger.info("system platform: %s", sys.platform)
    return logger


__all__ = ["log", "getLogger", "getFileLogger", "fmt", "level", "logpath", "ch", "formatter"]
