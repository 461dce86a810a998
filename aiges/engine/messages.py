"""Every message between the server and a worker process, as a class.

Messages are NamedTuples, matched by class and field name with ``match``. The ones every call
sends are marked ``@hot(code)``: they travel as plain tuples, whose layout ``aiges.engine.packing``
derives from their fields (pickling a tuple costs a tenth of pickling a class instance). Payload
bytes (fields typed ``Payload``, ``Output``) travel out of band: in a frame's buffers, in the
shared-memory ring, or in a memfd of their own when very large (``aiges.engine.ipc``), never
inside the pickle stream.

A call names what it carries in ``frame``:

- ``Wire``: a client's own protocol bytes, which the worker decodes with the named codec (the xsf
  and native stream fronts pass their clients' LoaderInput through undecoded);
- ``Items``: a call its front has already decoded into engine items (OIP, the ASE JSON API).

Server -> worker: ``Init`` once, then calls (``Once``, ``Open``, ``Write``, ``Finish``,
``Destroy``, and the rare ``LoadResource`` / ``UnloadResource``), each answered by ``Done`` or
``Failed`` in the order sent; ``Pause``/``Resume`` (no answer) for a session's output
back-pressure; ``Fini`` to stop.

Worker -> server: ``Ready`` or ``InitFailed``; ``Started`` for calls run together as one batch;
``Done``/``Failed`` per call; ``Output``/``OutputFailed`` for session output at any time; and
what the wrapper reports through its callbacks (``Usage``, ``Metric``, ``LbLabels``, ``Trace``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias, TypeVar

from aiges.engine.items import DataItem, WorkerInfo
from aiges.engine.items import Payload as Payload

HOT: dict[type, int] = {}
"""The messages packed as plain tuples, by class: their code, the packed tuple's first element."""
_M = TypeVar("_M", bound=type)


def hot(code: int) -> Callable[[_M], _M]:
    """Mark a message class as one every call sends: ``aiges.engine.packing`` packs it as a tuple
    ``(code, *fields)``, each field packed after its declared type."""

    def register(cls: _M) -> _M:
        if code in HOT.values():
            raise ValueError(f"packed code {code} is taken")
        HOT[cls] = code
        return cls

    return register


# -- what a call carries ---------------------------------------------------------------------------


@hot(20)
class Wire(NamedTuple):
    """A frame in a client's protocol, decoded in the worker by ``codec`` (see ``aiges.protocol.codecs``)."""

    codec: str
    data: Payload


class Expect(NamedTuple):
    """One output the caller wants: its data type, and attributes it asks for (encoding...)."""

    data_type: int
    attributes: dict[str, str]


@hot(21)
class Items(NamedTuple):
    """A call decoded by its front. ``expect`` names the outputs wanted (an output it does not
    name fails with 10106). ``params``, ``headers`` and ``expect`` count on a call or a session's
    first frame; a later frame carries only items."""

    items: list[DataItem]
    params: dict[str, str]
    headers: dict[str, str]
    expect: dict[str, Expect]
    service_id: str = ""
    sync_id: int = 0


Frame: TypeAlias = "Wire | Items"


@hot(22)
class ItemsOutput(NamedTuple):
    """Output for an ``Items`` call: the batch's status and its items, named after their expect
    entries, with ``seq`` and ``status`` attributes (as a LoaderOutput's payloads carry them)."""

    status: int
    items: list[DataItem]


class Spliced(NamedTuple):
    """Encoded bytes as the pieces they are made of, in order: the protobuf framing a codec
    encoded around payloads it did not copy in (``aiges.protocol.loader_codec``). A worker sends
    it as one buffer, written piece by piece where it travels (the ring, a memfd, the socket);
    the server receives those bytes whole."""

    pieces: tuple[Payload, ...]
    size: int

    def join(self) -> bytes:
        return b"".join(self.pieces)


Output: TypeAlias = "bytes | Spliced | ItemsOutput"
"""What a call or a session produced, in its frame's form: encoded bytes for a ``Wire`` frame
(``Spliced`` only in the worker, before it is sent: the server receives bytes)."""


