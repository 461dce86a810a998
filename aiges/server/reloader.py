"""Reloading the wrapper without dropping a call: ``aiges reload`` (the cmdserver's ``reload``)
and SIGHUP.

The config file is read afresh; its wrapper and ``[wrapper]`` section (and the other worker
settings: ``[aiges]`` realTimeRlt, asyncMode, headerPass, ``[batch]``, ``[log] level``) start a
new generation of workers (``Engine.reload``). New calls and sessions go to each new worker as
soon as it is ready; the old workers finish their calls and sessions within ``[aiges]
drain_timeout_ms`` and stop. Health stays SERVING throughout. A config that does not load, or a
new wrapper that fails its init, leaves the old workers serving; the answer, the log and the
cmdserver status say why. Other sections (ports, licences, registry...) take a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import structlog

from aiges.config import Config, ConfigError
from aiges.engine.engine import Engine
from aiges.engine.messages import WorkerSettings
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.reload")


def worker_settings(config: Config, peer_addr: str) -> WorkerSettings:
    """What a worker is started with, from the config."""
    return WorkerSettings(
        wrapper=str(config.wrapper_path),
        config=dict(config.wrapper),
        realtime=config.aiges.realTimeRlt,
        header_pass=tuple(config.header_pass),
        peer_addr=peer_addr,
        batch_size=config.batch.max_size,
        batch_delay_ms=config.batch.max_delay_ms,
        async_mode=config.aiges.asyncMode,
        log_level=config.log.level,
    )


class Reloader:
    def __init__(
        self, engine: Engine, reread: Callable[[], Config], drain_timeout_ms: int, serving: Callable[[], bool]
    ) -> None:
        """``reread`` loads the config again (raising ConfigError), with the command line's
        overrides; ``serving``: whether the server has started serving (and not begun to drain)."""
        self.engine = engine
        self.reread = reread
        self.drain_timeout_ms = drain_timeout_ms
        self.serving = serving
        self.last: dict[str, Any] | None = None
        self.reloads = {"ok": 0, "failed": 0}

    async def __call__(self) -> dict[str, Any]:
        """Reload; the answer: ``ok``, ``generation``, ``workers``, ``ms``, ``retiring`` (old
        workers left to finish), or ``error``."""
        started = time.monotonic()
        try:
            if not self.serving():
                raise AigesError(ErrorCode.STARTING, "the server is not serving (starting, or draining): no reload")
            config = self.reread()
            for warning in config.warnings:
                log.warning("reload config", warning=warning)
            outcome = await self.engine.reload(worker_settings(config, self.engine.peer), self.drain_timeout_ms / 1000)
            answer = asdict(outcome)
        except (ConfigError, AigesError) as exc:
            error = exc.message if isinstance(exc, AigesError) else str(exc)
            log.error("reload refused", error=error)
            status = self.engine.status()
            answer = {
                "ok": False,
                "generation": status.generation,
                "workers": len(status.workers),
                "ms": int((time.monotonic() - started) * 1000),
                "error": error,
                "retiring": len(status.retiring),
            }
        self.reloads["ok" if answer["ok"] else "failed"] += 1
        self.last = {**answer, "at": time.time()}
        return answer

    def state(self) -> dict[str, Any]:
        """For the cmdserver status: the generation, whether a reload runs, the old workers
        still finishing, the last reload's answer."""
        status = self.engine.status()
        return {
            "generation": status.generation,
            "reloading": status.reloading,
            "retiring_workers": len(status.retiring),
            "retiring_pids": [w.pid for w in status.retiring],
            "last": self.last,
            "counts": dict(self.reloads),
        }
