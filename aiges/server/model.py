"""A service's model, as the OIP and HTTP fronts present it: the wrapper's serviceId (or the
service's own name, with ``[[service]]``), version and declarations, once a worker has loaded it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiges.engine.items import WorkerInfo
from aiges.errors import AigesError, ErrorCode
from aiges.schema import declared_inputs, declared_outputs, route_of


def routed_schema(schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """A service named apart from its wrapper's serviceId gets its own default route
    (``/<version>/private/<name>``), so that two services of one wrapper have two routes; a
    route the wrapper declares itself stays as it is."""
    if not schema or not name:
        return schema
    meta = schema["meta"]
    service_id, version = str(meta.get("serviceId", "")), str(meta.get("version", ""))
    if name == service_id or meta.get("route") != route_of(service_id, version, None):
        return schema
    return {**schema, "meta": {**meta, "route": route_of(name, version, None)}}


class ModelNotFound(Exception):
    """A request names another model (or version) than the one served: 404."""


class ModelLoading(AigesError):
    """The workers are still loading the wrapper (the server answers before they are ready):
    HTTP 503 with Retry-After, gRPC UNAVAILABLE, xsf ResData.code 10112."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.STARTING, "the model is still loading; retry shortly")


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    schema: Mapping[str, Any] | None
    sessions: bool

    @classmethod
    def of(cls, info: WorkerInfo, service_name: str, name: str = "", version: str = "") -> Model:
        """``name``, ``version``: the service's own (``[[service]]`` name and version), over the wrapper's."""
        return cls(
            name=name or info.service_id or service_name,
            version=version or info.version or "1",
            schema=routed_schema(info.schema, name),
            sessions="stream" in info.capabilities,
        )

    def serves(self, name: str, version: str = "") -> bool:
        return name == self.name and version in ("", self.version)

    def check(self, name: str, version: str = "") -> None:
        """404 for another model's name or version."""
        if not self.serves(name, version):
            wanted = f"{name!r}" + (f" version {version!r}" if version else "")
            raise ModelNotFound(
                f"model {wanted} is not served here; this server serves {self.name!r} version {self.version!r}"
            )

    def metadata(self) -> dict[str, Any]:
        """ModelMetadata: declared inputs and outputs, each one BYTES element."""

        def tensors(declared: dict[str, str]) -> list[dict[str, Any]]:
            return [{"name": name, "datatype": "BYTES", "shape": [1]} for name in declared]

        return {
            "name": self.name,
            "versions": [self.version],
            "platform": "aiges",
            "inputs": tensors(declared_inputs(self.schema)),
            "outputs": tensors(declared_outputs(self.schema)),
        }

    def check_outputs(self, requested: Iterable[str]) -> None:
        declared = declared_outputs(self.schema)
        unknown = [name for name in requested if declared and name not in declared]
        if unknown:
            raise AigesError(
                ErrorCode.INVALID_DATA, f"unknown output {unknown[0]!r}; {self.name} produces {', '.join(declared)}"
            )


class ModelSource:
    """The model, as the fronts ask for it: ``current()`` raises ModelLoading until a worker has
    loaded the wrapper."""

    def __init__(
        self, info: Callable[[], WorkerInfo | None], service_name: str, name: str = "", version: str = ""
    ) -> None:
        self._info = info
        self.service_name = service_name
        self.name = name
        self.version = version
        self._model: Model | None = None
        self._of: WorkerInfo | None = None

    def get(self) -> Model | None:
        info = self._info()
        if info is None:
            return None
        if info is not self._of:  # made once per generation of workers, not per call
            self._model, self._of = Model.of(info, self.service_name, self.name, self.version), info
        return self._model

    def current(self) -> Model:
        model = self.get()
        if model is None:
            raise ModelLoading()
        return model
