"""What a wrapper reports through its callbacks, once it reaches the server: metering and
wrapper metrics into ``/metrics``, load-balancer labels into the registry value, trace and event
entries into the log (one structured line each, with the call's sid)."""

from __future__ import annotations

from collections.abc import Callable

import structlog

from aiges.engine.messages import LbLabels, Metric, Report, Trace, Usage
from aiges.metrics import USAGE, WRAPPER_METRIC, BoundedLabels

log = structlog.get_logger("aiges.wrapper")

MAX_LB_LABELS = 64


class WrapperReports:
    def __init__(self, labels_changed: Callable[[], None]) -> None:
        self.labels_changed = labels_changed
        self.lb_labels: dict[str, str] = {}
        self._usage_labels = BoundedLabels()
        self._metric_labels = BoundedLabels()

    def handle(self, message: Report) -> None:
        match message:
            case Usage(app_id=app_id, channel=channel, key=key, units=units):
                USAGE.labels(*self._usage_labels(app_id, channel, key)).inc(max(units, 0))
            case Metric(name=name, labels=labels, value=value):
                text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
                WRAPPER_METRIC.labels(*self._metric_labels(name, text)).observe(value)
            case LbLabels(labels=labels):
                merged = {**self.lb_labels, **labels}
                if len(merged) > MAX_LB_LABELS:
                    log.warning("load-balancer labels dropped", limit=MAX_LB_LABELS, labels=sorted(labels))
                    return
                if merged != self.lb_labels:
                    self.lb_labels = merged
                    self.labels_changed()
            case Trace(sid=sid, kind=kind, key=key, value=value):
                log.info("wrapper trace", sid=sid, kind=kind, key=key, value=value)
