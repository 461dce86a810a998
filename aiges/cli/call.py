"""``aiges call``: one request, or one streamed session, from the command line.

    aiges call --addr 127.0.0.1:5090 --input image=@cat.png:image --param mode=fast
    aiges call -c aiges.toml --stream --chunk 3200 --interval 40 --input audio=@speech.pcm:audio
    aiges call -c aiges.toml --load 7 --input words=@hotwords.txt      # AILoad resource 7
    aiges call -c aiges.toml --res-ids 7 --input audio=@speech.pcm      # a call using it
    aiges call -c aiges.toml --unload 7                                 # AIUnLoad
    aiges call -c aiges.toml --licences 50 --wait-ms 5000               # AILBType
    aiges call -c aiges.toml --service digits --input image=@7.png      # one of several services

The outputs to ask for (the expect list) come from the server's schema unless given with
``--expect``. Text results are printed; binary ones are saved under ``-o`` (default: here). On
failure it prints the AIGes code and message and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import grpc

from aiges.cli.common import add_client_options, client_security, load
from aiges.client import AigesCallError, Client, Input
from aiges.client.credentials import SigningKey, TlsOptions, open_channel
from aiges.client.values import TYPE_CODES, Item
from aiges.config import DEFAULT_SERVICE, Config
from aiges.protocol.xsf_pb2 import Request
from aiges.protocol.xsf_pb2_grpc import ToolBoxStub

EXTENSION_TYPES = {
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".bmp": "image",
    ".gif": "image",
    ".webp": "image",
    ".wav": "audio",
    ".pcm": "audio",
    ".mp3": "audio",
    ".opus": "audio",
    ".speex": "audio",
    ".mp4": "video",
    ".h264": "video",
    ".avi": "video",
}
TYPE_EXTENSIONS = {1: ".audio", 2: ".image", 3: ".video", 4: ".bin"}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("call", help="send one request (or one streamed session) and show the results")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--addr", help="HOST:PORT of the service")
    target.add_argument("-c", "--config", help="aiges.toml of the service (its host and port)")
    parser.add_argument("-s", "--section", default=DEFAULT_SERVICE, help="the config's service section")
    parser.add_argument(
        "--service",
        default="",
        help="the service to call (LoaderInput.serviceId), on a server with several (default: the only one)",
    )
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="KEY=@FILE[:TYPE]",
        help="a payload from a file (or KEY=TEXT); TYPE: text, audio, image, video, other",
    )
    parser.add_argument("--param", action="append", default=[], metavar="K=V", help="a capability param")
    parser.add_argument("--header", action="append", default=[], metavar="K=V", help="a platform header")
    parser.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="NAME[:TYPE]",
        help="an output to ask for (default: the outputs the server's wrapper declares)",
    )
    parser.add_argument("--stream", action="store_true", help="send the inputs as a session, chunk by chunk")
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per chunk with --stream")
    parser.add_argument("--interval", type=float, default=0, help="milliseconds between chunks with --stream")
    parser.add_argument(
        "--transport",
        choices=["stream", "xsf"],
        default="stream",
        help="with --stream: aiges' bidi stream, or the AIIn/AIOut ops",
    )
    parser.add_argument("-o", "--output", default=".", help="folder for binary results")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per call")
    control = parser.add_argument_group("runtime control (instead of a call)")
    control.add_argument("--load", type=int, metavar="RES_ID", help="AILoad: the --input(s) as personalised resource")
    control.add_argument("--unload", type=int, metavar="RES_ID", help="AIUnLoad: unload a personalised resource")
    control.add_argument("--licences", type=int, metavar="N", help="AILBType: set the server's licence count")
    control.add_argument("--lb-type", help="with --licences: the load-balancer type (the registry value's type)")
    control.add_argument(
        "--wait-ms", type=int, default=0, help="with --licences: how long a smaller count may wait for calls to end"
    )
    parser.add_argument(
        "--res-ids", default="", metavar="ID[,ID...]", help="loaded personalised resources the call or session uses"
    )
    add_client_options(parser)


class UsageError(Exception):
    pass


def pairs(values: list[str], what: str) -> dict[str, str]:
    result = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} {value!r}: expected KEY=VALUE")
        result[key] = rest
    return result


def parse_input(spec: str) -> tuple[str, Input]:
    key, sep, value = spec.partition("=")
    if not sep or not key:
        raise UsageError(f"--input {spec!r}: expected KEY=@FILE[:TYPE] or KEY=TEXT")
    if not value.startswith("@"):
        return key, Input(value.encode("utf-8"), 0)
    path_text, type_name = value[1:], None
    head, colon, tail = path_text.rpartition(":")
    if colon and tail in TYPE_CODES:
        path_text, type_name = head, tail
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"--input {key}: no such file {path}")
    type_name = type_name or EXTENSION_TYPES.get(path.suffix.lower(), "text")
    return key, Input(path.read_bytes(), TYPE_CODES[type_name])


def parse_expect(specs: list[str]) -> dict[str, int]:
    expect: dict[str, int] = {}
    for spec in specs:
        name, _, type_name = spec.partition(":")
        if type_name and type_name not in TYPE_CODES:
            raise UsageError(f"--expect {spec!r}: type must be one of {', '.join(TYPE_CODES)}")
        expect[name] = TYPE_CODES[type_name or "text"]
    return expect


def declared_outputs(
    address: str,
    timeout: float,
    tls: TlsOptions | None = None,
    signing: SigningKey | None = None,
    service: str = "",
) -> dict[str, int]:
    """The accept list of the service's wrapper schema ({} when it declares none)."""
    query = json.dumps({"cmd": "schema", "service": service} if service else {"cmd": "schema"})
    with open_channel(address, tls=tls, signing=signing) as channel:
        reply = ToolBoxStub(channel).cmdserver(Request(query=query), timeout=timeout)
    schema = json.loads(reply.body or "null") or {}
    meta = schema.get("meta", {})
    accepts = meta.get(meta.get("serviceId", ""), {}).get("accept", {})
    return {name: TYPE_CODES.get(spec.get("dataType", "text"), 0) for name, spec in accepts.items()}


