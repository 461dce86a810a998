"""The echo demo (demo/echo) with a service time, for the cluster tests.

``[wrapper]`` keys:
    service_ms    each one-shot call sleeps this long before echoing (a service time that costs
                  no CPU, so four hosts on a small machine behave like four machines)
    control_dir   a folder the test writes to while the host runs (else the environment's
                  CLUSTER_CONTROL_DIR: hosts that share one config from the config centre):
                  ``service_ms``  a number in it overrides service_ms (re-read twice a second)
                  ``hold_init``   while it exists, wrapperInit waits (a worker that crashed stays
                                  down until the test lets it start again)
"""

import importlib.util
import os
import time
from pathlib import Path
from typing import Any

_ECHO = Path(__file__).resolve().parents[3] / "demo" / "echo" / "wrapper.py"
_spec = importlib.util.spec_from_file_location("aiges_demo_echo", _ECHO)
assert _spec is not None and _spec.loader is not None, _ECHO
_echo: Any = importlib.util.module_from_spec(_spec)  # its Wrapper is known only once loaded
_spec.loader.exec_module(_echo)

RELOAD_S = 0.5


class Wrapper(_echo.Wrapper):
    def wrapperInit(self, config: dict) -> int:
        self.service_s = float(config.get("service_ms", "0")) / 1000
        control = config.get("control_dir") or os.environ.get("CLUSTER_CONTROL_DIR")
        self.control = Path(control) if control else None
        self._checked = 0.0
        self._override: float | None = None
        if self.control is not None:
            while (self.control / "hold_init").exists():
                time.sleep(0.05)
        return super().wrapperInit(config)

    def _service_s(self) -> float:
        now = time.monotonic()
        if self.control is not None and now - self._checked >= RELOAD_S:
            self._checked = now
            try:
                self._override = float((self.control / "service_ms").read_text()) / 1000
            except (OSError, ValueError):
                self._override = None
        return self.service_s if self._override is None else self._override

    def wrapperOnceExec(self, params: dict, reqData, usrTag: str = "", persId: int = 0):
        time.sleep(self._service_s())
        return super().wrapperOnceExec(params, reqData, usrTag, persId)
