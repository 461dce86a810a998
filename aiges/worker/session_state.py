"""A worker's side of its streaming sessions: the wrapper's handle, the output encoder, and the
reorder buffer for input frames."""

from __future__ import annotations

from dataclasses import dataclass

from aiges.engine.items import DataItem
from aiges.engine.messages import Output
from aiges.errors import AigesError
from aiges.protocol.codecs import Encoder, owned

GAP_WAIT_S = 5.0


class Sequencer:
    """Puts numbered frames back in order. The first frame's number is the base; frames below
    the cursor (repeats, or ones already skipped) are dropped."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.waiting: dict[int, list[DataItem]] = {}

    def push(self, seq: int, items: list[DataItem]) -> list[list[DataItem]]:
        """The frames now ready to write, in order (possibly none). A frame that waits for an
        earlier one is kept as copies: its payloads may be views of the ring, which is reused
        once its call is answered."""
        if seq < self.next or seq in self.waiting:
            return []
        self.waiting[seq] = items if seq == self.next else owned(items)
        return self._drain()

    def skip_gap(self) -> list[list[DataItem]]:
        """Give up on the missing frames: continue from the lowest waiting one."""
        if not self.waiting:
            return []
        self.next = min(self.waiting)
        return self._drain()

    def _drain(self) -> list[list[DataItem]]:
        ready = []
        while self.next in self.waiting:
            ready.append(self.waiting.pop(self.next))
            self.next += 1
        return ready


@dataclass(eq=False)
class WorkerSession:
    tag: str
    handle: str
    encoder: Encoder
    sequencer: Sequencer | None
    sid: str = ""
    app_id: str = ""
    input_done: bool = False
    output_done: bool = False
    gap_deadline: float | None = None
    paused: bool = False
    """The client has too much unread output: the wrapper's output is not read meanwhile."""
    failure: AigesError | None = None
    outbox: list[tuple[Output, bool]] | None = None
    """While the first frame is handled: its outputs, returned with the answer."""
