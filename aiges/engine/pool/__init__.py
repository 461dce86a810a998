"""The worker pool: the only code that knows about processes and GPUs. The engine sees it as its
``Backend`` (``aiges.engine.backend``); it is made of parts with one job each:

- ``worker.Worker``: one worker process as a state machine (starting, ready, stopping, dead),
  with its channel, its calls in order (``calls.CallQueue``: the head is the call executing),
  the holding of new calls while it owes answers, the watchdog of its head call, its sessions
  and the resources loaded in it; a fresh one each time its slot starts, so a restarted slot
  never answers for its predecessor's calls or sessions;
- ``launcher``: how a worker starts (``python -m aiges.worker`` with ``CUDA_VISIBLE_DEVICES`` set
  to its slot's GPU before the interpreter starts; threads in the unit tests);
- ``slots.WorkerSlot``: a place in the pool (index, GPU, generation, role, restarts);
- ``starter.Starter``: spawn, wait for wrapperInit, restart with back-off;
- ``dispatch.Dispatcher``: the least-loaded worker for a new call, and a dead worker's calls
  (one-shots it never started move to another worker);
- ``generations.Generations``: the serving, incoming and retiring slots of a reload;
- ``replicator.ResourceReplicator``: the kept resources (``AILoad``), in every worker;
- ``worker_pool.WorkerPool``: the parts wired together, deaths, the watchdog's tick.

Calls go to the least-loaded ready worker and are pipelined on its socket; a worker runs them
one at a time in order, so the call at the head of its queue is the one executing, and it
started when the previous answer arrived. That gives the watchdog an exact exec time without
any extra message: a call past ``exec_timeout_ms`` gets 10102 and its worker is killed and
replaced. When a worker dies, the call it was executing fails (10909 with the exit reason),
queued one-shot calls it never started move to another worker, and the listener (the engine)
is told, so that it ends the worker's sessions.
"""

from aiges.engine.pool.calls import PendingCall, ServiceTime
from aiges.engine.pool.launcher import Launcher, Process, ProcessLauncher, describe_exit
from aiges.engine.pool.records import PoolSettings, ReloadOutcome, WorkerInitError, WorkerLoad, WorkerStatus
from aiges.engine.pool.slots import SlotRole, WorkerSlot
from aiges.engine.pool.worker import PoolListener, Worker, WorkerState
from aiges.engine.pool.worker_pool import WorkerPool

__all__ = [
    "Launcher",
    "PendingCall",
    "PoolListener",
    "PoolSettings",
    "Process",
    "ProcessLauncher",
    "ReloadOutcome",
    "ServiceTime",
    "SlotRole",
    "Worker",
    "WorkerInitError",
    "WorkerLoad",
    "WorkerPool",
    "WorkerSlot",
    "WorkerState",
    "WorkerStatus",
    "describe_exit",
]
