"""The call the web console just made, as commands to copy: ``curl`` (ASE JSON API), ``grpcurl``
(xsf one-shot, or aiges' native stream for a session), ``aiges call`` and the Python client.

The page posts what it sends (the ASE JSON request, and for a session the input it streams and
how) and the names of the files its inputs came from; a file's data is then read from that file
in the command (``$(base64 < FILE)``, ``@FILE``, ``Path(FILE)``), so the commands run as they
are next to the user's own file. Inputs typed in the page (text) are written into the commands.

grpcurl needs no proto files: the server has reflection for ``utils.XsfCall`` and
``aiges.v1.Session``. A one-shot xsf call carries a serialized ``protocol.LoaderInput``, so that
command holds it as base64 (``grpcurl describe protocol.LoaderInput`` shows what it is); the
session's messages are LoaderInput in JSON, readable as they are.
"""

from __future__ import annotations

import base64
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiges.client.values import Input, loader_input
from aiges.engine.items import TYPE_CODES, TYPE_NAMES, DataItem
from aiges.errors import AigesError, ErrorCode
from aiges.protocol import ase_json
from aiges.protocol.v2_pb2 import LoaderInput

INLINE_LIMIT = 64 << 10
"""A grpcurl one-shot request longer than this (its serialized LoaderInput, in base64) is not
written out: it would not be pasted anywhere. The other commands read files, and never grow."""
XSF_SERVICE = "utils.XsfCall/call"
STREAM_SERVICE = "aiges.v1.Session/Stream"
ONCE, LAST = 3, 2


def invalid(message: str) -> AigesError:
    return AigesError(ErrorCode.INVALID_DATA, message)


@dataclass
class Call:
    """One call as the console made it."""

    service_id: str
    route: str
    http_base: str
    grpc_address: str
    request: dict[str, Any]
    headers: dict[str, str]
    params: dict[str, str]
    inputs: list[DataItem]
    expect: dict[str, str]
    """The outputs asked for, by type name: the declared ones and those the request names."""
    asked: list[str] = field(default_factory=list)
    """Those of ``expect`` the wrapper does not declare (the request's ``parameter`` objects)."""
    files: dict[str, str] = field(default_factory=dict)
    stream: str | None = None
    """The input a session streams in chunks (None: a one-shot call)."""
    chunk_bytes: int = 4096
    interval_ms: int = 0
    service: str = ""
    """The service to name in the commands (a server with several); empty: the only one."""


def parse_call(
    body: Mapping[str, Any],
    *,
    service_id: str,
    route: str,
    http_base: str,
    grpc_address: str,
    expect: Mapping[str, str],
    service: str = "",
) -> Call:
    """The console's description of a call -> a Call; AigesError(10009) when it is malformed.
    ``expect``: the declared outputs (name -> type name)."""
    request = body.get("request")
    if not isinstance(request, dict):
        raise invalid("request must be the ASE JSON request, an object")
    frame = ase_json.items_frame(request, service_id, None, "console")
    files = body.get("files") or {}
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise invalid("files must map input names to file names")
    stream = body.get("stream")
    if stream is not None and not any(item.key == stream for item in frame.items):
        raise invalid(f"stream names no input of the request: {stream!r}")
    try:
        chunk_bytes = int(body.get("chunk_bytes", 4096))
        interval_ms = int(body.get("interval_ms", 0))
    except (TypeError, ValueError):
        raise invalid("chunk_bytes and interval_ms must be integers") from None
    if chunk_bytes <= 0 or interval_ms < 0:
        raise invalid("chunk_bytes must be positive and interval_ms not negative")
    headers = {key: value for key, value in frame.headers.items() if key != "sid"}
    wanted = dict(expect)
    asked = [name for name in frame.expect if name not in wanted]
    for name in asked:
        wanted[name] = TYPE_NAMES.get(frame.expect[name].data_type, "other")
    return Call(
        service_id=service_id,
        route=route,
        http_base=http_base,
        grpc_address=grpc_address,
        request=request,
        headers=headers,
        params=dict(frame.params),
        inputs=list(frame.items),
        expect=wanted,
        asked=asked,
        files={str(k): v for k, v in files.items() if v},
        stream=stream if isinstance(stream, str) else None,
        service=service,
        chunk_bytes=chunk_bytes,
        interval_ms=interval_ms,
    )


def snippets(call: Call) -> dict[str, str]:
    return {"curl": curl(call), "grpcurl": grpcurl(call), "aiges": aiges_call(call), "python": python(call)}


# -- curl -------------------------------------------------------------------------------------------


