"""Streaming sessions from the client side, over the xsf ops or the native bidi stream.

Both have the same shape: ``write(inputs, last=...)`` sends a chunk, ``results()`` yields output
batches until the one that ends the output, ``close()`` ends the session early.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import grpc

from aiges.client.values import AigesCallError, InputValue, Result, loader_input, result_of
from aiges.engine.items import DataStatus
from aiges.protocol.stream_pb2_grpc import SessionStub
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput

if TYPE_CHECKING:  # xsf_client imports this module
    from aiges.client.xsf_client import Client, Expect

CONTINUE, END = DataStatus.CONTINUE, DataStatus.END


class XsfSession:
    """AIIn (SeqNo=1) to open, AIIn per chunk with sync_id 1, 2, ..., AIOut to poll, AIExcp to abort."""

    def __init__(
        self,
        client: Client,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Expect = None,
        wait_ms: int = 500,
        handle: str = "",
    ) -> None:
        self.client = client
        self.params = params
        self.headers = headers
        self.expect = expect
        self.wait_ms = wait_ms
        self.handle = handle
        self.sync_id = 0
        self.ended = False
        self._ready: deque[Result] = deque()

    def open(self, inputs: Mapping[str, InputValue] | None = None) -> XsfSession:
        message = loader_input(
            state=LoaderInput.STREAM,
            inputs=inputs,
            params=self.params,
            headers=self.headers,
            expect=self.expect,
            service_id=self.client.service_id,
            sync_id=0,
            status=0 if inputs else None,
        )
        code, error, handle, output = self.client.call("AIIn", message, handle=self.handle, params={"SeqNo": "1"})
        self.handle = handle
        self._take(code, error, output)
        return self

    def write(self, inputs: Mapping[str, InputValue], *, last: bool = False, sync_id: int | None = None) -> None:
        """Send one chunk; whatever output is already ready comes back and is kept for results()."""
        self.sync_id = self.sync_id + 1 if sync_id is None else sync_id
        message = loader_input(
            state=LoaderInput.STREAM,
            inputs=inputs,
            service_id=self.client.service_id,
            sync_id=self.sync_id,
            status=END if last else CONTINUE,
        )
        code, error, _, output = self.client.call(
            "AIIn", message, handle=self.handle, params={"waitTime": str(self.wait_ms)}
        )
        self._take(code, error, output)

    def results(self) -> Iterator[Result]:
        """Output batches, in order, until the one that ends the output."""
        while self._ready:
            yield self._ready.popleft()
        while not self.ended:
            code, error, _, output = self.client.call(
                "AIOut", LoaderInput(), handle=self.handle, params={"waitTime": str(self.wait_ms)}
            )
            self._take(code, error, output)
            while self._ready:
                yield self._ready.popleft()

    def close(self) -> None:
        if not self.ended and self.handle:
            self.ended = True
            self.client.call("AIExcp", LoaderInput(), handle=self.handle)

    def _take(self, code: int, error: str, output: LoaderOutput | None) -> None:
        result = result_of(output, self.handle) if output is not None else Result(code, error, END, [], self.handle)
        if code and not result.code:
            result.code, result.message = code, error
        if result.code:
            self.ended = True
            raise AigesCallError(result.code, result.message, self.handle)
        if result.items or result.status == END:
            self._ready.append(result)
        if result.status == END:
            self.ended = True

    def __enter__(self) -> XsfSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamSession:
    """One ``aiges.v1.Session/Stream`` call; the server pushes each batch as soon as it exists."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Expect = None,
        service_id: str = "",
        timeout: float | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """``metadata``: the call's (the ``aiges-service`` header, for a gateway)."""
        self._outgoing: queue.Queue[LoaderInput | None] = queue.Queue()
        self.params, self.headers, self.expect, self.service_id = params, headers, expect, service_id
        self._call = SessionStub(channel).Stream(self._requests(), timeout=timeout, metadata=metadata or None)
        self.ended = False
        self._opened = False

    def _requests(self) -> Iterator[LoaderInput]:
        while True:
            message = self._outgoing.get()
            if message is None:
                return
            yield message

    @property
    def handle(self) -> str:
        metadata: dict[str, str] = dict(self._call.initial_metadata())
        return metadata.get("aiges-handle", "")

    def open(self, inputs: Mapping[str, InputValue] | None = None) -> StreamSession:
        self._outgoing.put(
            loader_input(
                state=LoaderInput.STREAM,
                inputs=inputs,
                params=self.params,
                headers=self.headers,
                expect=self.expect,
                service_id=self.service_id,
                status=0 if inputs else None,
            )
        )
        self._opened = True
        return self

    def write(self, inputs: Mapping[str, InputValue], *, last: bool = False) -> None:
        self._outgoing.put(loader_input(state=LoaderInput.STREAM, inputs=inputs, status=END if last else CONTINUE))

    def finish(self) -> None:
        """Half-close: no more input; the remaining output still arrives."""
        self._outgoing.put(None)

    def results(self) -> Iterator[Result]:
        for output in self._call:
            result = result_of(output, "")
            if result.code:
                self.ended = True
                raise AigesCallError(result.code, result.message)
            yield result
            if result.status == END:
                self.ended = True
                return
        self.ended = True

    def cancel(self) -> None:
        self._call.cancel()

    def close(self) -> None:
        if not self.ended:
            self.ended = True
            self._outgoing.put(None)
            self._call.cancel()

    def __enter__(self) -> StreamSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
