"""The ASE JSON API: ``{header, parameter, payload}`` <-> engine items (``messages.Items`` in,
``ItemsOutput`` out).

Request (as the original loader's HTTP mode read it):

- ``header``: flat platform fields (app_id, uid, ...), passed on as headers; ``sid`` is replaced by
  the server's handle.
- ``parameter.<serviceId>``: scalars are the wrapper's params; objects describe outputs
  (``{"data_type": "text", "encoding": ...}``) for the expect list, which also holds every output
  the wrapper declares (as the OIP front's does), so a declared output is never a 10106.
- ``payload.<name>``: one input; its ``text|audio|image|video|other`` key holds the data, base64
  encoded (a JSON object or array there is sent as its JSON text), ``status`` its stream status,
  and the other keys become the item's attributes. Inputs the wrapper does not declare are passed
  on too, as the xsf front and the original's HTTP front do.

Response: ``{"header": {code, message, sid, status}, "payload": {<name>: {<type>: data, status,
seq, <attributes>}}}``, where text outputs are the text itself and other types base64. An error is
``{"header": {code, message, sid}, "payload": null}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from aiges.engine.items import TYPE_CODES, TYPE_NAMES, DataItem, DataType
from aiges.engine.messages import Expect, Items, ItemsOutput
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.json_body import parse_json
from aiges.schema import declared_outputs

EXPECT_ATTRIBUTES = ("encoding", "format", "compress")


def invalid(message: str) -> AigesError:
    return AigesError(ErrorCode.INVALID_DATA, message)


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def parse_body(body: bytes) -> dict[str, Any]:
    request = parse_json(body)
    if not isinstance(request, dict):
        raise invalid("the body must be a JSON object with header, parameter and payload")
    for part in ("header", "parameter", "payload"):
        if request.get(part) is not None and not isinstance(request[part], dict):
            raise invalid(f"{part} must be a JSON object")
    return request


def frame_status(request: Mapping[str, Any]) -> int | None:
    """The stream status a frame carries: ``header.status``, else its payloads' (2 if any ends)."""
    header = request.get("header") or {}
    if "status" in header:
        return _status("header.status", header["status"])
    statuses = [
        _status(f"payload.{name}.status", item["status"])
        for name, item in (request.get("payload") or {}).items()
        if isinstance(item, dict) and "status" in item
    ]
    if not statuses:
        return None
    return 2 if 2 in statuses else max(statuses)


def _status(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3:
        raise invalid(f"{where} must be 0, 1, 2 or 3; got {value!r}")
    return value


def items_frame(
    request: Mapping[str, Any],
    service_id: str,
    schema: Mapping[str, Any] | None,
    tag: str,
    *,
    default_status: int = 3,
    first: bool = True,
) -> Items:
    """The engine items an ASE JSON request makes; ``first``: it carries headers, params and the
    expect list (a call, or a session's first frame)."""
    items = []
    for name, item in (request.get("payload") or {}).items():
        if not isinstance(item, dict):
            raise invalid(f"payload.{name} must be a JSON object")
        items.append(payload_item(name, item, default_status))
    if not first:
        return Items(items, {}, {}, {}, service_id)
    headers = {str(key): scalar_text(value) for key, value in (request.get("header") or {}).items()}
    headers["sid"] = tag
    params: dict[str, str] = {}
    expect: dict[str, Expect] = {}
    for section in (request.get("parameter") or {}).values():
        if not isinstance(section, dict):
            raise invalid("parameter.<service> must be a JSON object")
        for key, value in section.items():
            if isinstance(value, dict):
                expect[key] = expect_entry(value)
            else:
                params[key] = scalar_text(value)
    for name, type_name in declared_outputs(schema).items():  # the declared outputs are always wanted
        expect.setdefault(name, Expect(TYPE_CODES.get(type_name, DataType.TEXT), {}))
    return Items(items, params, headers, expect, service_id)


def expect_entry(spec: Mapping[str, Any]) -> Expect:
    data_type = TYPE_CODES.get(str(spec.get("data_type", "text")), DataType.OTHER)
    return Expect(data_type, {key: scalar_text(spec[key]) for key in EXPECT_ATTRIBUTES if key in spec})


def payload_item(name: str, item: Mapping[str, Any], default_status: int) -> DataItem:
    keys = [key for key in item if key in TYPE_CODES]
    if len(keys) != 1:
        raise invalid(
            f"payload.{name} needs exactly one of text, audio, image, video or other; got {', '.join(keys) or 'none'}"
        )
    type_key = keys[0]
    value = item[type_key]
    if isinstance(value, str):
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise invalid(f"payload.{name}.{type_key} is not base64") from None
    elif isinstance(value, (dict, list)):
        data = json.dumps(value, ensure_ascii=False).encode()
    else:
        raise invalid(f"payload.{name}.{type_key} must be a base64 string, an object or an array")
    status = _status(f"payload.{name}.status", item["status"]) if "status" in item else default_status
    attributes = {key: scalar_text(value) for key, value in item.items() if key != type_key}
    attributes["status"] = str(status)
    return DataItem(name, data, TYPE_CODES[type_key], status, attributes)


def response(output: ItemsOutput, tag: str) -> dict[str, Any]:
    payload = {}
    for item in output.items:
        type_name = TYPE_NAMES.get(item.type, "other")
        entry: dict[str, Any] = {}
        for key, value in item.desc.items():
            entry[key] = int(value) if key in ("status", "seq") and value.lstrip("-").isdigit() else value
        if type_name == "text":
            try:
                entry["text"] = bytes(item.data).decode("utf-8")
            except UnicodeDecodeError:
                entry["text"] = base64.b64encode(item.data).decode()
                entry["base64"] = True
        else:
            entry[type_name] = base64.b64encode(item.data).decode()
        payload[item.key] = entry
    return {"header": {"code": 0, "message": "success", "sid": tag, "status": int(output.status)}, "payload": payload}


def error_response(error: AigesError, tag: str) -> dict[str, Any]:
    return {"header": {"code": error.code, "message": error.message, "sid": tag}, "payload": None}
