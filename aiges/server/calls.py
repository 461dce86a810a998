"""Calls for the fronts that translate another protocol (OIP over gRPC and REST, ASE JSON over HTTP
and WebSocket): they build LoaderInput messages and read LoaderOutput messages, where the xsf and
native stream fronts pass the client's bytes through untouched."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiges.engine.engine import Engine
from aiges.engine.sessions import Session
from aiges.errors import AigesError
from aiges.protocol import codec
from aiges.protocol.v2_pb2 import LoaderInput, LoaderOutput


def checked(raw: bytes) -> LoaderOutput:
    """A reply's LoaderOutput; a non-zero code raises it."""
    output = LoaderOutput.FromString(raw)
    if output.code:
        raise AigesError(output.code, output.err)
    return output


async def call_once(engine: Engine, tag: str, message: LoaderInput) -> LoaderOutput:
    reply = await engine.first(tag, message.SerializeToString(), codec.STREAM)
    return checked(reply.output)


class SessionCall:
    """A session opened by one LoaderInput, written with more, read as LoaderOutputs."""

    def __init__(self, engine: Engine, session: Session) -> None:
        self.engine = engine
        self.session = session

    @classmethod
    async def open(cls, engine: Engine, tag: str, first: LoaderInput) -> SessionCall:
        reply = await engine.first(tag, first.SerializeToString(), codec.STREAM, ordered=False, session_only=True)
        return cls(engine, reply.session)

    @property
    def tag(self) -> str:
        return self.session.tag

    async def write(self, message: LoaderInput) -> None:
        await self.engine.write(self.session, message.SerializeToString())

    def finish(self) -> None:
        """No more input: the wrapper's remaining output still comes."""
        self.engine.finish(self.session)

    async def outputs(self) -> AsyncIterator[LoaderOutput]:
        """Every output batch as it comes, up to the one that ends the output; an error raises."""
        while not self.session.closed:
            yield checked(await self.engine.read(self.session, None))

    def close(self, reason: str = "") -> None:
        self.engine.close(self.session, reason=reason)
