"""A wrapper's declared fields -> its JSON schema, an OpenAPI document, and request validation.

The schema has the original SDK's shape (§4.c): ``{meta, schemainput, schemaoutput}``, where
``meta.route`` (default ``/<version>/private/<serviceId>``) is the ASE JSON API route,
``schemainput`` describes its request (header, parameter, payload) and ``schemaoutput`` its
response payload. Defaults are written as ``defaultVal``, as the AI platform expects.

``Validator`` checks a call's params and input items against the same declarations, in the
worker, before the wrapper runs: a bad param is 10107, a missing required input 10009, each
naming the field. Inputs the wrapper does not declare pass unchecked.
"""

from __future__ import annotations

import math
from typing import Any

from aiges.engine.types import TYPE_NAMES, DataItem
from aiges.errors import AigesError, ErrorCode
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
    else:
        schema = {"type": "string"}
        if getattr(field, "enums", None):
            schema["enum"] = list(field.enums)
        else:
            schema["minLength"], schema["maxLength"] = field.minLength, field.maxLength
        if getattr(field, "value", ""):
            schema["defaultVal"] = field.value
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
            "properties": {"encoding": {"type": "string"}, "data_type": {"type": "string",
                                                                        "enum": [TYPE_NAMES[field.data_type]]}},
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
    payload_object: dict[str, Any] = {"type": "object",
                                      "properties": {key: payload_schema(f) for key, f in inputs.items()}}
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
            "header": {"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                                                        "sid": {"type": "string"}, "status": {"type": "integer"}}},
            "payload": {"type": "object",
                        "properties": {key: payload_schema(f, output=True) for key, f in accepts.items()}},
        },
    }
    return {"meta": meta, "schemainput": schema_input, "schemaoutput": schema_output}


