"""``aiges new NAME [--stream]``: a new service folder that serves, checks and tests at once."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "new"

STREAM_TEST = """

def test_a_session_counts_each_chunk_and_ends_with_the_totals():
    from aiges.types import DataContinue, DataEnd

    wrapper = load_wrapper()
    handle = wrapper.wrapperCreate({}, "sid-1", 0, "tag-1").handle
    assert wrapper.wrapperWrite(handle, DataListCls([DataListNode("text", b"one two", status=DataContinue)])) == 0
    assert wrapper.wrapperWrite(handle, DataListCls([DataListNode("text", b"three", status=DataEnd)])) == 0
    first, last = wrapper.wrapperRead(handle).list
    assert first.data["total"] == 2 and last.data["total"] == 3 and last.status == DataEnd
    assert wrapper.wrapperDestroy(handle) == 0
"""

# template -> path in the new folder
FILES = {
    "aiges.toml.tmpl": "aiges.toml",
    "requirements.txt.tmpl": "requirements.txt",
    "Dockerfile.tmpl": "Dockerfile",
    "README.md.tmpl": "README.md",
    "sample.txt.tmpl": "test_data/sample.txt",
    "test_wrapper.py.tmpl": "tests/test_wrapper.py",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("new", help="create a new service folder: wrapper, config, tests, Dockerfile")
    parser.add_argument("name", help="the folder to create (also the service id)")
    parser.add_argument("--stream", action="store_true", help="a streaming (session) wrapper")
    parser.add_argument("--port", type=int, default=5090)


def run(args: argparse.Namespace) -> int:
    target = Path(args.name)
    if target.exists() and any(target.iterdir()):
        print(f"aiges new: {target} already exists and is not empty", file=sys.stderr)
        return 2
    service_id = re.sub(r"[^A-Za-z0-9_]", "_", target.name) or "service"
    values = {
        "name": target.name,
        "service_id": service_id,
        "port": str(args.port),
        "metrics_port": str(args.port + 1000),
        "stream_flag": " --stream" if args.stream else "",
        "call_example": (
            "--stream --chunk 16 --input text=@test_data/sample.txt"
            if args.stream
            else "--input text=@test_data/sample.txt"
        ),
        "stream_methods": (
            ", and its streaming counterpart in wrapperCreate / wrapperWrite / wrapperRead / wrapperDestroy"
            if args.stream
            else ""
        ),
        "stream_test": STREAM_TEST if args.stream else "",
    }
    files = dict(FILES)
    files["wrapper_stream.py.tmpl" if args.stream else "wrapper_once.py.tmpl"] = "wrapper.py"
    for template, relative in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = Template((TEMPLATES / template).read_text()).safe_substitute(values)
        path.write_text(text.rstrip() + "\n")
    print(f"created {target}/ ({'streaming' if args.stream else 'one-shot'} wrapper)")
    print(f"  cd {target} && aiges check && aiges serve -c aiges.toml")
    return 0
