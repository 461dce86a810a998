"""The services a daemon serves, and which one each call goes to.

    xsf, native stream   ``LoaderInput.serviceId`` of the first frame (``route``)
    OIP gRPC and REST    the model name and version (``by_model``)
    ASE JSON, WebSocket  the HTTP path: each service's schema route (``by_route``)
    a session's later calls   the service whose engine holds its handle (``holding``)

An empty or unknown serviceId goes to the only service where there is one (so a daemon with one
service answers as it always has); with several it is 10404 (``UNKNOWN_SERVICE``), or 10112 while
a service that could be the one named is still loading. With several services the caller's app
must be allowed for the service a call is routed to (10136).

Members are routable services (those started with the daemon from the beginning, and those added
while serving once their self-test passed); ``pending`` ones are being added; ``retiring`` ones
were replaced or removed and finish their calls and sessions. Names are unique among members.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from aiges.engine.context import Caller
from aiges.errors import AigesError, ErrorCode
from aiges.server.model import Model, ModelLoading, ModelNotFound
from aiges.server.security.caller import allowed
from aiges.server.security.guard import PER_CALL
from aiges.server.service import Service, State

SERVICE_HEADER = "aiges-service"
"""The metadata a client sets for a gateway in front of many services (``Client(service=...)``):
a call whose LoaderInput names no service goes to the one it names."""


def service_header(context: grpc.aio.ServicerContext) -> str:
    """The service an ``aiges-service: <service>[/<version>]`` header names ("" for none)."""
    for key, value in context.invocation_metadata() or ():
        if key == SERVICE_HEADER and isinstance(value, str):
            return value.partition("/")[0]
    return ""


class Services:
    def __init__(self, listed: bool) -> None:
        """``listed``: the config lists its services (``[[service]]``), so callers are checked
        per service from the start."""
        self.listed = listed
        self.members: list[Service] = []
        self.pending: list[Service] = []
        self.retiring: list[Service] = []

    def __iter__(self) -> Iterator[Service]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def everything(self) -> list[Service]:
        """Members, then those being added, then those finishing after a replace or remove."""
        return [*self.members, *self.pending, *self.retiring]

    def get(self, name: str) -> Service | None:
        return next((service for service in self.members if service.name == name), None)

    def names(self) -> list[str]:
        return [service.label for service in self.members]

    @property
    def several(self) -> bool:
        return self.listed or len(self.members) > 1

    def guard_service(self) -> str | None:
        """The service the caller check allows apps for: the one service's name (None while it
        loads), or ``PER_CALL`` when there are several (each front checks the one it routes to)."""
        if self.several:
            return PER_CALL
        return self.members[0].name or None if self.members else None

    # -- routing --------------------------------------------------------------------------------------

    def route(self, name: str, caller: Caller | None = None) -> Service:
        """The service a first frame's serviceId names (see the module's doc)."""
        members = self.members
        if name:
            for service in members:
                if service.name == name:
                    return self.check(service, caller)
        if len(members) == 1:
            return self.check(members[0], caller)
        if self._may_be(name):
            raise AigesError(ErrorCode.STARTING, f"service {name!r} is still loading; retry shortly")
        served = ", ".join(repr(n) for n in self.names()) or "none yet"
        if not name:
            raise AigesError(
                ErrorCode.UNKNOWN_SERVICE,
                f"this server serves several services: name one in LoaderInput.serviceId ({served})",
            )
        raise AigesError(ErrorCode.UNKNOWN_SERVICE, f"no service {name!r} here; this server serves {served}")

    def _may_be(self, name: str) -> bool:
        """A service still loading could be the one named: it has that name, or its name comes
        from a wrapper not loaded yet."""
        loading = [s for s in self.everything() if s.state is State.LOADING]
        return any(s.name == name or (not s.name and s in self.members) for s in loading)

    def check(self, service: Service, caller: Caller | None) -> Service:
        if caller is not None and self.several and not allowed(caller, service.label):
            raise AigesError(ErrorCode.AUTH_SERVICE, f"app {caller.app_id} is not allowed to call {service.label!r}")
        return service

    def by_model(self, name: str, version: str = "", caller: Caller | None = None) -> tuple[Service, Model]:
        """The service an OIP request's model name and version name, and its model: ModelLoading
        (10112) while it loads, ModelNotFound (404) for a name or version not served."""
        loading = False
        for service in self.members:
            model = service.models.get()
            if model is None:
                loading = loading or not service.spec.name or service.spec.name == name
                continue
            if model.name == name:
                model.check(name, version)
                return self.check(service, caller), model
        if loading or any(s.name == name for s in self.pending):
            raise ModelLoading()
        served = ", ".join(f"{m.name!r} version {m.version!r}" for m in self.models()) or "none"
        wanted = f"{name!r}" + (f" version {version!r}" if version else "")
        raise ModelNotFound(f"model {wanted} is not served here; this server serves {served}")

    def models(self) -> list[Model]:
        """The members' models, of those loaded."""
        return [model for service in self.members if (model := service.models.get()) is not None]

    def holding(self, handle: str) -> Service | None:
        """The service whose engine holds the session with this handle (a retiring one's too)."""
        for service in self.members:
            if service.engine.sessions.find(handle) is not None:
                return service
        for service in self.retiring:
            if service.engine.sessions.find(handle) is not None:
                return service
        return None

    def session_owner(self, handle: str) -> Service:
        """Where a session's later call goes: the service holding it, else (none does) the only
        one, or the first, whose engine answers that there is no such session (10008)."""
        service = self.holding(handle)
        if service is not None:
            return service
        if not self.members:
            raise AigesError(ErrorCode.INVALID_HANDLE, f"no session {handle or '(empty handle)'}")
        return self.members[0]

    # -- changes while serving ---------------------------------------------------------------------------

    def add(self, service: Service) -> None:
        if service in self.pending:
            self.pending.remove(service)
        self.members.append(service)

    def switch(self, old: Service, new: Service) -> None:
        """``new`` takes ``old``'s place (and its new calls); ``old`` finishes what it runs."""
        if new in self.pending:
            self.pending.remove(new)
        self.members[self.members.index(old)] = new
        old.retire(new)
        self.retiring.append(old)

    def remove(self, service: Service) -> None:
        self.members.remove(service)
        service.retire(None)
        self.retiring.append(service)

    def forget(self, service: Service) -> None:
        """A retired service that stopped, or a pending one that failed."""
        for group in (self.retiring, self.pending):
            if service in group:
                group.remove(service)
