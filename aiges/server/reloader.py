"""Reloading the wrapper without dropping a call: ``aiges reload`` (the cmdserver's ``reload``)
and SIGHUP.

The config file is read afresh; its wrapper and ``[wrapper]`` section (and the other worker
settings: ``[aiges]`` realTimeRlt, asyncMode, headerPass, ``[batch]``, ``[log] level``) start a
new generation of workers (``Engine.reload``). New calls and sessions go to each new worker as
soon as it is ready; the old workers finish their calls and sessions within ``[aiges]
drain_timeout_ms`` and stop. Health stays SERVING throughout. A config that does not load, or a
new wrapper that fails its init, leaves the old workers serving; the answer, the log and the
cmdserver status say why. Other sections (ports, licences, registry...) take a restart.

With several services (``[[service]]``) each has its own reloader: a reload finds the service's
entry in the file again (by its name, else by its wrapper); a service added while serving, which
the file does not list, is reloaded from the entry it was added with, its wrapper read afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import structlog

from aiges.config import Config, ConfigError, ServiceSpec
from aiges.engine.engine import Engine
from aiges.engine.messages import WorkerSettings
from aiges.errors import AigesError, ErrorCode

log = structlog.get_logger("aiges.reload")


def worker_settings(config: Config, peer_addr: str, spec: ServiceSpec | None = None) -> WorkerSettings:
    """What a worker of ``spec`` (default: the single form's one service) is started with."""
    spec = spec or config.specs()[0]
    return WorkerSettings(
        wrapper=str(spec.wrapper_path),
        config=dict(spec.wrapper_config),
        realtime=config.aiges.realTimeRlt,
        header_pass=tuple(config.header_pass),
        peer_addr=peer_addr,
        batch_size=spec.batch.max_size,
        batch_delay_ms=spec.batch.max_delay_ms,
        async_mode=config.aiges.asyncMode,
        log_level=config.log.level,
    )


def same_entry(config: Config, spec: ServiceSpec) -> ServiceSpec | None:
    """``spec``'s entry in a config read again: the one with its name, else with its wrapper."""
    specs = config.specs()
    if not config.listed:
        return specs[0]
    for candidate in specs:
        if spec.name and candidate.name == spec.name:
            return candidate
    for candidate in specs:
        if not spec.name and not candidate.name and candidate.wrapper_path == spec.wrapper_path:
            return candidate
    return None


class Reloader:
    def __init__(
        self,
        engine: Engine,
        reread: Callable[[], Config],
        drain_timeout_ms: int,
        serving: Callable[[], bool],
        spec: ServiceSpec | None = None,
    ) -> None:
        """``reread`` loads the config again (raising ConfigError), with the command line's
        overrides; ``serving``: whether the server has started serving (and not begun to drain);
        ``spec``: the service's entry (None: the single form's one service)."""
        self.engine = engine
        self.reread = reread
        self.drain_timeout_ms = drain_timeout_ms
        self.serving = serving
        self.spec = spec
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
            spec = self.spec and (same_entry(config, self.spec) or self.spec)
            settings = worker_settings(config, self.engine.peer, spec)
            outcome = await self.engine.reload(settings, self.drain_timeout_ms / 1000)
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
