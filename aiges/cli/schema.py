"""``aiges schema``: the wrapper's declared fields as JSON schema, or the service's OpenAPI."""

from __future__ import annotations

import argparse
import json
import sys

from aiges.cli.common import add_config_options, load, load_wrapper_class
from aiges.schema import build_openapi, build_schema


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("schema", help="print the wrapper's schema ({meta, schemainput, schemaoutput})")
    add_config_options(parser)
    parser.add_argument("--openapi", action="store_true", help="an OpenAPI 3 document of the ASE JSON API instead")


def run(args: argparse.Namespace) -> int:
    config = load(args)
    if config is None:
        return 2
    wrapper_class = load_wrapper_class(config)
    if wrapper_class is None:
        return 2
    schema = build_schema(wrapper_class)
    json.dump(build_openapi(schema) if args.openapi else schema, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0
