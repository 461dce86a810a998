"""``aiges config ...``: the config centre in etcd (``aiges.platform.config_commands``)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from aiges.platform.config_commands import add_parser as add

    add(sub)


def run(args: argparse.Namespace) -> int:
    from aiges.platform.config_commands import run as run_command

    return run_command(args)