def _openapi_schema(schema: Any) -> Any:
    """``defaultVal`` back to ``default`` (as the original loader's OpenAPI export did)."""
    if isinstance(schema, dict):
        return {("default" if k == "defaultVal" else k): _openapi_schema(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_openapi_schema(v) for v in schema]
    return schema


OIP_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                 "FP16", "FP32", "FP64", "BF16", "BYTES"]
OIP_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
OIP_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": OIP_DATATYPES},
        "parameters": {"type": "object"},
        "data": {"description": "the elements, flat or nested (BYTES as strings)"},
    },
}
OIP_INFER_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "description": "the wrapper's params"},
        "inputs": {"type": "array", "items": OIP_TENSOR},
        "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": {"type": "object"}}}},
    },
}
OIP_INFER_RESPONSE = {
    "type": "object",
    "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
                   "outputs": {"type": "array", "items": OIP_TENSOR}},
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _oip_paths(model: str) -> dict[str, Any]:
    """The Open Inference Protocol REST routes, for the one model served."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": [model]}}
    not_found = _json("no such model", OIP_ERROR)
    status = {"type": "object", "properties": {"live": {"type": "boolean"}, "ready": {"type": "boolean"}}}
    return {
        "/v2/health/live": {"get": {"operationId": "serverLive", "tags": ["Open Inference Protocol"],
                                    "responses": {"200": _json("the server is up", status)}}},
        "/v2/health/ready": {"get": {"operationId": "serverReady", "tags": ["Open Inference Protocol"],
                                     "responses": {"200": _json("ready for calls", status),
                                                   "503": _json("starting or draining", status)}}},
        "/v2": {"get": {"operationId": "serverMetadata", "tags": ["Open Inference Protocol"],
                        "responses": {"200": _json("name, version, extensions", {"type": "object"})}}},
        "/v2/models/{name}": {"get": {
            "operationId": "modelMetadata", "tags": ["Open Inference Protocol"], "parameters": [name],
            "responses": {"200": _json("the model's inputs and outputs", {"type": "object"}), "404": not_found}}},
        "/v2/models/{name}/ready": {"get": {
            "operationId": "modelReady", "tags": ["Open Inference Protocol"], "parameters": [name],
            "responses": {"200": _json("ready", status), "404": not_found, "503": _json("not ready", status)}}},
        "/v2/models/{name}/infer": {"post": {
            "operationId": "modelInfer", "tags": ["Open Inference Protocol"], "parameters": [name],
            "requestBody": {"required": True, "content": {"application/json": {"schema": OIP_INFER_REQUEST}}},
            "responses": {"200": _json("the outputs", OIP_INFER_RESPONSE), "400": _json("invalid", OIP_ERROR),
                          "404": not_found, "500": _json("the wrapper failed", OIP_ERROR),
                          "503": _json("no licence free, or draining", OIP_ERROR)}}},
    }


def build_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3 document of everything the HTTP front serves: the ASE JSON API on the
    schema's route, and the Open Inference Protocol REST routes."""
    meta = schema["meta"]
    error = {
        "type": "object",
        "properties": {"header": {"type": "object", "properties": {
            "code": {"type": "integer"}, "message": {"type": "string"}, "sid": {"type": "string"}}}},
    }
    ase = {
        "post": {
            "operationId": "callAIAbility",
            "tags": ["ASE JSON API"],
            "description": "One call. The same route opened as a WebSocket (GET with Upgrade) is a "
                           "streaming session: each text frame one request of this shape, status 0 first, "
                           "1 continuing, 2 last; each output batch pushed as a response of this shape.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _openapi_schema(schema["schemainput"])}}},
            "responses": {
                "200": _json("the outputs", _openapi_schema(schema["schemaoutput"])),
                "400": _json("the request is invalid (10009, 10107, ...)", error),
                "500": _json("the wrapper failed (109xx)", error),
                "503": _json("no licence free, or draining (10110)", error),
                "504": _json("the call timed out (10102)", error),
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{meta['serviceId']} (aiges)", "version": meta["version"],
                 "description": "The ASE JSON API (header, parameter and payload; binary data base64 "
                                "encoded) and the Open Inference Protocol (KServe v2) REST API."},
        "paths": {meta["route"]: ase, **_oip_paths(meta["serviceId"])},
    }


class Validator:
    """Checks params and inputs against a wrapper's declared fields."""

    def __init__(self, mappings: dict[str, dict]) -> None:
        self.params: dict[str, ParamField] = dict(mappings.get("params", {}))
        self.inputs: dict[str, PayloadField] = dict(mappings.get("inputs", {}))

    @property
    def empty(self) -> bool:
        return not self.params and not self.inputs

    def check(self, params: dict[str, str], items: list[DataItem], inputs: bool = True) -> None:
        """Raise on the first violation. ``inputs`` False (a session's first frame, whose data
        may come later) checks the params only."""
        for key, field in self.params.items():
            value = params.get(key)
            if value is None:
                if field.required:
                    raise AigesError(ErrorCode.INVALID_PARAM_VALUE, f"parameter {key!r} is required")
                continue
            self._check_param(key, field, value)
        if not inputs:
            return
        present = {item.key for item in items}
        for key, field in self.inputs.items():
            if field.required and key not in present:
                raise AigesError(ErrorCode.INVALID_DATA, f"input {key!r} is missing")

    @staticmethod
    def _check_param(key: str, field: ParamField, value: str) -> None:
        def invalid(why: str) -> AigesError:
            return AigesError(ErrorCode.INVALID_PARAM_VALUE, f"parameter {key!r} {why}, got {value!r}")

        if isinstance(field, BooleanParamField):
            if value.lower() not in ("true", "false", "1", "0"):
                raise invalid("must be true or false")
            return
        if isinstance(field, NumberParamField):
            try:
                number = int(value) if isinstance(field, IntegerParamField) else float(value)
            except ValueError:
                kind = "an integer" if isinstance(field, IntegerParamField) else "a number"
                raise invalid(f"must be {kind}") from None
            if isinstance(number, float) and not math.isfinite(number):
                raise invalid("must be a finite number")
            if field.enums:
                if number not in field.enums:
                    raise invalid(f"must be one of {list(field.enums)}")
            elif not field.minimum <= number <= field.maximum:
                raise invalid(f"must be between {field.minimum} and {field.maximum}")
            return
        if isinstance(field, StringParamField):
            if field.enums and value not in field.enums:
                raise invalid(f"must be one of {list(field.enums)}")
            if not field.enums and not field.minLength <= len(value) <= field.maxLength:
                raise invalid(f"must be {field.minLength} to {field.maxLength} characters long")
