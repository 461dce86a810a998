"""One worker process, from its spawn to its death, as a state machine:

    STARTING --Ready (and the kept resources loaded)--> READY
    STARTING | READY --killed, or asked to run wrapperFini--> STOPPING
    any but DEAD --its channel closed--> DEAD

A transition the current state does not allow is refused and logged. A ``Worker`` owns its
channel and rings, its calls (``CallQueue``), its count of sessions, the resources loaded in it,
and the watchdog of the call at the head of its queue. A slot gets a new ``Worker`` on each
start, so a restarted slot never answers for its predecessor's calls or sessions.

Holding (as Nagle's algorithm does for TCP): while the worker owes answers, new calls are held
here and leave together, in one frame group and one wake-up, when its next answer comes. An
idle worker gets a call at once; a busy one runs its calls one after another anyway, so holding
costs them no time. (With ``[batch]`` on, nothing is held: batches form in the worker.)

The watchdog's exec time is exact without any extra message: the head call started when it was
sent to an idle worker, or when the answer before it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import time
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from aiges.engine import ipc
from aiges.engine.items import WorkerInfo
from aiges.engine.messages import (
    Call,
    Done,
    Failed,
    Fini,
    InitFailed,
    Once,
    Open,
    Ready,
    Report,
    SessionFailed,
    SessionOutput,
    Started,
    WorkerSettings,
)
from aiges.engine.pool.calls import CALL_KINDS, SERVED_CALLS, CallQueue, Notice, PendingCall, ServiceTime
from aiges.engine.pool.launcher import Process, describe_exit
from aiges.engine.pool.records import WorkerInitError
from aiges.engine.resources import Resource
from aiges.engine.shm import ShmRing
from aiges.errors import AigesError, ErrorCode
from aiges.metrics import BATCH_SIZE, LEGS

if TYPE_CHECKING:
    from aiges.engine.pool.slots import WorkerSlot

log = structlog.get_logger("aiges.pool")


class WorkerState(enum.Enum):
    STARTING = "starting"
    """Spawned; wrapperInit is running (then the kept resources load)."""
    READY = "ready"
    """Serving calls."""
    STOPPING = "stopping"
    """Being killed, or asked to run wrapperFini and exit."""
    DEAD = "dead"
    """Its process is gone."""


_MOVES: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STARTING: frozenset({WorkerState.READY, WorkerState.STOPPING, WorkerState.DEAD}),
    WorkerState.READY: frozenset({WorkerState.STOPPING, WorkerState.DEAD}),
    WorkerState.STOPPING: frozenset({WorkerState.DEAD}),
    WorkerState.DEAD: frozenset(),
}


class OutputListener(Protocol):
    """Where a worker passes what it says on its own: session output and wrapper reports."""

    def on_output(self, message: SessionOutput) -> None: ...

    def on_output_failed(self, message: SessionFailed) -> None: ...

    def on_report(self, message: Report) -> None: ...


class PoolListener(OutputListener, Protocol):
    """Where the pool reports what its workers say on their own, and their losses (the engine)."""

    def on_worker_lost(self, worker: Worker, reason: str) -> None: ...

    def on_state_changed(self) -> None: ...


class WorkerEvents(Protocol):
    """What the pool hears from one of its workers."""

    def on_state_changed(self, worker: Worker) -> None: ...

    def on_ready(self, worker: Worker, info: WorkerInfo) -> None:
        """wrapperInit is done (the worker is still STARTING: the pool loads the kept resources)."""

    def on_closed(self, worker: Worker) -> None:
        """Its channel closed: it is DEAD."""

    def on_answered(self, worker: Worker) -> None:
        """It answered a call: it may have room for a waiting one."""


class Worker:
    def __init__(
        self,
        slot: WorkerSlot,
        sock: socket.socket,
        rings: tuple[ShmRing, ShmRing] | None,
        settings: WorkerSettings,
        events: WorkerEvents,
        listener: OutputListener,
        cancels: socket.socket | None = None,
    ) -> None:
        self.slot = slot
        self._cancels = cancels
        """Where the calls whose callers went away are named to the worker (8 bytes each)."""
        if cancels is not None:
            cancels.setblocking(False)
        self.settings = settings
        """What it was started with (its slot's settings at spawn)."""
        self.rings = rings
        self._loop = asyncio.get_running_loop()
        self.started: asyncio.Future[WorkerInfo] = self._loop.create_future()
        """Settles when wrapperInit (and the resource replay) is done, or the start failed."""
        self.process: Process | None = None
        self.info: WorkerInfo | None = None
        """What it reported once ready (None: it never was)."""
        self.kill_reason = ""
        self.resources: dict[int, Resource] = {}
        """The kept resources loaded in it (the server's copy each was loaded from)."""
        self.calls = CallQueue()
        self.service_time = ServiceTime()
        self.last_reply_at = 0.0
        """When it last answered (or, idle, was sent a call): when its head call started."""
        self._state = WorkerState.STARTING
        self._sessions = 0
        self._head_resolved = False
        """The watchdog failed the call that was running; what is left in the queue never started."""
        self._holds = settings.batch_size <= 1
        self._events = events
        self._listener = listener
        self.channel = ipc.AsyncChannel(
            sock,
            on_message=self._on_message,
            on_close=self._on_closed,
            send_ring=rings[0] if rings else None,
            recv_ring=rings[1] if rings else None,
        )

    def __repr__(self) -> str:
        return f"<Worker {self.index} gen {self.slot.generation} {self._state.value}>"

    # -- what it is ---------------------------------------------------------------------------------

    @property
    def index(self) -> int:
        return self.slot.index

    @property
    def gpu(self) -> str:
        return self.slot.gpu

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def ready(self) -> bool:
        return self._state is WorkerState.READY

    @property
    def sessions(self) -> int:
        """Sessions attached to it (``attach_session`` to ``detach_session``)."""
        return self._sessions

    @property
    def load(self) -> int:
        """Calls queued or in flight plus open sessions: what the least-loaded choice compares."""
        return len(self.calls) + self._sessions

    @property
    def queued(self) -> int:
        """Calls queued for it that have not started."""
        return self.calls.queued

    # -- state --------------------------------------------------------------------------------------

    def _move(self, to: WorkerState) -> bool:
        if to not in _MOVES[self._state]:
            log.warning("worker state change refused", worker=self.index, state=self._state.value, to=to.value)
            return False
        self._state = to
        self._events.on_state_changed(self)
        return True

    def launched(self, process: Process) -> None:
        self.process = process

    def mark_ready(self, info: WorkerInfo) -> bool:
        """STARTING -> READY: it takes calls from now on."""
        if not self._move(WorkerState.READY):
            return False
        self.info = info
        self.last_reply_at = time.monotonic()
        log.info(
            "worker ready",
            worker=self.index,
            pid=info.pid,
            gpu=self.gpu or "none",
            style=info.style,
            restarts=self.slot.restarts,
            generation=self.slot.generation,
            resources=len(self.resources),
        )
        if not self.started.done():
            self.started.set_result(info)
        return True

    def fail_start(self, reason: str) -> None:
        """Its start failed (init error, resources, timeout): whoever waits for it is told why."""
        if not self.started.done():
            self.started.set_exception(WorkerInitError(reason))

    def kill(self, reason: str) -> None:
        """SIGKILL; its death is handled like any other (restart, calls failed or moved)."""
        self.kill_reason = reason
        if self._state in (WorkerState.STARTING, WorkerState.READY):
            self._move(WorkerState.STOPPING)
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def ask_to_exit(self) -> None:
        """Ask it to run wrapperFini and exit (it stops taking calls at once)."""
        if self._state in (WorkerState.STARTING, WorkerState.READY):
            self._move(WorkerState.STOPPING)
        if not self.channel.closed:
            with contextlib.suppress(ConnectionResetError):
                self.channel.send(Fini())

    def _on_closed(self) -> None:
        if self._move(WorkerState.DEAD):
            self._events.on_closed(self)

    async def exit_reason(self) -> str:
        """Why its process ended (waited for, killed after 5 s): the reason it was killed, if it was."""
        process = self.process
        if process is None:
            return describe_exit(None)
        try:
            returncode = await asyncio.wait_for(process.wait(), 5.0)
        except asyncio.TimeoutError:
            process.kill()
            returncode = await process.wait()
        return self.kill_reason or describe_exit(returncode)

    def close(self) -> None:
        """Close its channel and unmap its rings (it is gone, or the server stops)."""
        self.channel.close()
        if self._cancels is not None:
            self._cancels.close()
        self.close_rings()

    def cancel(self, call_id: int) -> bool:
        """Tell the worker a call it has is no longer wanted: it does not start it, or, running,
        the wrapper is told. False if the call is not this worker's (or it is gone)."""
        if self._cancels is None or self.calls.find_sent(call_id) is None:
            return False
        try:
            self._cancels.send(ipc.CANCEL.pack(call_id))
        except OSError:  # gone, or (never, at 8 bytes a call) its buffer full: it runs the call
            return False
        return True

    def close_rings(self) -> None:
        if self.rings is not None:
            for ring in self.rings:
                ring.close()
            self.rings = None

    # -- sessions -----------------------------------------------------------------------------------

    def attach_session(self) -> None:
        self._sessions += 1

    def detach_session(self) -> bool:
        if self._sessions <= 0:
            log.warning("session detach refused: the worker holds none", worker=self.index)
            return False
        self._sessions -= 1
        return True

    # -- calls --------------------------------------------------------------------------------------

    def request(self, message: Call) -> asyncio.Future[Any]:
        """A call on this worker whatever its state (a starting worker's resource loads; a
        session's calls, once the pool has checked it is ready); settles with its answer."""
        call = PendingCall(self._loop.create_future(), message, time.monotonic(), False)
        if not self.submit(call):
            call.future.set_exception(AigesError(ErrorCode.WORKER_CRASH, f"worker {self.index} is gone"))
        return call.future

    def submit(self, call: PendingCall) -> bool:
        """Queue a call: sent now if the worker owes no answer, else held until its next answer
        (see the module's docstring). False if its channel is closed (the call is not queued)."""
        channel = self.channel
        if channel.closed:
            return False
        calls = self.calls
        if self._holds and calls.in_flight:
            calls.hold(call)
            return True
        now = time.monotonic()
        if not calls.in_flight:  # idle: it starts now
            self.last_reply_at = now
        call.sent_at = now
        calls.sent(call)
        try:
            channel.send(call.message)
        except ConnectionResetError:
            calls.answered(call.message.call_id)
            return False
        return True

    def depth(self, pipeline_s: float, max_depth: int) -> int:
        """How many calls it should have been sent at most: enough that it never waits for the
        next one (``pipeline_s`` of work, by its service time, and at least the one running and
        the next: the worker itself drops that next one if its caller goes meanwhile), at least a
        batch; one until it has answered a call (nothing to go by)."""
        batch = max(self.settings.batch_size, 1)
        estimate = self.service_time.seconds
        if estimate is None:
            return batch
        if estimate <= 0:
            return max(batch, max_depth)
        return max(batch, 2, min(max_depth, int(pipeline_s / estimate) + 1))

    def has_room(self, pipeline_s: float, max_depth: int) -> bool:
        """Ready, and with fewer calls sent (or held) than its pipeline depth."""
        return self.ready and len(self.calls) < self.depth(pipeline_s, max_depth)

    def backlog(self, now: float, estimate: float) -> float:
        """Seconds of work it has before it could start another call: what is left of the call
        it runs, and the calls sent or held behind it."""
        calls = self.calls
        head = calls.head
        if head is None:
            return 0.0
        running_for = now - max(head.sent_at, self.last_reply_at)
        return max(estimate - running_for, 0.0) + (len(calls) - 1) * estimate

    def dispatch(self, call: PendingCall) -> bool:
        """Send a waiting first frame now (the dispatcher checked it has room); False if its
        channel is closed."""
        channel = self.channel
        if channel.closed:
            return False
        now = time.monotonic()
        calls = self.calls
        if not calls.in_flight:
            self.last_reply_at = now
        call.sent_at = now
        calls.sent(call)
        try:
            channel.send(call.message)
        except ConnectionResetError:
            calls.answered(call.message.call_id)
            return False
        return True

    def withdraw(self, call: PendingCall) -> bool:
        """Take back a call not sent yet (nobody waits for it any more): it never reaches the
        wrapper and its future is cancelled. False once it was sent."""
        if not self.calls.withdraw(call):
            return False
        call.future.cancel()
        return True

    def notify(self, message: Notice) -> None:
        """A one-way message (no answer): it keeps its place behind held calls, or leaves now.
        Lost, without error, if the worker is not serving."""
        if self.channel.closed or not self.ready:
            return
        if self.calls.holding:
            self.calls.hold(message)
            return
        with contextlib.suppress(ConnectionResetError):
            self.channel.send(message)

    def _release(self, now: float) -> None:
        """Send every held call and notice, in one frame group."""
        channel = self.channel
        try:
            for entry in self.calls.release():
                if isinstance(entry, PendingCall):
                    entry.sent_at = now
                    channel.send(entry.message, hold=True)
                else:
                    channel.send(entry, hold=True)
        except ConnectionResetError:
            return  # it is gone: its death handler finds the calls queued, not started
        channel.flush()

    def _on_message(self, message: Any) -> None:
        match message:
            case Done() | Failed():
                self._answered(message)
            case SessionOutput():
                self._listener.on_output(message)
            case SessionFailed():
                self._listener.on_output_failed(message)
            case Started(call_ids=call_ids):
                self.calls.mark_started(call_ids)
                BATCH_SIZE.observe(len(call_ids))
            case Ready(info=info):
                self._events.on_ready(self, info)
            case InitFailed(reason=reason):
                self.fail_start(reason)
            case _:
                self._listener.on_report(message)

    def _answered(self, answer: Done | Failed) -> None:
        now = time.monotonic()
        previous_reply_at = self.last_reply_at
        self.last_reply_at = now
        calls = self.calls
        call = calls.answered(answer.call_id)
        if calls.holding:
            self._release(now)
        self._events.on_answered(self)
        if call is None:  # failed by the watchdog already
            return
        timings = answer.timings
        exec_s = timings.finished_at - timings.started_at
        kind = type(call.message)
        if kind in SERVED_CALLS:  # how long it held the worker, as the server sees it: IPC and all
            self.service_time.observe(now - max(call.sent_at, previous_reply_at))
        LEGS.record(
            CALL_KINDS[kind],
            queue=(call.sent_at - call.created_at)
            + (timings.started_at - timings.received_at)
            + max(min(timings.free_at, timings.received_at) - call.sent_at, 0.0),
            ipc_in=timings.received_at - max(call.sent_at, timings.free_at),
            exec_=exec_s,
            ipc_out=now - timings.finished_at,
        )
        future = call.future
        if future.done():
            return
        call.worker = self
        if isinstance(answer, Done):
            future.set_result(answer.value)
        else:
            future.set_exception(AigesError(answer.code, answer.message))

    # -- the watchdog and death ---------------------------------------------------------------------

    def watch(self, now: float, limit_ms: int) -> bool:
        """If the call at the head of the queue has run past ``limit_ms``: it (and the calls run
        in one batch with it) fail with 10102 and the worker is killed. True if it was."""
        if self._state is not WorkerState.READY:
            return False
        head = self.calls.head
        if head is None or now - max(head.sent_at, self.last_reply_at) <= limit_ms / 1000:
            return False
        kind = type(head.message).__name__
        for stuck in self.calls.expire_head():
            if not stuck.future.done():
                stuck.future.set_exception(
                    AigesError(
                        ErrorCode.ONCE_TIMEOUT,
                        f"{type(stuck.message).__name__} ran past exec_timeout_ms={limit_ms}; "
                        f"worker {self.index} is being replaced",
                    )
                )
        self._head_resolved = True
        self.kill(f"a {kind} call ran past exec_timeout_ms")
        return True

    def lose_calls(self) -> tuple[list[PendingCall], list[PendingCall]]:
        """Its calls, taken out, once it is gone: those it may have run (the head, unless the
        watchdog failed it, and any marked started), and those it never started."""
        first_unstarted = 0 if self._head_resolved else 1
        ran: list[PendingCall] = []
        unstarted: list[PendingCall] = []
        for position, call in enumerate(self.calls.drain()):
            (unstarted if position >= first_unstarted and not call.started else ran).append(call)
        return ran, unstarted

    def fail_calls(self, error: AigesError) -> int:
        """Fail every call it holds (the server stops, or its start failed); how many there were."""
        calls = self.calls.drain()
        for call in calls:
            if not call.future.done():
                call.future.set_exception(error)
        return len(calls)


def lost_call_error(call: PendingCall, index: int, reason: str) -> AigesError:
    """What a call its worker may have started gets when the worker dies."""
    code = ErrorCode.WRAPPER_EXEC if isinstance(call.message, (Once, Open)) else ErrorCode.WORKER_CRASH
    return AigesError(code, f"worker {index} stopped during the call: {reason}")