def curl(call: Call) -> str:
    """The ASE JSON API, one-shot (a session is a WebSocket on the route: no curl for that)."""
    request = json.loads(json.dumps(call.request))
    placeholders: dict[str, str] = {}
    for name, item in (request.get("payload") or {}).items():
        if name in call.files and isinstance(item, dict):
            type_key = next((key for key in item if key in TYPE_CODES), None)
            if type_key is not None:
                marker = f"@@file:{name}@@"
                item[type_key] = marker
                placeholders[marker] = f"$(base64 < {shlex.quote(call.files[name])} | tr -d '\\n')"
            item["status"] = ONCE
        elif isinstance(item, dict):
            item["status"] = ONCE
    if isinstance(request.get("header"), dict):
        request["header"].pop("status", None)
    text = json.dumps(request, indent=2, ensure_ascii=False)
    command = f"curl -s {shlex.quote(call.http_base + call.route)} -H 'content-type: application/json' -d @-"
    lines = []
    if call.stream is not None:
        lines.append("# One-shot; a session is a WebSocket on the same route (one ASE JSON request per text frame).")
    if placeholders:
        text = text.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")
        for marker, substitution in placeholders.items():
            text = text.replace(marker, substitution)
        lines += [f"{command} <<EOF", text, "EOF"]
    else:
        lines += [f"{command} <<'EOF'", text, "EOF"]
    return "\n".join(lines)


# -- grpcurl ----------------------------------------------------------------------------------------


def _inputs_of(items: list[DataItem]) -> dict[str, Input]:
    return {item.key: Input(bytes(item.data), item.type, attributes(item)) for item in items}


def attributes(item: DataItem) -> dict[str, str]:
    return {key: value for key, value in item.desc.items() if key not in ("status", "seq")}


def grpcurl(call: Call) -> str:
    if call.stream is not None:
        return grpcurl_stream(call)
    message = loader_input(
        state=LoaderInput.ONCE,
        inputs=_inputs_of(call.inputs),
        params=call.params,
        headers=call.headers,
        expect=call.expect,
        service_id=call.service_id,
        status=ONCE,
    )
    blob = base64.b64encode(message.SerializeToString()).decode()
    if len(blob) > INLINE_LIMIT:
        return (
            f"# This request is {len(blob) >> 10} KiB as a serialized LoaderInput, too long to paste here:\n"
            "# `aiges call` or the Python client send the file itself."
        )
    request = {"op": "AIIn", "param": {"SeqNo": "1"}, "data": [{"data": blob}]}
    return "\n".join(
        [
            "# data: a serialized protocol.LoaderInput (see `grpcurl -plaintext "
            f"{call.grpc_address} describe protocol.LoaderInput`); the reply's data is a LoaderOutput.",
            f"grpcurl -plaintext -d @ {call.grpc_address} {XSF_SERVICE} <<'EOF'",
            json.dumps(request),
            "EOF",
        ]
    )


def _meta(item: DataItem, status: str) -> dict[str, Any]:
    return {
        "name": item.key,
        "dataType": TYPE_NAMES.get(item.type, "other").upper(),
        "attribute": {**attributes(item), "status": status},
    }


def grpcurl_stream(call: Call) -> str:
    """A session over ``aiges.v1.Session/Stream``: an opening message (params, expect and the
    inputs that are not streamed), then one message per chunk, the last with status 2."""
    streamed = next(item for item in call.inputs if item.key == call.stream)
    others = [item for item in call.inputs if item.key != call.stream]
    opening: dict[str, Any] = {"serviceId": call.service_id, "params": call.params}
    if call.headers:
        opening["headers"] = call.headers
    if call.expect:
        opening["expect"] = [{"name": name, "dataType": kind.upper()} for name, kind in call.expect.items()]
    if others:
        opening["pl"] = [
            {"meta": _meta(item, str(ONCE)), "data": base64.b64encode(bytes(item.data)).decode()} for item in others
        ]
    pace = f"{call.interval_ms / 1000:g}"
    target = f"grpcurl -plaintext -d @ {call.grpc_address} {STREAM_SERVICE}"
    if call.stream not in call.files:
        data = bytes(streamed.data)
        chunks = [data[i : i + call.chunk_bytes] for i in range(0, len(data), call.chunk_bytes)] or [b""]
        messages = [json.dumps(opening)]
        for index, chunk in enumerate(chunks):
            status = str(LAST if index == len(chunks) - 1 else 1)
            payload = {"meta": _meta(streamed, status), "data": base64.b64encode(chunk).decode()}
            messages.append(json.dumps({"pl": [payload]}))
        return "\n".join([f"{target} <<'EOF'", *messages, "EOF"])
    meta = json.dumps(_meta(streamed, "@@status@@")).replace("%", "%%").replace('"@@status@@"', '"%s"')
    chunk_message = '{"pl": [{"meta": ' + meta + ', "data": "%s"}]}\\n'
    source = shlex.quote(call.files[call.stream])
    lines = [
        f"# {source} in chunks of {call.chunk_bytes} bytes, one every {call.interval_ms} ms; the last one has status 2",
        f'chunks=$(mktemp -d) && split -b {call.chunk_bytes} -a 6 {source} "$chunks/"',
        'last=$(ls "$chunks" | tail -n 1)',
        "{",
        f"  echo {shlex.quote(json.dumps(opening))}",
        '  for chunk in $(ls "$chunks"); do',
        '    status=1; [ "$chunk" = "$last" ] && status=2',
        f'    printf {shlex.quote(chunk_message)} "$status" "$(base64 < "$chunks/$chunk" | tr -d \'\\n\')"',
    ]
    if call.interval_ms:
        lines.append(f"    sleep {pace}")
    lines += ["  done", f'}} | {target}; rm -r "$chunks"']
    return "\n".join(lines)


