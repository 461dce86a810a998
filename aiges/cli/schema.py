"""``aiges schema``: the wrapper's declared fields as JSON schema, or the service's OpenAPI."""

from __future__ import annotations

import argparse
import json
import sys

from aiges.cli.common import add_config_options, load, load_schema
from aiges.schema.openapi import build_openapi


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("schema", help="print the wrapper's schema ({meta, schemainput, schemaoutput})")
    add_config_options(parser)
    parser.add_argument("--openapi", action="store_true", help="an OpenAPI 3 document of the ASE JSON API instead")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    schema = load_schema(config)
    if schema is None:
        return 2
    json.dump(build_openapi(schema) if args.openapi else schema, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0
