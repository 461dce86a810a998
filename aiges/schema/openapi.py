"""An OpenAPI 3 document of everything the HTTP front serves, from a wrapper's schema: the ASE
JSON API on the schema's route, and the Open Inference Protocol REST routes."""

from __future__ import annotations

from typing import Any


def _openapi_schema(schema: Any) -> Any:
    """``defaultVal`` back to ``default`` (as the original loader's OpenAPI export did)."""
    if isinstance(schema, dict):
        return {("default" if k == "defaultVal" else k): _openapi_schema(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_openapi_schema(v) for v in schema]
    return schema


OIP_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
]
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
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
OIP_INFER_RESPONSE = {
    "type": "object",
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": OIP_TENSOR},
    },
}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _oip_paths(model: str) -> dict[str, Any]:
    """The Open Inference Protocol REST routes, for the one model served."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": [model]}}
    not_found = _json("no such model", OIP_ERROR)
    status = {"type": "object", "properties": {"live": {"type": "boolean"}, "ready": {"type": "boolean"}}}
    return {
        "/v2/health/live": {
            "get": {
                "operationId": "serverLive",
                "tags": ["Open Inference Protocol"],
                "responses": {"200": _json("the server is up", status)},
            }
        },
        "/v2/health/ready": {
            "get": {
                "operationId": "serverReady",
                "tags": ["Open Inference Protocol"],
                "responses": {"200": _json("ready for calls", status), "503": _json("starting or draining", status)},
            }
        },
        "/v2": {
            "get": {
                "operationId": "serverMetadata",
                "tags": ["Open Inference Protocol"],
                "responses": {"200": _json("name, version, extensions", {"type": "object"})},
            }
        },
        "/v2/models/{name}": {
            "get": {
                "operationId": "modelMetadata",
                "tags": ["Open Inference Protocol"],
                "parameters": [name],
                "responses": {"200": _json("the model's inputs and outputs", {"type": "object"}), "404": not_found},
            }
        },
        "/v2/models/{name}/ready": {
            "get": {
                "operationId": "modelReady",
                "tags": ["Open Inference Protocol"],
                "parameters": [name],
                "responses": {"200": _json("ready", status), "404": not_found, "503": _json("not ready", status)},
            }
        },
        "/v2/models/{name}/infer": {
            "post": {
                "operationId": "modelInfer",
                "tags": ["Open Inference Protocol"],
                "parameters": [name],
                "requestBody": {"required": True, "content": {"application/json": {"schema": OIP_INFER_REQUEST}}},
                "responses": {
                    "200": _json("the outputs", OIP_INFER_RESPONSE),
                    "400": _json("invalid", OIP_ERROR),
                    "404": not_found,
                    "500": _json("the wrapper failed", OIP_ERROR),
                    "503": _json("no licence free, or draining", OIP_ERROR),
                },
            }
        },
    }


def build_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3 document of everything the HTTP front serves: the ASE JSON API on the
    schema's route, and the Open Inference Protocol REST routes."""
    meta = schema["meta"]
    error = {
        "type": "object",
        "properties": {
            "header": {
                "type": "object",
                "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "sid": {"type": "string"}},
            }
        },
    }
    ase = {
        "post": {
            "operationId": "callAIAbility",
            "tags": ["ASE JSON API"],
            "description": "One call. The same route opened as a WebSocket (GET with Upgrade) is a "
            "streaming session: each text frame one request of this shape, status 0 first, "
            "1 continuing, 2 last; each output batch pushed as a response of this shape.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _openapi_schema(schema["schemainput"])}},
            },
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
        "info": {
            "title": f"{meta['serviceId']} (aiges)",
            "version": meta["version"],
            "description": "The ASE JSON API (header, parameter and payload; binary data base64 "
            "encoded) and the Open Inference Protocol (KServe v2) REST API.",
        },
        "paths": {meta["route"]: ase, **_oip_paths(meta["serviceId"])},
    }
