"""A new version's self-test before traffic is switched to it: ``aiges check``'s declared-sample
call (each declared param's and input's sample ``value``), made through the new version's own
engine, so that it runs in the workers that will serve.

The samples are read from the wrapper's declarations in a short child process
(``python -m aiges.server.self_test WRAPPER``) that imports the wrapper without initialising it,
so that the server process never imports a wrapper. A wrapper that declares no sample inputs
(function style, C) passes once its workers have run wrapperInit.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiges.engine.context import RequestContext
from aiges.engine.items import DataItem, payload_size
from aiges.engine.messages import Expect, Items, ItemsOutput
from aiges.errors import AigesError, ErrorCode

SAMPLE_TIMEOUT_S = 120.0
"""How long reading a wrapper's declarations may take (its imports: a framework, a model's code)."""


@dataclass(frozen=True)
class Sample:
    params: dict[str, str]
    inputs: list[tuple[str, bytes, int]]
    accepts: dict[str, int]


def describe(path: str) -> dict[str, Any]:
    """The declared samples of the wrapper at ``path`` (in this process: the child's job)."""
    from aiges.plugins.loader import load_plugin, resolve_wrapper_path

    file = resolve_wrapper_path(path)
    os.chdir(file.parent)
    plugin = load_plugin(file)
    fields = plugin.fields
    params = {k: str(f.test_value) for k, f in fields.params.items() if f.test_value not in (None, "")}
    inputs = [
        {"key": k, "data": base64.b64encode(bytes(f.test_value or b"")).decode(), "type": f.data_type}
        for k, f in fields.inputs.items()
    ]
    accepts = {k: f.data_type for k, f in fields.accepts.items()}
    return {"params": params, "inputs": inputs, "accepts": accepts}


async def read_sample(wrapper: Path, gpu: str = "") -> Sample:
    """The wrapper's declared samples, from a child process (raises AigesError 10901 if it
    cannot be imported)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpu)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aiges.server.self_test",
        str(wrapper),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), SAMPLE_TIMEOUT_S)
    except asyncio.TimeoutError:
        child.kill()
        await child.wait()
        raise AigesError(
            ErrorCode.WRAPPER_INIT, f"reading {wrapper}'s declarations took over {SAMPLE_TIMEOUT_S:g} s"
        ) from None
    if child.returncode != 0:
        reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no reason given"]
        raise AigesError(ErrorCode.WRAPPER_INIT, f"cannot read {wrapper}'s declarations: {reason[0]}")
    lines = out.decode(errors="replace").strip().splitlines()  # the last: what a wrapper printed goes before
    try:
        body = json.loads(lines[-1])
        inputs = [(i["key"], base64.b64decode(i["data"]), int(i["type"])) for i in body["inputs"]]
        return Sample(dict(body["params"]), inputs, {k: int(v) for k, v in body["accepts"].items()})
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AigesError(ErrorCode.WRAPPER_INIT, f"cannot read {wrapper}'s declarations: {exc!r}") from None


async def self_test(engine: Any, sample: Sample, service_id: str, tag: str) -> str:
    """The declared-sample call on ``engine`` (an ``Engine``); what it returned, in words.
    Raises AigesError when it fails or returns an output it does not declare."""
    if not sample.inputs:
        return "loaded and initialised (it declares no sample inputs to call with)"
    items = [DataItem(key, data, data_type, 3, {}) for key, data, data_type in sample.inputs]
    expect = {name: Expect(data_type, {}) for name, data_type in sample.accepts.items()}
    frame = Items(items, dict(sample.params), {"sid": tag}, expect, service_id)
    output = await engine.once(RequestContext(tag), frame)
    assert isinstance(output, ItemsOutput)
    unexpected = [item.key for item in output.items if sample.accepts and item.key not in sample.accepts]
    if unexpected:
        raise AigesError(ErrorCode.INVALID_OUTPUT, f"the sample call returned undeclared output(s) {unexpected}")
    return "the declared-sample call returned " + (
        ", ".join(f"{item.key} ({payload_size(item.data)} bytes)" for item in output.items) or "no outputs"
    )


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m aiges.server.self_test WRAPPER", file=sys.stderr)
        return 2
    try:
        described = describe(sys.argv[1])
    except Exception as exc:  # noqa: BLE001 - whatever importing the wrapper raised, as one line
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write("\n" + json.dumps(described) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
