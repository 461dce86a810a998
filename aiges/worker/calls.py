"""One-shot calls in the worker: decoded, checked, run in the wrapper one at a time or as a
batch (``wrapperBatchExec``), and encoded where the reply will be sent.

``RunningCalls`` knows the one-shot calls the wrapper runs now: the wrapper's callbacks name
them, from any thread, to learn their app id and sid.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import NamedTuple

from aiges.engine import ipc
from aiges.engine.items import DataItem
from aiges.engine.messages import Done, Failed, Once, OnceReply, Started, Timings
from aiges.engine.resources import RES_IDS_PARAM
from aiges.errors import AigesError, ErrorCode
from aiges.plugins.contract import Plugin
from aiges.protocol.codecs import Decoded
from aiges.schema.validation import Validator
from aiges.worker.call_state import CallStates
from aiges.worker.decoding import FrameDecoder, decoded_all
from aiges.worker.resources import WorkerResources

log = logging.getLogger("aiges.worker")


class RunningCall(NamedTuple):
    app_id: str
    sid: str


class RunningCalls:
    """The one-shot calls in the wrapper now, by handle (tag). Callbacks read it from the
    wrapper's threads: every change is one dict operation, atomic in Python."""

    def __init__(self) -> None:
        self._calls: dict[str, RunningCall] = {}

    def enter(self, tag: str, decoded: Decoded) -> None:
        self._calls[tag] = RunningCall(decoded.app_id, decoded.params.get("sid", tag))

    def leave(self, tag: str) -> None:
        self._calls.pop(tag, None)

    def get(self, tag: str) -> RunningCall | None:
        return self._calls.get(tag)


class OneShotCalls:
    def __init__(
        self,
        plugin: Plugin,
        channel: ipc.BlockingChannel,
        decoder: FrameDecoder,
        resources: WorkerResources,
        batch_size: int,
        states: CallStates | None = None,
    ) -> None:
        self.plugin = plugin
        self.channel = channel
        self.decoder = decoder
        self.resources = resources
        self.validator = Validator(plugin.fields)
        self.batch_size = batch_size if "batch" in plugin.capabilities else 1
        self.running = RunningCalls()
        self.states = states or CallStates()

    def once(self, message: Once) -> OnceReply:
        """A one-shot call."""
        head = message.context
        decoded = self.decoder.first(head, message.frame)
        decoded_all(message.frame)
        if not decoded.items:
            raise AigesError(ErrorCode.INVALID_DATA, "input invalid data: the request carries no payloads")
        res_ids = self.resources.named(decoded.params)
        self.validator.check(decoded.params, decoded.items)
        tag = head.tag
        self.running.enter(tag, decoded)
        try:
            items = self.plugin.once(tag, decoded.params, decoded.items, res_ids)
        finally:
            self.running.leave(tag)
        return OnceReply(decoded.encoder.once(items))

    def group(self, messages: list[object], index: int) -> list[tuple[Once, Decoded]]:
        """The run of one-shot calls starting at ``index`` (at most a batch), decoded and valid;
        a call that is not (a session frame, bad input) is left to be answered on its own."""
        group = []
        for message in messages[index : index + self.batch_size]:
            if not isinstance(message, Once) or self.states.unwanted(message.call_id, message.context.deadline):
                break  # a call nobody waits for is answered on its own (and not run)
            try:
                decoded = self.decoder.first(message.context, message.frame)
            except AigesError:
                break
            if not decoded.once or not decoded.items or RES_IDS_PARAM in decoded.params:
                break  # a call naming resources runs on its own: wrapperBatchExec has no person ids
            try:
                self.validator.check(decoded.params, decoded.items)
            except AigesError:
                break
            group.append((message, decoded))
        return group

    def run_batch(self, group: list[tuple[Once, Decoded]], free_at: float, received_at: float) -> None:
        """One wrapperBatchExec for a run of one-shot calls; each caller gets its own answer. The
        server is told which calls run together, so a hang fails them all and retries none."""
        self.channel.send(Started([message.call_id for message, _ in group]))
        started_at = time.monotonic()
        tags = [message.context.tag for message, _ in group]
        for (message, decoded), tag in zip(group, tags, strict=True):
            decoded_all(message.frame)
            self.running.enter(tag, decoded)
        results: list[list[DataItem] | AigesError]
        try:
            results = list(self.plugin.batch(tags, [d.params for _, d in group], [d.items for _, d in group]))
        except AigesError as exc:
            results = [exc] * len(group)
        except Exception as exc:  # noqa: BLE001 - user code
            log.error("wrapperBatchExec failed:\n%s", traceback.format_exc().rstrip())
            results = [AigesError(ErrorCode.WRAPPER_EXEC, f"{type(exc).__name__}: {exc}")] * len(group)
        finally:
            for tag in tags:
                self.running.leave(tag)
        timings = Timings(free_at, received_at, started_at, time.monotonic())
        answers: list[Done | Failed] = []
        for (message, decoded), result in zip(group, results, strict=False):
            try:
                if isinstance(result, AigesError):
                    raise result
                answers.append(Done(message.call_id, OnceReply(decoded.encoder.once(result)), timings))
            except AigesError as exc:
                answers.append(Failed(message.call_id, exc.code, exc.message, timings))
        self.channel.send_all(answers)
