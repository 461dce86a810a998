"""Session helpers of the original SDK (``aiges.stream``), for streaming wrappers written for it.

The pattern the original's examples use: ``wrapperInit`` calls
``self.session.init_handle_pool("thread", 10, MyThread)``, which starts ten ``WorkerThread``s,
one per wrapper handle (``"Process-0-Thread-3"``), each running a ``MyThread``
(a ``StreamHandleThread`` subclass) that reads the chunks ``wrapperWrite`` puts on its ``in_q``
and delivers results through the session's ``callback_fn``. ``wrapperCreate`` takes a free
handle (``get_idle_handle``) and fills in the session's sid, params and callback;
``WorkerThread.reset`` (or ``SessionManager.push_back``) returns the handle.

All threads here are daemons: a worker process that ends does not wait for them.

Where the original could never work, the obvious intended behaviour is what is done here; each
such place says so in its docstring.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from aiges.types import PROCESS_MODE, THREAD_MODE

__all__ = [
    "lock",
    "SessionManager",
    "Pool",
    "ThreadPool",
    "ProcessThreadPool",
    "WorkerThread",
    "WorkerProcess",
    "StreamHandleThread",
    "RequestPool",
    "ReqHandleThread",
    "ModelProcess",
    "Context",
]

log = logging.getLogger("wrapper")

lock = threading.Lock()
"""Held while a free handle is taken, so two creates never get the same one."""


class HandlePoolNotInitialised(AttributeError):
    """A SessionManager was asked for sessions before ``init_handle_pool`` gave it any.

    An AttributeError, as the original raised there (its manager had no ``handle_pool`` yet),
    but saying what is missing."""


class SessionManager:
    """The per-wrapper session table (``WrapperBase`` makes one as ``self.session``)."""

    def __init__(self, config: dict[str, Any] | None = None, mode: str = THREAD_MODE, nums: int = 0) -> None:
        # config, mode and nums are accepted as the original did, and as there not used:
        # init_wrapper_config and init_handle_pool set the manager up.
        self.initialized = False
        self.code = 0
        self.lock = threading.Lock()
        self.wrapperConfig: dict[str, Any] = {}
        self._pool: Pool | None = None

    @property
    def handle_pool(self) -> Pool:
        if self._pool is None:
            raise HandlePoolNotInitialised(
                "SessionManager has no handles: call self.session.init_handle_pool(mode, nums, ThreadClass) "
                "in wrapperInit before sessions are created"
            )
        return self._pool

    @handle_pool.setter
    def handle_pool(self, pool: Pool) -> None:
        self._pool = pool

    def init_wrapper_config(self, config: dict[str, Any] | None = None) -> None:
        self.wrapperConfig = config if config is not None else {}

    def init_handle_pool(self, mode: str, nums: int, ReqThreadCls: type) -> None:  # noqa: N803
        """``nums`` handles, each a WorkerThread running a ``ReqThreadCls``. The process mode
        makes 2 x 5 handles whatever ``nums`` says, as the original did."""
        if mode == PROCESS_MODE:
            self.handle_pool = self.init_processes(ReqThreadCls, 2, 5)
        else:
            self.handle_pool = self.init_threads(ReqThreadCls, nums)
        self.initialized = True

    def init_threads(self, ReqThreadCls: type, nums: int = 10) -> ThreadPool:  # noqa: N803
        return ThreadPool(ReqThreadCls, 0, nums)

    def init_processes(self, ReqThreadCls: type, procs: int = 2, threads_per_cpu: int = 5) -> ProcessThreadPool:  # noqa: N803
        return ProcessThreadPool(ReqThreadCls, procs, threads_per_cpu)

    def get_session(self, handle: str) -> WorkerThread | None:
        """The WorkerThread behind ``handle``, or None for a handle the pool does not have."""
        return self.handle_pool.get_thread(handle)

    def get_idle_handle(self) -> str | None:
        """Take a free handle (it stays taken until reset or push_back); None when all are taken.

        The original raised a TypeError instead of answering None once every handle was taken."""
        with lock:
            handle, _ = self.handle_pool.get_idle_thread_handle()
            return handle

    def set_idle_session(self, handle: str) -> None:
        self.handle_pool.set_idle(handle)

    def reset_session(self, handle: str) -> None:
        self.handle_pool.reset_thread(handle)

    def push_back(self, handle: str) -> None:
        """Return a handle: forget its session's sid, params and queued data, and free it."""
        self.set_idle_session(handle)
        self.reset_session(handle)


