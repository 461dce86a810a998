"""xsf session calls that reach another front of the port: passed on to the front that holds the
session, over its local socket.

With ``[svcName] reuseport`` the kernel gives each connection to one front, and a session lives
in the front that opened it (its worker, its licence). A client that continues a session on
another connection (a pool of connections, a reconnect) reaches any front; every handle says
which front made it (``protocol.handle.front_of``), and the host state has that front's Unix
socket, so the front that was reached passes the raw request on, unchanged, and returns the
holder's reply: one local hop, for calls of that session only.

The holder trusts the caller the first front authenticated: the local socket (in the host
state's folder, mode 0700, owned by the server's user) serves only ``utils.XsfCall/call``, with
no caller check of its own, and reads the caller from the ``aiges-forwarded-*`` metadata, which
only a local front can send.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from aiges.engine.context import ANONYMOUS, Caller, Quota
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.handle import front_of
from aiges.server.host_state import HostState

FORWARDED_APP = "aiges-forwarded-app"
FORWARDED_IDENTITY = "aiges-forwarded-identity"
FORWARDED_ADMIN = "aiges-forwarded-admin"
METHOD = "/utils.XsfCall/call"


class ForwardedCallers:
    """The caller of a call forwarded by another front of this host (its metadata)."""

    def of(self, context: grpc.aio.ServicerContext) -> Caller:
        metadata = dict(context.invocation_metadata() or ())
        app_id = metadata.get(FORWARDED_APP)
        if not isinstance(app_id, str) or not app_id:
            return ANONYMOUS
        identity = metadata.get(FORWARDED_IDENTITY)
        return Caller(
            app_id=app_id,
            admin=metadata.get(FORWARDED_ADMIN) == "1",
            quota=Quota(),
            identity=identity if isinstance(identity, str) else "",
        )


def caller_metadata(caller: Caller) -> Sequence[tuple[str, str]]:
    if not caller.authenticated:
        return ()
    return (
        (FORWARDED_APP, caller.app_id),
        (FORWARDED_IDENTITY, caller.identity),
        (FORWARDED_ADMIN, "1" if caller.admin else "0"),
    )


class SessionForwarder:
    """Passes a session's call to the front of this host that holds it."""

    def __init__(self, host: HostState, max_message_bytes: int) -> None:
        self.host = host
        self.options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        self._channels: dict[str, grpc.aio.Channel] = {}

    def holder(self, handle: str) -> str | None:
        """The local socket of the other front that holds ``handle``'s session; None when it is
        this front's (or not a handle a front of this host made). 10101 when that front is gone
        (and its sessions with it)."""
        front = front_of(handle)
        if front is None or front == self.host.front:
            return None
        info = self.host.front_info(front)
        if info is None:
            raise AigesError(ErrorCode.ENGINE_INACTIVE, f"session {handle} ended: the front that held it stopped")
        return info.socket

    async def forward(self, socket: str, raw: bytes, caller: Caller, timeout: float | None) -> bytes:
        channel = self._channels.get(socket)
        if channel is None:
            channel = self._channels[socket] = grpc.aio.insecure_channel(f"unix:{socket}", options=self.options)
        call = channel.unary_unary(METHOD)
        try:
            reply: bytes = await call(raw, timeout=timeout, metadata=caller_metadata(caller))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                raise AigesError(ErrorCode.ENGINE_INACTIVE, "the front that held the session is gone") from None
            raise AigesError(ErrorCode.WRAPPER_EXEC, f"passing the call on failed: {exc.details()}") from None
        return reply

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
