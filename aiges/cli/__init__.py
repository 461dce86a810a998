"""The ``aiges`` command. One module per subcommand; each adds its parser and a ``run``."""

from __future__ import annotations

import argparse
import sys

from aiges import __version__
from aiges.cli import call, check, health, new, reload, schema, serve, xtest

COMMANDS = {
    "serve": serve,
    "call": call,
    "xtest": xtest,
    "check": check,
    "schema": schema,
    "new": new,
    "health": health,
    "reload": reload,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiges", description="Serve AI wrappers over the AIGes protocol.")
    parser.add_argument("--version", action="version", version=f"aiges {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
