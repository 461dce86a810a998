"""A wrapper's declared fields -> its JSON schema (this module), an OpenAPI document
(``openapi``), and the checks a call gets before the wrapper runs (``validation``).

The schema has the original SDK's shape (§4.c): ``{meta, schemainput, schemaoutput}``, where
``meta.route`` (default ``/<version>/private/<serviceId>``) is the ASE JSON API route,
``schemainput`` describes its request (header, parameter, payload) and ``schemaoutput`` its
response payload. Defaults are written as ``defaultVal``, as the AI platform expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiges.engine.items import TYPE_NAMES
from aiges.sdk import (
    BooleanParamField,
    IntegerParamField,
    NumberParamField,
    ParamField,
    PayloadField,
    StringParamField,
)

HEADER_SCHEMA = {
    "type": "object",
    "properties": {
        "app_id": {"type": "string", "maxLength": 50},
        "uid": {"type": "string", "maxLength": 50},
        "did": {"type": "string", "maxLength": 50},
        "status": {"type": "integer", "enum": [0, 1, 2, 3]},
    },
}


def route_of(service_id: str, version: str, route: str | None) -> str:
    return (route or "/{version}/private/{serviceId}").format(version=version or "v1", serviceId=service_id)


def param_schema(field: ParamField) -> dict[str, Any]:
    if isinstance(field, BooleanParamField):
        schema: dict[str, Any] = {"type": "boolean", "defaultVal": field.default}
    elif isinstance(field, NumberParamField):
        schema = {"type": "integer" if isinstance(field, IntegerParamField) else "number"}
        if field.enums:
            schema["enum"] = list(field.enums)
        else:
            schema["minimum"], schema["maximum"] = field.minimum, field.maximum
        schema["defaultVal"] = field.value
    elif isinstance(field, StringParamField):
        schema = {"type": "string"}
        if field.enums:
            schema["enum"] = list(field.enums)
        else:
            schema["minLength"], schema["maxLength"] = field.minLength, field.maxLength
        if field.value:
            schema["defaultVal"] = field.value
    else:
        schema = {"type": "string"}
    if field.description:
        schema["description"] = field.description
    return schema


def payload_schema(field: PayloadField, output: bool = False) -> dict[str, Any]:
    type_name = TYPE_NAMES.get(field.data_type, "text")
    if not output:
        data = {"type": "string", "format": "byte", "description": "the data, base64 encoded"}
    elif type_name == "text":
        data = {"type": "string", "description": "the text (base64 when it is not UTF-8, with base64 = true)"}
    else:
        data = {"type": "string", "format": "byte", "description": "the data, base64 encoded"}
    properties: dict[str, Any] = {
        type_name: data,
        "status": {"type": "integer", "enum": [0, 1, 2, 3]},
        "encoding": {"type": "string"},
    }
    if field.encoding:
        properties["encoding"]["defaultVal"] = field.encoding
    for name, value in field.attrs.items():
        properties[name] = {"type": "integer" if isinstance(value, int) else "string", "defaultVal": value}
    return {"type": "object", "properties": properties, "required": [type_name]}


def build_schema(wrapper_class: type) -> dict[str, Any]:
    """``{meta, schemainput, schemaoutput}`` for a class-style wrapper."""
    mappings = getattr(wrapper_class, "__mappings__", {"params": {}, "inputs": {}, "accepts": {}})
    service_id = str(getattr(wrapper_class, "serviceId", "") or "wrapper")
    version = str(getattr(wrapper_class, "version", "") or "v1")
    params, inputs, accepts = mappings["params"], mappings["inputs"], mappings["accepts"]
    parameter = {key: param_schema(field) for key, field in params.items()}
    for key, field in accepts.items():
        parameter[key] = {
            "type": "object",
            "description": "the output you expect; 'expect' in LoaderInput",
            "properties": {
                "encoding": {"type": "string"},
                "data_type": {"type": "string", "enum": [TYPE_NAMES[field.data_type]]},
            },
        }
    meta = {
        "serviceId": service_id,
        "version": version,
        "route": route_of(service_id, version, getattr(wrapper_class, "route", None)),
        "sub": getattr(wrapper_class, "sub", "ase"),
        "call": getattr(wrapper_class, "call", "atmos"),
        "call_type": int(getattr(wrapper_class, "call_type", "0") or 0),
        "service": [service_id],
        service_id: {
            "input": {key: {"dataType": TYPE_NAMES[f.data_type]} for key, f in inputs.items()},
            "accept": {key: {"dataType": TYPE_NAMES[f.data_type]} for key, f in accepts.items()},
        },
    }
    # Inputs are optional unless a wrapper marks one required=True (aiges' extension; the
    # original's schema listed none), so "required" appears only then.
    required_inputs = [key for key, f in inputs.items() if f.required]
    payload_object: dict[str, Any] = {
        "type": "object",
        "properties": {key: payload_schema(f) for key, f in inputs.items()},
    }
    schema_input: dict[str, Any] = {
        "type": "object",
        "properties": {
            "header": HEADER_SCHEMA,
            "parameter": {
                "type": "object",
                "properties": {
                    service_id: {
                        "type": "object",
                        "properties": parameter,
                        "required": [key for key, f in params.items() if f.required],
                    }
                },
            },
            "payload": payload_object,
        },
    }
    if required_inputs:
        payload_object["required"] = required_inputs
        schema_input["required"] = ["payload"]
    schema_output = {
        "type": "object",
        "properties": {
            "header": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "sid": {"type": "string"},
                    "status": {"type": "integer"},
                },
            },
            "payload": {
                "type": "object",
                "properties": {key: payload_schema(f, output=True) for key, f in accepts.items()},
            },
        },
    }
    return {"meta": meta, "schemainput": schema_input, "schemaoutput": schema_output}


def declared(schema: Mapping[str, Any] | None, kind: str) -> dict[str, str]:
    """A schema's declared ``input`` or ``accept`` (output) names -> data type names ('text', ...)."""
    if not schema:
        return {}
    meta = schema["meta"]
    return {name: spec.get("dataType", "text") for name, spec in meta.get(meta["serviceId"], {}).get(kind, {}).items()}


def declared_inputs(schema: Mapping[str, Any] | None) -> dict[str, str]:
    return declared(schema, "input")


def declared_outputs(schema: Mapping[str, Any] | None) -> dict[str, str]:
    return declared(schema, "accept")