class Pool:
    """Handles -> the WorkerThreads behind them (``workers``)."""

    def __init__(self) -> None:
        self.workers: dict[str, WorkerThread] = {}

    def get_thread(self, handle: str) -> WorkerThread | None:
        raise NotImplementedError

    def get_idle_thread_handle(self) -> tuple[str | None, WorkerThread | None]:
        """Take the first free handle: ``(handle, thread)``, or ``(None, None)`` if none is free."""
        for handle, thread in self.workers.items():
            if thread.idle:
                thread.is_idle = False
                return handle, thread
        return None, None

    def reset_thread(self, handle: str) -> None:
        thread = self.workers.get(handle)
        if thread is not None:
            thread.reset()

    def set_idle(self, handle: str) -> None:
        thread = self.workers.get(handle)
        if thread is not None:
            thread.is_idle = True


def _start_threads(workers: dict[str, WorkerThread], process_no: Any, count: int, thread_class: type) -> None:
    for index in range(count):
        handle = f"Process-{process_no}-Thread-{index}"
        worker = WorkerThread(handle)
        worker.setStreamHandleThreadClass(thread_class)
        workers[handle] = worker
        worker.start()


class ThreadPool(Pool):
    """``nums`` WorkerThreads, handles ``Process-<processs_no>-Thread-<i>``, started at once."""

    def __init__(self, reqDataThreadCls: type, processs_no: int = 0, nums: int = 10) -> None:  # noqa: N803
        super().__init__()
        _start_threads(self.workers, processs_no, nums, reqDataThreadCls)

    def get_thread(self, handle: str) -> WorkerThread | None:
        return self.workers.get(handle)


class ProcessThreadPool(Pool):
    """``procs`` x ``threads_per_cpu`` handles, ``Process-<p>-Thread-<i>``.

    The original started child processes whose threads this process could never reach, so its
    pool stayed empty and no session could ever be created. Here the handles are WorkerThreads
    of this process, as in ThreadPool; ``process`` stays empty."""

    def __init__(self, reqWorkerHandleCls: type, procs: int = 2, threads_per_cpu: int = 5) -> None:  # noqa: N803
        super().__init__()
        self.process: dict[int, WorkerProcess] = {}
        for process_no in range(procs):
            _start_threads(self.workers, process_no, threads_per_cpu, reqWorkerHandleCls)

    def get_thread(self, handle: str) -> WorkerThread | None:
        return self.workers.get(handle)


class WorkerProcess(multiprocessing.Process):
    """A process running ``threads_per_cpu`` WorkerThreads of ``reqDataThreadCls`` until they
    stop. Its threads live in the child process, so ``workers`` is filled there, not here.

    The original's child exited as soon as it had started its (daemon) threads, taking them
    with it; this one waits for them."""

    def __init__(
        self,
        workers: dict[str, WorkerThread],
        reqDataThreadCls: type,
        process_no: Any = 0,  # noqa: N803
        threads_per_cpu: int = 2,
    ) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.process_no = process_no
        self.threads_per_cpu = threads_per_cpu
        self.reqDataThreadCls = reqDataThreadCls
        self.process_id: int | None = None

    def run(self) -> None:
        self.process_id = os.getpid()
        _start_threads(self.workers, self.process_id, self.threads_per_cpu, self.reqDataThreadCls)
        for worker in list(self.workers.values()):
            worker.join()