def address_of(args: argparse.Namespace) -> tuple[str, Config] | tuple[str, None] | None:
    """The address to call and, with ``-c``, the config it came from (None: it did not load)."""
    if args.addr:
        return args.addr, None
    config = load(argparse.Namespace(config=args.config, service=args.section, host=None, port=None, wrapper=None))
    if config is None:
        return None
    host = config.service.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"{host}:{config.service.port}", config


def show(item: Item, output: Path, counter: dict[str, int]) -> None:
    counter[item.name] = counter.get(item.name, 0) + 1
    if item.type == 0:
        try:
            print(f"{item.name}: {item.data.decode('utf-8')}")
            return
        except UnicodeDecodeError:
            pass
    output.mkdir(parents=True, exist_ok=True)
    encoding = item.attributes.get("encoding")
    suffix = f".{encoding}" if encoding else TYPE_EXTENSIONS.get(item.type, ".bin")
    name = item.name if counter[item.name] == 1 else f"{item.name}-{counter[item.name]}"
    path = output / f"{name}{suffix}"
    path.write_bytes(item.data)
    print(f"{item.name}: {len(item.data)} bytes saved to {path}")


def parse_res_ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--res-ids {text!r}: expected numbers like 7,12") from None


def run_control(
    args: argparse.Namespace,
    address: str,
    inputs: dict[str, Input],
    tls: TlsOptions | None,
    signing: SigningKey | None,
) -> int:
    """--load, --unload or --licences: one runtime control op."""
    with Client(address, timeout=args.timeout, tls=tls, signing=signing, service_id=args.service) as client:
        if args.load is not None:
            if not inputs:
                raise UsageError("--load needs the resource as --input KEY=@FILE")
            client.load_resource(args.load, inputs)
            print(f"resource {args.load} loaded")
        elif args.unload is not None:
            client.unload_resource(args.unload)
            print(f"resource {args.unload} unloaded")
        else:
            client.resize_licences(args.licences, timeout_ms=args.wait_ms, lb_type=args.lb_type)
            print(f"licences set to {args.licences}")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        inputs = dict(parse_input(spec) for spec in args.input)
        params, headers = pairs(args.param, "--param"), pairs(args.header, "--header")
        expect = parse_expect(args.expect)
        res_ids = parse_res_ids(args.res_ids)
        if sum(option is not None for option in (args.load, args.unload, args.licences)) > 1:
            raise UsageError("give one of --load, --unload, --licences")
        control = args.load is not None or args.unload is not None or args.licences is not None
        if not control and not inputs:
            raise UsageError("give at least one --input")
        target = address_of(args)
        if target is None:
            return 2
        address, config = target
        tls, signing = client_security(args, config)
        if control:
            return run_control(args, address, inputs, tls, signing)
        if not expect:
            expect = declared_outputs(address, args.timeout, tls, signing, args.service)
            if not expect:
                raise UsageError("the service declares no outputs: name them with --expect NAME[:TYPE]")
    except (UsageError, ValueError, OSError) as exc:
        print(f"aiges call: {exc}", file=sys.stderr)
        return 2
    except AigesCallError as exc:
        print(f"aiges call: error {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        target = args.addr or args.config
        print(f"aiges call: cannot reach {target}: {exc.code().name} {exc.details()}", file=sys.stderr)
        return 1
    output = Path(args.output)
    counter: dict[str, int] = {}
    try:
        with Client(address, timeout=args.timeout, tls=tls, signing=signing, service_id=args.service) as client:
            if not args.stream:
                result = client.once(inputs, params=params, headers=headers, expect=expect, res_ids=res_ids)
                for item in result.items:
                    show(item, output, counter)
                return 0
            with client.session(
                params=params, headers=headers, expect=expect, transport=args.transport, res_ids=res_ids
            ) as session:
                chunks = chunked(inputs, args.chunk)
                for index, chunk in enumerate(chunks):
                    session.write(chunk, last=index == len(chunks) - 1)
                    if args.interval:
                        time.sleep(args.interval / 1000)
                for batch in session.results():
                    for item in batch.items:
                        show(item, output, counter)
            return 0
    except AigesCallError as exc:
        print(f"aiges call: error {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except grpc.RpcError as exc:
        print(f"aiges call: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


def chunked(inputs: dict[str, Input], size: int) -> list[dict[str, Input]]:
    """Frame i holds chunk i of every input that still has one."""
    size = max(size, 1)
    count = max((len(i.data) + size - 1) // size for i in inputs.values()) or 1
    frames = []
    for index in range(count):
        frame = {}
        for key, value in inputs.items():
            piece = value.data[index * size : (index + 1) * size]
            if piece or index == 0:
                frame[key] = Input(piece, value.type, dict(value.attributes))
        frames.append(frame)
    return frames
