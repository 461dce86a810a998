"""The ``aiges`` command. One module per subcommand; each adds its parser and a ``run``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Protocol

# Before grpc is first imported (the subcommands import it): the C core reads this once, when it
# loads. ``aiges serve`` starts workers by fork+exec while gRPC threads are busy serving (a
# restart or a reload under load); grpc's fork handlers then run in the forked child and can
# crash it (SIGSEGV) before it execs. Nothing here needs them.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from aiges import __version__  # noqa: E402
from aiges.cli import (  # noqa: E402
    call,
    check,
    config,
    gateway,
    health,
    new,
    reload,
    schema,
    serve,
    service,
    status,
    xtest,
)


class Command(Protocol):
    """What each subcommand's module provides."""

    def add_parser(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


COMMANDS: dict[str, Command] = {
    "serve": serve,
    "call": call,
    "xtest": xtest,
    "check": check,
    "schema": schema,
    "new": new,
    "health": health,
    "reload": reload,
    "status": status,
    "config": config,
    "gateway": gateway,
    "service": service,
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
