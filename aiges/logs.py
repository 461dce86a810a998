"""Structured logs: one event per line on stdout, JSON for machines, console for a person."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


_threshold = [logging.INFO]
"""The level in force: read on every call below ERROR, so ``set_log_level`` takes effect at once,
also in loggers structlog has already cached."""


class LiveLevelLogger(structlog.BoundLoggerBase):
    """A bound logger that drops events below the current threshold (one comparison per call;
    the event is not built). structlog's own filtering loggers fix their level when made."""

    def _emit(self, level: int, method: str, event: str | None, args: tuple[Any, ...], kw: Any) -> Any:
        if level < _threshold[0]:
            return None
        if args and event is not None:
            event = event % args
        return self._proxy_to_logger(method, event, **kw)

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.DEBUG, "debug", event, args, kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.INFO, "info", event, args, kw)

    msg = info

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.WARNING, "warning", event, args, kw)

    warn = warning

    def error(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.ERROR, "error", event, args, kw)

    def critical(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit(logging.CRITICAL, "critical", event, args, kw)

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._emit(logging.ERROR, "error", event, args, kw)


def set_log_level(level: str) -> None:
    """Change the level of the server's own logs now (the config centre's live ``[log] level``)."""
    _threshold[0] = LEVELS.get(level, logging.INFO)
    logging.getLogger().setLevel(max(_threshold[0], logging.INFO))


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """``fmt``: ``json``, ``console``, or ``auto`` (console when stdout is a terminal)."""
    _threshold[0] = LEVELS.get(level, logging.INFO)
    as_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    renderer = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=LiveLevelLogger,
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(LEVELS.get(level, logging.INFO), logging.INFO))