# -- aiges call -------------------------------------------------------------------------------------


def aiges_call(call: Call) -> str:
    parts = ["aiges call", f"--addr {call.grpc_address}"]
    if call.service:
        parts.append(f"--service {shlex.quote(call.service)}")
    for item in call.inputs:
        type_name = TYPE_NAMES.get(item.type, "other")
        if item.key in call.files:
            parts.append(f"--input {shlex.quote(f'{item.key}=@{call.files[item.key]}:{type_name}')}")
        else:
            try:
                text = bytes(item.data).decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is None or type_name != "text" or text.startswith("@"):
                parts.append(f"--input {shlex.quote(f'{item.key}=@{item.key}.bin:{type_name}')}")
            else:
                parts.append(f"--input {shlex.quote(f'{item.key}={text}')}")
    for key, value in call.params.items():
        parts.append(f"--param {shlex.quote(f'{key}={value}')}")
    for key, value in call.headers.items():
        parts.append(f"--header {shlex.quote(f'{key}={value}')}")
    if call.asked:  # --expect replaces the declared outputs: all of them, then
        parts += [f"--expect {shlex.quote(f'{name}:{kind}')}" for name, kind in call.expect.items()]
    if call.stream is not None:
        parts += ["--stream", f"--chunk {call.chunk_bytes}"]
        if call.interval_ms:
            parts.append(f"--interval {call.interval_ms}")
    return " \\\n  ".join(parts)


# -- Python -----------------------------------------------------------------------------------------


def _python_data(call: Call, item: DataItem) -> str:
    return f"Path({call.files[item.key]!r}).read_bytes()" if item.key in call.files else repr(bytes(item.data))


def _python_input(item: DataItem, data: str) -> str:
    extra = attributes(item)
    return f"Input({data}, type={item.type}" + (f", attributes={extra!r})" if extra else ")")


def _service_option(call: Call) -> str:
    return f", service_id={call.service!r}" if call.service else ""


def python(call: Call) -> str:
    needs_path = any(item.key in call.files for item in call.inputs)
    lines = []
    if call.stream is not None:
        lines.append("import time")
    if needs_path:
        lines.append("from pathlib import Path")
    if lines:
        lines.append("")
    lines += ["from aiges.client import Client, Input", ""]
    options = []
    if call.params:
        options.append(f"params={call.params!r}")
    if call.headers:
        options.append(f"headers={call.headers!r}")
    if call.asked:
        options.append(f"expect={call.expect!r}")
    elif call.expect:
        options.append(f"expect={list(call.expect)!r}")
    if call.stream is None:
        inputs = ", ".join(f"{item.key!r}: {_python_input(item, _python_data(call, item))}" for item in call.inputs)
        lines += [
            f"with Client({call.grpc_address!r}{_service_option(call)}) as client:",
            f"    result = client.once({{{inputs}}}" + "".join(f", {option}" for option in options) + ")",
            "    for item in result.items:",
            "        print(item.name, item.data[:200])",
        ]
        return "\n".join(lines)
    streamed = next(item for item in call.inputs if item.key == call.stream)
    others = ", ".join(
        f"{item.key!r}: {_python_input(item, _python_data(call, item))}"
        for item in call.inputs
        if item.key != call.stream
    )
    lines += [
        f"data = {_python_data(call, streamed)}",
        f"chunks = [data[i : i + {call.chunk_bytes}] for i in range(0, len(data), {call.chunk_bytes})]",
        f"with Client({call.grpc_address!r}{_service_option(call)}) as client, client.session("
        + (f"{{{others}}}, " if others else "")
        + ", ".join([*options, 'transport="stream"'])
        + ") as session:",
        "    for index, chunk in enumerate(chunks):",
        f"        piece = {{{call.stream!r}: {_python_input(streamed, 'chunk')}}}",
        "        session.write(piece, last=index == len(chunks) - 1)",
    ]
    if call.interval_ms:
        lines.append(f"        time.sleep({call.interval_ms / 1000:g})")
    lines += [
        "    for batch in session.results():",
        "        for item in batch.items:",
        "            print(item.name, item.data[:200])",
    ]
    return "\n".join(lines)
