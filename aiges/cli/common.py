"""Options and config loading shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aiges.config import DEFAULT_SERVICE, Config, ConfigError, load_config


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="aiges.toml (default: ./aiges.toml when present)")
    parser.add_argument(
        "-s", "--service", default=DEFAULT_SERVICE, help=f"section holding host and port (default: {DEFAULT_SERVICE})"
    )
    parser.add_argument("--host", help="listen address (overrides the file)")
    parser.add_argument("--port", type=int, help="listen port (overrides the file)")
    parser.add_argument("--wrapper", help="wrapper.py, a folder holding one, or a .so (overrides the file)")


def load(args: argparse.Namespace) -> Config | None:
    """The config, or None after printing the one-line reason (the caller exits 2)."""
    path = args.config
    if path is None and Path("aiges.toml").is_file():
        path = "aiges.toml"
    try:
        return load_config(path, args.service, host=args.host, port=args.port, wrapper=args.wrapper)
    except ConfigError as exc:
        print(f"aiges: {exc}", file=sys.stderr)
        return None


def load_wrapper(config: Config):
    """Import the wrapper in this process, from its own folder (as a worker would), pinned to the
    first worker's GPU. Returns the Plugin, or None after printing why."""
    from aiges.gpu import plan_workers
    from aiges.plugins.contract import PluginLoadError
    from aiges.plugins.loader import load_plugin, resolve_wrapper_path

    os.environ.setdefault("CUDA_VISIBLE_DEVICES", plan_workers(config.worker.gpus, config.worker.count)[0])
    try:
        path = resolve_wrapper_path(config.wrapper_path)
        os.chdir(path.parent)
        return load_plugin(path)
    except PluginLoadError as exc:
        print(f"aiges: {exc}", file=sys.stderr)
        return None


def load_schema(config: Config) -> dict | None:
    """The wrapper's schema from its declared fields, or None after printing why."""
    plugin = load_wrapper(config)
    if plugin is None:
        return None
    schema = plugin.schema()
    if schema is None:
        print(f"aiges: {config.wrapper_path} is a {plugin.style}-style wrapper: it declares no fields", file=sys.stderr)
    return schema
