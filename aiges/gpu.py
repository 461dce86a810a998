"""GPU discovery and assignment. NVML (nvidia-ml-py) is asked only here and never touches CUDA,
so the server process itself holds no GPU context."""

from __future__ import annotations

import os
from typing import Any

from aiges.config import parse_gpus


def discover_gpus() -> list[str]:
    """GPU ids this process may hand out: ``CUDA_VISIBLE_DEVICES`` when the environment already
    narrows the view (a container runtime or scheduler did), else every GPU NVML reports; none
    when NVML or its driver is absent."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1"]
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no library, no driver, no device: all mean CPU
        return []


def plan_workers(gpus_setting: str, count: int) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` value for each worker: GPUs round-robin, or ``""`` (no GPU)
    for every worker when there are none. ``count`` 0 means one worker per GPU, else one."""
    listed = parse_gpus(gpus_setting)
    gpus = discover_gpus() if listed is None else [str(g) for g in listed]
    workers = count or max(len(gpus), 1)
    if not gpus:
        return [""] * workers
    return [gpus[i % len(gpus)] for i in range(workers)]


class GpuStats:
    """Utilisation and memory of every GPU NVML sees, for the metrics; empty without GPUs."""

    def __init__(self) -> None:
        self._nvml = None
        self._handles: list[Any] = []  # NVML device handles (nvidia-ml-py is untyped)
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # noqa: BLE001 - no library, no driver, no device
            self._handles = []

    def read(self) -> list[dict[str, Any]]:
        devices = []
        nvml = self._nvml
        if nvml is None:
            return []
        for index, handle in enumerate(self._handles):
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                name = nvml.nvmlDeviceGetName(handle)
            except Exception:  # noqa: BLE001 - a device that stopped answering is left out
                continue
            devices.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "utilization": rates.gpu / 100.0,
                    "memory_used": memory.used,
                    "memory_total": memory.total,
                    "processes": process_memory(nvml, handle),
                }
            )
        return devices


def process_memory(nvml: Any, handle: Any) -> dict[int, int]:
    """pid -> bytes of GPU memory, for the compute processes NVML lists on a device (none when
    it cannot tell, as in a container without the host's pid namespace)."""
    try:
        processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:  # noqa: BLE001 - not supported, no permission
        return {}
    return {int(p.pid): int(p.usedGpuMemory) for p in processes if p.usedGpuMemory is not None}
