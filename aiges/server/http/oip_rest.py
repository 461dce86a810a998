"""The Open Inference Protocol over REST (``/v2``), with Triton's binary tensor extension: a body
may be JSON followed by raw tensor bytes, the JSON's length in ``Inference-Header-Content-Length``
(what tritonclient.http sends by default). Errors are ``{"error": "<code>: <message>"}`` with the
HTTP status of the AIGes code. Each service is a model (``/v2/models/<name>``); the model
repository extension lists, loads and unloads them (``/v2/repository/...``, as Triton's)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from aiges import __version__
from aiges.engine.messages import ItemsOutput
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import oip_tensors as oip
from aiges.protocol.ase_json import scalar_text
from aiges.protocol.json_body import parse_json
from aiges.server.grpc.oip_repository import load_table, require_admin
from aiges.server.model import Model
from aiges.server.request_context import http_context, with_oip_parameters
from aiges.server.security.caller import http_caller
from aiges.server.service import Service

if TYPE_CHECKING:
    from aiges.server.http.front import HttpFront

HEADER_LENGTH = "Inference-Header-Content-Length"


def flatten(name: str, data: Any) -> list[Any]:
    """Nested JSON lists -> their elements in order (iteratively: nesting depth is the client's)."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    pending = [iter(data)]
    while pending:
        for value in pending[-1]:
            if isinstance(value, list):
                pending.append(iter(value))
                break
            if not isinstance(value, (bool, int, float, str)):
                raise oip.invalid(f"input {name!r}: data holds {type(value).__name__}, not numbers or strings")
            flat.append(value)
        else:
            pending.pop()
    return flat


def json_object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise oip.invalid(f"{where} must be a JSON object")
    return value


@dataclass
class RestRequest:
    call: oip.Request
    id: str
    binary: dict[str, bool]
    binary_default: bool


def parse_request(raw: bytes, header_length: str | None) -> RestRequest:
    """The request, its id, which outputs were asked for binary, and whether binary is the default."""
    try:
        split = int(header_length) if header_length is not None else len(raw)
    except ValueError:
        raise oip.invalid(f"{HEADER_LENGTH} is not a number") from None
    if not 0 <= split <= len(raw):
        raise oip.invalid(f"{HEADER_LENGTH} {split} is outside the body's {len(raw)} bytes")
    body = json_object(parse_json(bytes(raw[:split])), "the body")
    binary = memoryview(raw)[split:]
    inputs = body.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise oip.invalid("inputs must be a list of tensors")
    tensors, offset = [], 0
    for entry in inputs:
        name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise oip.invalid("every input needs a name and a datatype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise oip.invalid(f"input {name!r}: shape must be a list of integers")
        oip.check_datatype(name, datatype)
        shape = oip.check_shape(name, shape)
        parameters = json_object(entry.get("parameters"), f"input {name!r}: parameters")
        size = parameters.pop("binary_data_size", None)
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise oip.invalid(f"input {name!r}: binary_data_size {size!r} runs past the body")
            data = bytes(binary[offset : offset + size])
            offset += size
        elif "data" in entry:
            data = oip.from_values(name, datatype, shape, flatten(name, entry["data"]))
        else:
            raise oip.invalid(f"input {name!r} has neither data nor binary_data_size")
        tensors.append(oip.Tensor(name, datatype, shape, data, {k: scalar_text(v) for k, v in parameters.items()}))
    outputs = body.get("outputs", [])
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise oip.invalid("outputs must be a list of {name, parameters}")
    parameters = json_object(body.get("parameters"), "parameters")
    binary_outputs = {
        o["name"]: oip.parse_flag(json_object(o.get("parameters"), "output parameters").get("binary_data", False))
        for o in outputs
    }
    call = oip.Request(tensors, [o["name"] for o in outputs], {k: scalar_text(v) for k, v in parameters.items()})
    request_id = str(body["id"]) if isinstance(body.get("id"), str) else ""
    return RestRequest(call, request_id, binary_outputs, oip.parse_flag(parameters.get("binary_data_output", False)))


def infer_response(
    model: Model, request_id: str, tensors: list[oip.Tensor], binary: dict[str, bool], binary_default: bool
) -> web.Response:
    outputs, parts = [], []
    for tensor in tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        parameters: dict[str, Any] = dict(tensor.parameters)
        if binary.get(tensor.name, binary_default):
            parameters["binary_data_size"] = len(tensor.data)
            parts.append(tensor.data)
        else:
            entry["data"] = oip.to_values(tensor)
        entry["parameters"] = parameters
        outputs.append(entry)
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request_id:
        body["id"] = request_id
    try:
        header = json.dumps(body, allow_nan=False).encode()
    except ValueError:
        raise AigesError(
            ErrorCode.INVALID_OUTPUT,
            "an output tensor holds NaN or Infinity, which JSON cannot "
            "carry; ask for it as binary data (binary_data_output)",
        ) from None
    if not parts:
        return web.Response(body=header, content_type="application/json")
    return web.Response(
        body=header + b"".join(parts),
        content_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def add_routes(router: web.UrlDispatcher, front: HttpFront) -> None:
    def model_of(request: web.Request) -> tuple[Service, Model]:
        name, version = request.match_info["name"], request.match_info.get("version", "")
        return front.services.by_model(name, version, http_caller(request))

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def ready(request: web.Request) -> web.Response:
        is_ready = front.ready()
        return web.json_response({"ready": is_ready}, status=200 if is_ready else 503)

    async def server_metadata(request: web.Request) -> web.Response:
        extensions = ["binary_tensor_data"] + (["model_repository"] if front.repository is not None else [])
        return web.json_response({"name": "aiges", "version": __version__, "extensions": extensions})

    async def model_metadata(request: web.Request) -> web.Response:
        return web.json_response(model_of(request)[1].metadata())

    async def model_ready(request: web.Request) -> web.Response:
        service, _ = model_of(request)
        is_ready = front.model_ready(service)
        return web.json_response(
            {"name": request.match_info["name"], "ready": is_ready}, status=200 if is_ready else 503
        )

    async def infer(request: web.Request) -> web.Response:
        from aiges.server.http.front import error_response

        service, model = model_of(request)
        tag = front.handles.next()

        async def body() -> web.Response:
            parsed = parse_request(await request.read(), request.headers.get(HEADER_LENGTH))
            call = parsed.call
            model.check_outputs(call.outputs)
            request_context = with_oip_parameters(http_context(tag, request), call.parameters)
            output = await service.once(request_context, oip.items_frame(call, model.name, model.schema, tag))
            assert isinstance(output, ItemsOutput)
            return infer_response(
                model, parsed.id, oip.output_tensors(output, call.outputs), parsed.binary, parsed.binary_default
            )

        return await front.calls.run("infer", tag, body(), error_response, service=service.label)

    router.add_get("/v2/health/live", live)
    router.add_get("/v2/health/ready", ready)
    router.add_get("/v2", server_metadata)
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        router.add_get(base, model_metadata)
        router.add_get(base + "/ready", model_ready)
        router.add_post(base + "/infer", infer)
    if front.repository is not None:
        add_repository_routes(router, front)


def add_repository_routes(router: web.UrlDispatcher, front: HttpFront) -> None:
    """``POST /v2/repository/index`` (``{"ready": bool}``), ``.../models/<name>/load``
    (``{"parameters": {"config": "<JSON>"}}``, or ``{"wrapper": ...}``) and ``.../unload``."""
    repository = front.repository
    assert repository is not None

    async def body_of(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        return json_object(parse_json(raw), "the body") if raw.strip() else {}

    async def index(request: web.Request) -> web.Response:
        ready_only = oip.parse_flag((await body_of(request)).get("ready", False))
        return web.json_response(repository.index(ready_only=ready_only))

    async def load(request: web.Request) -> web.Response:
        from aiges.server.http.front import error_response

        async def body() -> web.Response:
            require_admin(http_caller(request), "repository load")
            parameters = json_object((await body_of(request)).get("parameters"), "parameters")
            return web.json_response(await repository.load(request.match_info["name"], load_table(parameters)))

        return await front.calls.run("repository-load", "", body(), error_response)

    async def unload(request: web.Request) -> web.Response:
        from aiges.server.http.front import error_response

        async def body() -> web.Response:
            require_admin(http_caller(request), "repository unload")
            return web.json_response(await repository.unload(request.match_info["name"]))

        return await front.calls.run("repository-unload", "", body(), error_response)

    router.add_post("/v2/repository/index", index)
    router.add_post("/v2/repository/models/{name}/load", load)
    router.add_post("/v2/repository/models/{name}/unload", unload)
