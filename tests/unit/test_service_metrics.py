"""The per-service gauges and the GPU join (which services' workers are on each GPU, and each
worker's memory there), from the shapes ``App.snapshot`` and ``GpuStats.read`` produce."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from aiges.metrics import StateCollector


def service(name: str, pids: list[int], gpus: list[str], **extra: object) -> dict[str, object]:
    return {
        "name": name,
        "state": "serving",
        "health": "SERVING",
        "licences_total": 8,
        "licences_used": 1,
        "sessions": 0,
        "inflight": 1,
        "workers": len(pids),
        "workers_ready": len(pids),
        "worker_pids": pids,
        "worker_gpus": gpus,
        **extra,
    }


SNAPSHOT = {
    "licences_total": 16,
    "licences_used": 2,
    "sessions": 0,
    "inflight": 2,
    "workers": 3,
    "workers_ready": 3,
    "health": "SERVING",
    "worker_restarts": 0,
    "services": [service("digits", [11, 12], ["0", "1"]), service("vad", [21], ["0"])],
}
DEVICES = [
    {
        "index": 0,
        "name": "H100",
        "utilization": 0.5,
        "memory_used": 3 << 30,
        "memory_total": 80 << 30,
        "processes": {11: 1 << 30, 21: 512 << 20},
    },
    {"index": 1, "name": "H100", "utilization": 0.0, "memory_used": 0, "memory_total": 80 << 30, "processes": {}},
]


def exposition(devices: list[dict[str, object]]) -> str:
    registry = CollectorRegistry()
    registry.register(StateCollector(lambda: SNAPSHOT, lambda: devices))
    return generate_latest(registry).decode()


def test_each_service_has_its_gauges_and_each_gpu_its_services():
    text = exposition(DEVICES)
    assert 'aiges_service_workers_up{service="digits",state="serving"} 2.0' in text
    assert 'aiges_service_licences_used{service="vad",state="serving"} 1.0' in text
    assert 'aiges_gpu_service_workers{gpu="0",service="digits"} 1.0' in text
    assert 'aiges_gpu_service_workers{gpu="0",service="vad"} 1.0' in text
    assert 'aiges_gpu_service_workers{gpu="1",service="digits"} 1.0' in text
    assert 'aiges_worker_gpu_memory_bytes{gpu="0",service="digits",worker="0"} 1.073741824e+09' in text
    assert 'aiges_worker_gpu_memory_bytes{gpu="0",service="vad",worker="0"} 5.36870912e+08' in text
    assert 'worker="1"' not in text  # NVML does not list digits' worker 1 on GPU 1: no figure, not 0


def test_without_gpus_there_are_no_gpu_gauges():
    text = exposition([])
    assert "aiges_gpu_" not in text and "aiges_worker_gpu_memory_bytes" not in text
    assert 'aiges_service_serving{service="digits",state="serving"} 1.0' in text