class WorkerThread(threading.Thread):
    """One handle's session: its ``sid``, ``params`` and ``callback_fn`` while taken, an ``in_q``
    for the chunks written, an ``out_q`` for results read back by wrapperRead (unused when
    results go through the callback). It runs one StreamHandleThread of its class."""

    def __init__(self, handle: str) -> None:
        super().__init__(name=f"aiges-session-{handle}", daemon=True)
        self.handle = handle
        self.sid = ""
        self.is_stopping = False
        self.in_q: queue.Queue[Any] = queue.Queue()
        self.out_q: queue.Queue[Any] = queue.Queue()
        self.is_idle = True
        self.params: dict[str, Any] = {}
        self.StreamHandleThreadClass: type = StreamHandleThread
        self.callback_fn: Callable[..., Any] | None = None

    def init_model(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("WorkerThread.init_model: implement it in a subclass")

    @property
    def idle(self) -> bool:
        return self.is_idle

    def setup_sid(self, sid: str) -> None:
        self.sid = sid

    def setup_params(self, params: dict[str, Any]) -> None:
        """The session's params; this also marks the handle taken."""
        self.params = params
        self.is_idle = False

    def setup_callback_fn(self, callback: Callable[..., Any]) -> None:
        """``callback(response, sid)``: how this session's results are delivered."""
        self.callback_fn = callback

    def reset(self) -> None:
        """End the session: forget its sid, params and queued data; the handle is free again."""
        self.sid = ""
        self.params = {}
        for pending in (self.in_q, self.out_q):
            with pending.mutex:
                pending.queue.clear()
        self.is_idle = True

    def setStreamHandleThreadClass(self, cls: type) -> None:  # noqa: N802
        self.StreamHandleThreadClass = cls

    def stop(self) -> None:
        self.is_stopping = True

    def run(self) -> None:
        handler = self.StreamHandleThreadClass(self, self.in_q, self.out_q)
        handler.start()
        handler.join()


class StreamHandleThread(threading.Thread):
    """Base of the thread that does a session's work: subclass it and override ``run`` (read
    ``self.in_q``, deliver with ``self.session_thread.callback_fn(response, self.session_thread.sid)``,
    call ``self.session_thread.reset()`` after the last result). ``session_thread`` is the
    WorkerThread that runs it.

    The default ``run`` calls ``init_model(handle)`` and then waits until ``stop()``."""

    def __init__(self, session_thread: WorkerThread, in_q: queue.Queue[Any], out_q: queue.Queue[Any]) -> None:
        super().__init__(daemon=True)
        self.is_stopping = False
        self.session_thread = session_thread
        self.in_q = in_q
        self.out_q = out_q
        self._stopped = threading.Event()

    def init_model(self, *args: Any, **kwarg: Any) -> Any:
        raise NotImplementedError("StreamHandleThread.init_model: implement it in a subclass")

    def stop(self) -> None:
        self.is_stopping = True
        self._stopped.set()

    def run(self) -> None:
        self.init_model(self.session_thread.handle)
        self._stopped.wait()


class Context:
    """What a ReqHandleThread passes on with each request: sid, params, data, and whether the
    session has been destroyed meanwhile."""

    def __init__(self) -> None:
        self.sid = ""
        self.params: dict[str, Any] = {}
        self.data: Any = None
        self.session_destroyed = False
        self.callback_handle = ""

    def set_data(self, data: Any) -> None:
        self.data = data

    def set_callback_handle(self, s: str) -> None:
        self.callback_handle = s

    def set_sid(self, sid: str) -> None:
        self.sid = sid

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def reset_ctx(self) -> None:
        self.sid = ""
        self.params = {}
        self.data = None
        self.callback_handle = ""
        self.session_destroyed = False

    def set_destroyed(self) -> None:
        self.session_destroyed = True


class ReqHandleThread(threading.Thread):
    """One handle of a RequestPool: requests sent to it (``send_to_input_queue``) are forwarded,
    as ``(handle, context)``, to the queue shared with the ModelProcess that runs inference."""

    def __init__(
        self, model_pipe_conn: Any, shared_req_queue: Any, handle: str, callback_fn: Callable[..., Any] | None
    ) -> None:
        super().__init__(name=f"aiges-request-{handle}", daemon=True)
        self.model_pipe_conn = model_pipe_conn
        self.input_queue: queue.Queue[Any] = queue.Queue()
        self.shared_req_queue = shared_req_queue
        self.status = "idle"
        self.is_stopping = False
        self.handle = handle
        self.callback = callback_fn
        self.ctx = Context()

    def set_busy(self) -> None:
        self.status = "busy"

    def set_idle(self) -> None:
        self.status = "idle"
        self.ctx.reset_ctx()

    def set_ctx(self, sid: str, params: dict[str, Any]) -> None:
        self.ctx.set_sid(sid)
        self.ctx.set_params(params)

    def send_to_input_queue(self, sid: str, req: Any) -> None:
        self.ctx.set_sid(sid)
        self.ctx.set_data(req)
        self.input_queue.put(self.ctx)

    def run(self) -> None:
        while not self.is_stopping:
            ctx = self.input_queue.get()
            self.shared_req_queue.put((self.handle, ctx))

    def destroy(self) -> None:
        self.status = "idle"
        self.ctx.reset_ctx()


class RequestPool:
    """``pool_size`` ReqHandleThreads (handles ``process-<pid>-thread-<i>``) feeding one shared
    request queue; ``callback_fn`` is handed to each."""

    def __init__(self, shared_req_queue: Any, callback_fn: Callable[..., Any] | None) -> None:
        self.pool: dict[str, ReqHandleThread] = {}
        self.conns_map: dict[str, tuple[Any, Any]] = {}
        self.shared_req_queue = shared_req_queue
        self.process_id = os.getpid()
        self.init_threads(callback_fn=callback_fn, pool_size=5)

    def init_threads(self, callback_fn: Callable[..., Any] | None, pool_size: int = 5) -> None:
        self.process_id = os.getpid()
        for thread_id in range(pool_size):
            near, far = multiprocessing.Pipe()
            handle = f"process-{self.process_id}-thread-{thread_id}"
            thread = ReqHandleThread(near, self.shared_req_queue, handle, callback_fn=callback_fn)
            self.conns_map[handle] = (near, far)
            self.pool[handle] = thread
            thread.start()

    def get_idle_handle(self) -> str | None:
        with lock:
            for handle, thread in self.pool.items():
                if thread.status == "idle":
                    thread.set_busy()
                    return handle
        return None

    def set_idle_handle(self, handle: str) -> None:
        self.pool[handle].set_idle()

    def get_thread(self, handle: str) -> ReqHandleThread:
        return self.pool[handle]


class ModelProcess(threading.Thread):
    """The inference loop behind a RequestPool: takes ``(handle, context)`` off the shared queue
    and runs ``infer(context, callback)`` (set it with ``register_infer_func`` or override it),
    skipping requests of sessions destroyed meanwhile.

    The original logged through a name it never imported, so its first request raised
    NameError; here it logs to the ``wrapper`` logger."""

    def __init__(
        self, shared_req_queue: Any, result_conns_map: dict[str, Any], callback_fn: Callable[..., Any] | None
    ) -> None:
        super().__init__(name="aiges-model", daemon=True)
        self.shared_req_queue = shared_req_queue
        self.result_conns_map = result_conns_map
        self.is_stopping = False
        self.callback = callback_fn

    def run(self) -> None:
        while not self.is_stopping:
            handle, ctx = self.shared_req_queue.get()
            log.info("starting infer %s", handle)
            if ctx.session_destroyed:
                log.warning("%s has been destroyed, not inferring", handle)
                continue
            self.infer(ctx, self.callback)

    def register_infer_func(self, func: Callable[[Context, Any], Any]) -> None:
        self.infer = func  # type: ignore[method-assign,assignment]

    def infer(self, ctx: Context, callback: Any) -> Any:
        raise NotImplementedError("ModelProcess.infer: register_infer_func(func) or override it")
