"""``aiges serve``: serve the wrapper named in aiges.toml, or each of its ``[[service]]``."""

from __future__ import annotations

import argparse
import sys

from aiges.cli.common import add_config_options, load
from aiges.logs import configure_logging
from aiges.platform.host import add_centre_options, centre_mode, config_from_centre, log_start
from aiges.plugins.contract import PluginLoadError
from aiges.plugins.loader import resolve_wrapper_path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="serve a wrapper over gRPC")
    add_config_options(parser)
    add_centre_options(parser)


def run(args: argparse.Namespace) -> int:
    watch = None
    if centre_mode(args):  # the config comes from etcd (aiges.platform.host)
        found = config_from_centre(args)
        if found is None:
            return 2
        config, watch, fetched = found
    else:
        loaded = load(args)
        if loaded is None:
            return 2
        config = loaded
    configure_logging(config.log.level, config.log.format)
    if watch is not None:
        log_start(fetched, watch)
    for warning in config.warnings:
        print(f"aiges: warning: {warning}", file=sys.stderr)
    try:
        for spec in config.specs():
            resolve_wrapper_path(spec.wrapper_path)
    except PluginLoadError as exc:
        print(f"aiges: {exc}", file=sys.stderr)
        return 2
    if config.aiges.sched_batch:
        from aiges.engine.scheduling import use_batch_scheduling

        use_batch_scheduling()
    from functools import partial

    from aiges.config import load_config
    from aiges.server.app import serve

    if watch is not None:  # a reload takes the version running now
        return serve(config, watch.reread, watch)
    # a reload reads the same file again, keeping the command line's --wrapper
    reread = partial(load_config, config.path, config.service_name, wrapper=args.wrapper)
    return serve(config, reread)
