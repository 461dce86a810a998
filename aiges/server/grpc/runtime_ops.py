"""The xsf ops that control a running service: ``AILBType``, ``AILoad``, ``AIUnLoad``.

    AILBType  param authzNo (the new licence count, >= 1), timeout (ms a shrink may wait for the
              licences in use to end; default 0), lbType (goes into the registry value as "type")
    AILoad    param resId (1..2^32-1; else the first payload's ``patch_id`` attribute, where the
              original shim read it); data[0] a LoaderInput whose payloads are the resource
    AIUnLoad  param resId

Each answers an empty LoaderOutput (code 0), or the error: 10107 for a bad param, 10104 for a
shrink that did not fit in its timeout, 10120 for an unknown resource, 10121 for one over the
``[resources]`` bounds, 10122 for a wrapper with no wrapperLoadRes, 10903 / 10904 for a wrapper
that refused. Not on the hot path: the resource's LoaderInput is decoded here, in the server.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiges.engine.engine import Engine
from aiges.engine.items import DataItem, DataStatus
from aiges.engine.resources import parse_res_id
from aiges.errors import AigesError, ErrorCode
from aiges.protocol.loader_codec import decode_input, input_items
from aiges.protocol.xsf_request import XsfRequest

RUNTIME_OPS = frozenset({"AILBType", "AILoad", "AIUnLoad"})
MAX_LICENCES = (1 << 31) - 1


def whole_number(param: Mapping[str, str], name: str, minimum: int, default: int | None = None) -> int:
    text = param.get(name)
    if text is None and default is not None:
        return default
    value = (text or "").strip()
    if not value.lstrip("-").isdigit() or not minimum <= int(value) <= MAX_LICENCES:
        got = "nothing" if text is None else repr(text)
        raise AigesError(ErrorCode.INVALID_PARAM_VALUE, f"{name} must be a whole number >= {minimum}, got {got}")
    return int(value)


def resource_items(request: XsfRequest) -> list[DataItem]:
    if not request.data:
        return []
    return input_items(decode_input(request.data), DataStatus.ONCE)


def resource_id(param: Mapping[str, str], items: list[DataItem]) -> int:
    if "resId" in param:
        return parse_res_id(param["resId"])
    if items and "patch_id" in items[0].desc:
        return parse_res_id(items[0].desc["patch_id"], "patch_id")
    raise AigesError(ErrorCode.INVALID_PARAM_VALUE, "name the resource with the param resId")


async def run_op(engine: Engine, request: XsfRequest) -> None:
    """Run a runtime op; raises AigesError with its code."""
    param = request.param
    if request.op == "AILBType":
        total = whole_number(param, "authzNo", 1)
        timeout_ms = whole_number(param, "timeout", 0, default=0)
        await engine.resize_licences(total, timeout_ms / 1000, param.get("lbType"))
    elif request.op == "AILoad":
        items = resource_items(request)
        res_id = resource_id(param, items)
        if not items:
            raise AigesError(
                ErrorCode.INVALID_DATA, "AILoad carries the resource as data[0]: a LoaderInput with payloads"
            )
        await engine.load_resource(res_id, items)
    elif request.op == "AIUnLoad":
        await engine.unload_resource(resource_id(param, []))
    else:
        raise AigesError(ErrorCode.INVALID_OP, f"invalid service operation {request.op!r}")
