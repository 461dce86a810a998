"""A wrapper's declared fields -> its JSON schema, an OpenAPI document, and request validation.

The schema has the original SDK's shape (§4.c): ``{meta, schemainput, schemaoutput}``, where
``meta.route`` (default ``/<version>/private/<serviceId>``) is the ASE JSON API route,
``schemainput`` describes its request (header, parameter, payload) and ``schemaoutput`` its
response payload. Defaults are written as ``defaultVal``, as the AI platform expects.

``Validator`` checks a call's params and input items against the same declarations, in the
worker, before the wrapper runs: a bad param is 10107, a missing input 10009, each naming the
field.
"""

from __future__ import annotations

import math
from typing import Any

from aiges.engine.types import DataItem
from aiges.errors import AigesError, ErrorCode
from aiges.sdk import (
    BooleanParamField,
    IntegerParamField,
    NumberParamField,
    ParamField,
    PayloadField,
    StringParamField,
)

TYPE_NAMES = {0: "text", 1: "audio", 2: "image", 3: "video", 4: "other"}
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


def payload_schema(field: PayloadField) -> dict[str, Any]:
    type_name = TYPE_NAMES.get(field.data_type, "text")
    properties: dict[str, Any] = {
        type_name: {"type": "string", "description": "data, base64 encoded (text: plain)"},
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
    schema_input = {
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
            "payload": {
                "type": "object",
                "properties": {key: payload_schema(f) for key, f in inputs.items()},
                "required": [key for key, f in inputs.items() if f.required],
            },
        },
        "required": ["payload"] if inputs else [],
    }
    schema_output = {
        "type": "object",
        "properties": {
            "header": {"type": "object", "properties": {"code": {"type": "integer"}, "message": {"type": "string"},
                                                        "sid": {"type": "string"}, "status": {"type": "integer"}}},
            "payload": {"type": "object", "properties": {key: payload_schema(f) for key, f in accepts.items()}},
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


def build_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3 document of the service's ASE JSON API (one POST route)."""
    meta = schema["meta"]
    error = {
        "type": "object",
        "properties": {"header": {"type": "object", "properties": {
            "code": {"type": "integer"}, "message": {"type": "string"}, "sid": {"type": "string"}}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": f"{meta['serviceId']} (aiges)", "version": meta["version"],
                 "description": "ASE JSON API: header, parameter and payload; binary data base64 encoded."},
        "paths": {
            meta["route"]: {
                "post": {
                    "operationId": "callAIAbility",
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": _openapi_schema(schema["schemainput"])}}},
                    "responses": {
                        "200": {"description": "the outputs", "content": {"application/json": {
                            "schema": _openapi_schema(schema["schemaoutput"])}}},
                        "400": {"description": "the request is invalid", "content": {"application/json": {
                            "schema": error}}},
                        "500": {"description": "the wrapper failed", "content": {"application/json": {
                            "schema": error}}},
                    },
                }
            }
        },
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
