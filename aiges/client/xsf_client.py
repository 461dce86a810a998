"""The xsf client: ``utils.XsfCall/call`` with the AIIn / AIOut / AIExcp ops, and the runtime
control ops: AILoad / AIUnLoad (personalised resources) and AILBType (the licence count)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiges.client.credentials import SigningKey, TlsOptions, open_channel
from aiges.client.session_calls import StreamSession, XsfSession
from aiges.client.values import AigesCallError, InputValue, Result, loader_input, result_of
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput
from aiges.protocol.xsf_pb2 import DataMeta, ReqData, Session
from aiges.protocol.xsf_pb2_grpc import XsfCallStub

Expect = Iterable[str] | Mapping[str, int | str] | None
RES_IDS_PARAM = "aiges.res_ids"
"""The request param naming the personalised resources a call or a session uses."""


def with_resources(params: Mapping[str, str] | None, res_ids: Iterable[int]) -> dict[str, str] | None:
    """``params`` plus ``aiges.res_ids`` naming ``res_ids`` (unchanged when there are none)."""
    ids = [str(int(i)) for i in res_ids]
    if not ids:
        return dict(params) if params is not None else None
    return {**(params or {}), RES_IDS_PARAM: ",".join(ids)}


class Client:
    def __init__(
        self,
        address: str,
        *,
        timeout: float = 60.0,
        max_message_mb: int = 64,
        service_id: str = "",
        options: Sequence[tuple[str, Any]] = (),
        tls: TlsOptions | None = None,
        signing: SigningKey | None = None,
        service: str = "",
    ) -> None:
        """``service_id``: the service every call is for (``LoaderInput.serviceId``: a daemon
        with several services routes by it; empty: the only one); ``options``: more gRPC channel
        arguments (keep-alive, reconnection back-off...);
        ``tls``: connect over TLS (with a client certificate for mTLS); ``signing``: sign every
        call with an app's key (a server with ``[auth] mode = "hmac"``); ``service``: the service
        an ``aiges gateway`` in front of many should route to (the ``aiges-service`` header)."""
        self.metadata: tuple[tuple[str, str], ...] = (("aiges-service", service),) if service else ()
        limit = max_message_mb << 20
        self.address = address
        self.timeout = timeout
        self.service_id = service_id
        self.channel = open_channel(
            address,
            tls=tls,
            signing=signing,
            options=[("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit), *options],
        )
        self.stub = XsfCallStub(self.channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def call(
        self,
        op: str,
        message: LoaderInput | None = None,
        *,
        handle: str = "",
        params: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> tuple[int, str, str, LoaderOutput | None]:
        """One raw xsf call: (ResData.code, ResData.error_info, handle, LoaderOutput or None).
        A call with a handle says it in the ``aiges-handle`` header too, so that a gateway sends
        it to the session's host; ``idempotent`` lets a gateway run it again elsewhere."""
        request = ReqData(op=op, s=Session(h=handle), param=dict(params or {}))
        if message is not None:
            request.data.append(DataMeta(data=message.SerializeToString()))
        metadata = self.metadata
        if handle:
            metadata += (("aiges-handle", handle),)
        if idempotent:
            metadata += (("aiges-idempotent", "1"),)
        reply = self.stub.call(request, timeout=self.timeout, metadata=metadata or None)
        output = LoaderOutput.FromString(reply.data[0].data) if reply.data else None
        return reply.code, reply.error_info, reply.s.h, output

    def once(
        self,
        inputs: Mapping[str, InputValue],
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Expect = None,
        check: bool = True,
        res_ids: Iterable[int] = (),
        idempotent: bool = False,
    ) -> Result:
        """One one-shot call. Raises AigesCallError on a non-zero code unless ``check`` is False.
        ``res_ids``: loaded personalised resources the wrapper is to use (its person ids);
        ``idempotent``: it may run twice (a gateway may retry it if its host is lost with it)."""
        message = loader_input(
            state=LoaderInput.ONCE,
            inputs=inputs,
            params=with_resources(params, res_ids),
            headers=headers,
            expect=expect,
            service_id=self.service_id,
            status=3,
        )
        code, error, handle, output = self.call("AIIn", message, params={"SeqNo": "1"}, idempotent=idempotent)
        result = result_of(output, handle) if output is not None else Result(code, error, 2, [], handle)
        if code and not result.code:
            result.code, result.message = code, error
        if check and result.code:
            raise AigesCallError(result.code, result.message, handle)
        return result

    def session(
        self,
        inputs: Mapping[str, InputValue] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        expect: Expect = None,
        transport: str = "xsf",
        wait_ms: int = 500,
        handle: str = "",
        res_ids: Iterable[int] = (),
    ) -> XsfSession | StreamSession:
        """Open a streaming session (``transport`` "xsf": the AIIn/AIOut ops; "stream": the native
        bidi stream). Use it as a context manager; ``inputs`` are written with the first frame.
        ``handle``: the xsf handle to use (as a gateway that reuses the request's sid does);
        empty, the server makes one. ``res_ids``: personalised resources, as for ``once``."""
        params = with_resources(params, res_ids)
        session: XsfSession | StreamSession
        if transport == "xsf":
            session = XsfSession(self, params=params, headers=headers, expect=expect, wait_ms=wait_ms, handle=handle)
        elif transport == "stream":
            session = StreamSession(
                self.channel,
                params=params,
                headers=headers,
                expect=expect,
                service_id=self.service_id,
                metadata=self.metadata,
            )
        else:
            raise ValueError(f"transport must be 'xsf' or 'stream', got {transport!r}")
        return session.open(inputs)

    # -- runtime control ----------------------------------------------------------------------------

    def _control(self, op: str, params: dict[str, str], message: LoaderInput | None = None) -> None:
        if message is None and self.service_id:  # it names the service the op is for
            message = LoaderInput(serviceId=self.service_id)
        code, error, handle, output = self.call(op, message, params=params)
        if output is not None and output.code:
            code, error = output.code, output.err
        if code:
            raise AigesCallError(code, error, handle)

    def load_resource(self, res_id: int, inputs: Mapping[str, InputValue]) -> None:
        """AILoad: load a personalised resource (its data: ``inputs``) in every worker of the
        server, under ``res_id`` (1..2^32-1); a loaded id is replaced. Raises AigesCallError."""
        message = loader_input(state=LoaderInput.ONCE, inputs=inputs, service_id=self.service_id, status=3)
        self._control("AILoad", {"resId": str(res_id)}, message)

    def unload_resource(self, res_id: int) -> None:
        """AIUnLoad: unload a personalised resource from every worker. Raises AigesCallError."""
        self._control("AIUnLoad", {"resId": str(res_id)})

    def resize_licences(self, total: int, *, timeout_ms: int = 0, lb_type: str | None = None) -> None:
        """AILBType: set the server's licence count; a smaller count waits at most ``timeout_ms``
        for the licences in use to fit (else 10104, and the count stays). Raises AigesCallError."""
        params = {"authzNo": str(total), "timeout": str(timeout_ms)}
        if lb_type is not None:
            params["lbType"] = lb_type
        self._control("AILBType", params)
