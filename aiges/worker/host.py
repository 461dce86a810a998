"""The worker's answers to a plugin's callbacks (``aiges.plugins.contract.PluginHost``).

Session results go to the worker, which encodes and sends them; everything else (metering,
wrapper metrics, load-balancer labels, trace and event entries) is reported to the server as is,
where it lands in ``/metrics``, the registry value and the log. Callbacks may come from any of
the wrapper's threads: the channel's sends are locked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiges.engine import ipc
from aiges.engine.items import DataItem
from aiges.engine.messages import LbLabels, Metric, Trace, Usage

if TYPE_CHECKING:
    from aiges.worker.main import Worker


class WorkerHost:
    def __init__(self, channel: ipc.BlockingChannel) -> None:
        self.channel = channel
        self.worker: Worker | None = None
        """Set once the plugin is initialised and the worker serves; callbacks before that (from
        wrapperInit) have no call or session to belong to."""

    def output(self, name: str, items: list[DataItem]) -> int:
        return self.worker.deliver(name, items) if self.worker is not None else -1

    def output_failed(self, name: str, code: int, message: str) -> int:
        return self.worker.deliver_error(name, code, message) if self.worker is not None else -1

    def app_id(self, name: str) -> str:
        return self.worker.app_id_of(name) if self.worker is not None else ""

    def usage(self, name: str, app_id: str, channel: str, key: str, count: int) -> None:
        self.channel.send(Usage(str(app_id), str(channel), str(key), int(count)))

    def trace(self, name: str, kind: str, key: str, value: str) -> None:
        sid = self.worker.sid_of(name) if self.worker is not None else name
        self.channel.send(Trace(sid, kind, str(key), str(value)))

    def metric(self, name: str, labels: dict[str, str], value: int) -> None:
        self.channel.send(Metric(str(name), {str(k): str(v) for k, v in labels.items()}, int(value)))

    def lb_labels(self, labels: dict[str, str]) -> None:
        self.channel.send(LbLabels({str(k): str(v) for k, v in labels.items()}))