class CallContext(NamedTuple):
    """What a worker is told of a call (``aiges.engine.context.RequestContext.wire``): its handle,
    its trace, this server's address (replies that name it), the calling app, and the deadline
    (``time.monotonic()``; 0 for none)."""

    tag: str
    trace: str = ""
    peer: str = ""
    app_id: str = ""
    deadline: float = 0.0


# -- server -> worker ---------------------------------------------------------------------------------


class WorkerSettings(NamedTuple):
    wrapper: str
    config: dict[str, str]
    realtime: bool
    header_pass: tuple[str, ...]
    peer_addr: str
    batch_size: int
    batch_delay_ms: int
    async_mode: bool
    log_level: str


class Init(NamedTuple):
    settings: WorkerSettings


@hot(1)
class Once(NamedTuple):
    """A one-shot call."""

    call_id: int
    context: CallContext
    frame: Frame


@hot(2)
class Open(NamedTuple):
    """A session's first frame; ``ordered``: reorder its frames by their sync_id."""

    call_id: int
    context: CallContext
    frame: Frame
    ordered: bool


@hot(3)
class Write(NamedTuple):
    call_id: int
    tag: str
    frame: Frame


class Finish(NamedTuple):
    """The client will write no more: read until the wrapper's output ends."""

    call_id: int
    tag: str


class Destroy(NamedTuple):
    call_id: int
    tag: str


class LoadResource(NamedTuple):
    """``wrapperLoadRes(items, res_id)``: a personalised resource for calls that name ``res_id``
    (answered ``Done(value=None)``, or ``Failed`` with 10903 and the wrapper's reason)."""

    call_id: int
    res_id: int
    items: list[DataItem]


class UnloadResource(NamedTuple):
    """``wrapperUnloadRes(res_id)`` (``Failed`` with 10904 if the wrapper refuses)."""

    call_id: int
    res_id: int


class Pause(NamedTuple):
    tag: str


class Resume(NamedTuple):
    tag: str


class Fini(NamedTuple):
    pass


Call: TypeAlias = "Once | Open | Write | Finish | Destroy | LoadResource | UnloadResource"

# -- worker -> server ---------------------------------------------------------------------------------


class Timings(NamedTuple):
    """The worker's clock (``time.monotonic``, one clock for every process on the host): when it
    was last free, when it read the call, when the wrapper started and finished."""

    free_at: float
    received_at: float
    started_at: float
    finished_at: float


class Ready(NamedTuple):
    info: WorkerInfo


class InitFailed(NamedTuple):
    reason: str


class Started(NamedTuple):
    """These calls run together (one wrapperBatchExec)."""

    call_ids: list[int]


@hot(23)
class OnceReply(NamedTuple):
    output: Output


@hot(24)
class Opened(NamedTuple):
    """A session exists; ``outputs`` are those its first frame already produced."""

    service_id: str
    outputs: list[tuple[Output, bool]]


@hot(4)
class Done(NamedTuple):
    call_id: int
    value: OnceReply | Opened | None
    timings: Timings


@hot(5)
class Failed(NamedTuple):
    call_id: int
    code: int
    message: str
    timings: Timings


@hot(6)
class SessionOutput(NamedTuple):
    tag: str
    output: Output
    ended: bool


class SessionFailed(NamedTuple):
    tag: str
    code: int
    message: str


class Usage(NamedTuple):
    app_id: str
    channel: str
    key: str
    units: int


class Metric(NamedTuple):
    name: str
    labels: dict[str, str]
    value: int


class LbLabels(NamedTuple):
    labels: dict[str, str]


class Trace(NamedTuple):
    sid: str
    kind: str
    key: str
    value: str


Report: TypeAlias = "Usage | Metric | LbLabels | Trace"
"""What a wrapper reports through its callbacks; the server's ``WrapperReports`` takes them."""

ToServer: TypeAlias = "Ready | InitFailed | Started | Done | Failed | SessionOutput | SessionFailed | Report"
ToWorker: TypeAlias = "Init | Call | Pause | Resume | Fini"


def describe(message: Any) -> str:
    """A message's class name, for logs."""
    return type(message).__name__
