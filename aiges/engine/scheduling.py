"""CPU scheduling policy for the server and its workers.

Every call crosses from the server process to a worker and back. Under SCHED_OTHER, each frame
that wakes the other process preempts the one running, so on a busy CPU the two ping-pong once
per call. As SCHED_BATCH (Linux; no privilege needed) a woken process waits for the running one
to block, so calls that arrive meanwhile are carried by one wake-up: measured here, about twice
the throughput on one core (bench/RESULTS.md). CPU shares are unchanged; what a woken process
gives up is preempting the one running, so on an oversubscribed CPU it may wait up to a time
slice (a few ms). ``[aiges] sched_batch = false`` keeps SCHED_OTHER.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def use_batch_scheduling() -> bool:
    """Switch every thread of this process to SCHED_BATCH; child processes inherit it."""
    if not hasattr(os, "SCHED_BATCH"):
        return False
    param = os.sched_param(0)
    switched = False
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(tid, os.SCHED_BATCH, param)
            switched = True
    return switched
