"""The web console's form for a service, from the wrapper's declared fields (its schema, as
``aiges schema`` prints it): each param with the control that fits it, each input with its data
type and how a session sends it, each output with how to show it.

The page (``static/console/console.js``) draws what this describes; nothing about a particular
wrapper is written in the page. A wrapper that declares nothing (function style, C engines, the
python_wrapper SDK) gets ``declared: false``, and the page offers free-form params, inputs and
outputs (the outputs a call asks for, as ASE JSON objects among its params).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiges.engine.items import TYPE_NAMES
from aiges.schema import declared_inputs, declared_outputs, route_of
from aiges.server.model import Model

DATA_TYPES = tuple(TYPE_NAMES.values())  # text, audio, image, video, other
CHUNK_MS = 100
"""A declared PCM input is streamed in chunks of this many milliseconds of sound, one per that
many milliseconds: real time, as a microphone would send it."""
CHUNK_BYTES = 4096
"""Any other input streams in chunks of this size (``aiges call --stream``'s default) ..."""
INTERVAL_MS = 40
"""... one every this many milliseconds."""
PCM_ENCODINGS = frozenset({"raw", "pcm", "s16le", ""})
STREAM_ATTRIBUTES = frozenset({"status", "seq"})


def form(model: Model, capabilities: frozenset[str]) -> dict[str, Any]:
    """What the console's form shows for ``model``; ``capabilities`` as the wrapper reports them
    ("once", "stream", ...)."""
    schema = model.schema
    route = str(schema["meta"]["route"]) if schema else route_of(model.name, model.version, None)
    return {
        "service": model.name,
        "version": model.version,
        "route": route,
        "declared": bool(schema) and bool(declared_inputs(schema) or declared_outputs(schema) or params_of(schema)),
        "once": "once" in capabilities or not capabilities,
        "sessions": model.sessions,
        "params": [param_control(name, spec, name in required_params(schema)) for name, spec in params_of(schema)],
        "inputs": [
            input_field(name, type_name, payload_spec(schema, name), name in required_inputs(schema))
            for name, type_name in declared_inputs(schema).items()
        ],
        "outputs": [
            output_field(name, type_name, output_spec(schema, name))
            for name, type_name in declared_outputs(schema).items()
        ],
        "data_types": list(DATA_TYPES),
    }


def _service_section(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    service_id = schema["meta"]["serviceId"]
    parameter = schema["schemainput"].get("properties", {}).get("parameter", {})
    section: Mapping[str, Any] = parameter.get("properties", {}).get(service_id, {})
    return section


def params_of(schema: Mapping[str, Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """The declared params (not the expect entries, which are objects), in declaration order."""
    if not schema:
        return []
    properties = _service_section(schema).get("properties", {})
    return [(name, spec) for name, spec in properties.items() if spec.get("type") != "object"]


def required_params(schema: Mapping[str, Any] | None) -> set[str]:
    return set(_service_section(schema).get("required", [])) if schema else set()


def required_inputs(schema: Mapping[str, Any] | None) -> set[str]:
    if not schema:
        return set()
    payload = schema["schemainput"].get("properties", {}).get("payload", {})
    return set(payload.get("required", []))


def payload_spec(schema: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    if not schema:
        return {}
    payload = schema["schemainput"].get("properties", {}).get("payload", {})
    spec: Mapping[str, Any] = payload.get("properties", {}).get(name, {})
    return spec


def output_spec(schema: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    if not schema:
        return {}
    payload = schema["schemaoutput"].get("properties", {}).get("payload", {})
    spec: Mapping[str, Any] = payload.get("properties", {}).get(name, {})
    return spec


def defaults(spec: Mapping[str, Any], type_name: str) -> dict[str, Any]:
    """A payload's declared attributes (encoding, sample_rate, ...) with their default values."""
    return {
        key: value["defaultVal"]
        for key, value in spec.get("properties", {}).items()
        if key != type_name and key not in STREAM_ATTRIBUTES and isinstance(value, Mapping) and "defaultVal" in value
    }


def param_control(name: str, spec: Mapping[str, Any], required: bool) -> dict[str, Any]:
    """A param -> its control: ``select`` (enums), ``number`` (with min/max; step 1 for
    integers), ``switch`` (booleans), ``text`` (with its lengths)."""
    kind = str(spec.get("type", "string"))
    control: dict[str, Any] = {"name": name, "type": kind, "required": required}
    if "description" in spec:
        control["description"] = spec["description"]
    if "defaultVal" in spec:
        control["default"] = spec["defaultVal"]
    if "enum" in spec:
        control["control"] = "select"
        control["enum"] = list(spec["enum"])
    elif kind == "boolean":
        control["control"] = "switch"
    elif kind in ("integer", "number"):
        control["control"] = "number"
        control["step"] = 1 if kind == "integer" else "any"
        for bound in ("minimum", "maximum"):
            if bound in spec:
                control[bound] = spec[bound]
    else:
        control["control"] = "text"
        for bound in ("minLength", "maxLength"):
            if bound in spec:
                control[bound] = spec[bound]
    return control


def input_field(name: str, type_name: str, spec: Mapping[str, Any], required: bool) -> dict[str, Any]:
    """An input: its data type (the page's control follows from it), attributes, and how a
    session sends it (``chunk_bytes`` every ``interval_ms``)."""
    attributes = defaults(spec, type_name)
    field: dict[str, Any] = {"name": name, "type": type_name, "required": required, "attributes": attributes}
    bytes_per_s = pcm_bytes_per_s(type_name, attributes)
    if bytes_per_s:
        field["pcm"] = {
            "sample_rate": int(attributes["sample_rate"]),
            "channels": int(attributes.get("channels", 1)),
            "bit_depth": int(attributes.get("bit_depth", 16)),
        }
        field["chunk_bytes"] = max(1, bytes_per_s * CHUNK_MS // 1000)
        field["interval_ms"] = CHUNK_MS
    else:
        field["chunk_bytes"], field["interval_ms"] = CHUNK_BYTES, INTERVAL_MS
    return field


def pcm_bytes_per_s(type_name: str, attributes: Mapping[str, Any]) -> int:
    """Bytes per second of a raw PCM audio input, from its declared attributes; 0 if it is not one."""
    if type_name != "audio" or str(attributes.get("encoding", "raw")).lower() not in PCM_ENCODINGS:
        return 0
    try:
        rate = int(attributes["sample_rate"])
        channels = int(attributes.get("channels", 1))
        bits = int(attributes.get("bit_depth", 16))
    except (KeyError, TypeError, ValueError):
        return 0
    if rate <= 0 or channels <= 0 or bits <= 0 or bits % 8:
        return 0
    return rate * channels * bits // 8


def output_field(name: str, type_name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    attributes = defaults(spec, type_name)
    return {"name": name, "type": type_name, "attributes": attributes}
