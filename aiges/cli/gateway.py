"""``aiges gateway --etcd HOST:2379``: HAProxy in front of every registered host
(``aiges.platform.gateway``)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from aiges.platform.gateway.command import add_parser as add

    add(sub)


def run(args: argparse.Namespace) -> int:
    from aiges.platform.gateway.command import run as run_command

    return run_command(args)
