"""``aiges serve --etcd HOST:2379 --project P --group G --service S``: a host whose config comes
from the config centre, as the original loader's ``-m 1 -p P -g G -s S -u URL`` did from Polaris.

    -m 1            the config centre (-m 0 or 2: the file given with -c, as before)
    -p / --project  the project
    -g / --group    the group: the unit of a gray release (a host runs its group's version)
    -s / --service  the service: its config's name in the centre, and the section of that config
                    holding host and port, as in the original
    -u / --etcd     etcd's endpoints (the original's companion URL; http://host:port works too)

``--host``, ``--port`` and ``--wrapper`` apply over every version, so one group config serves
hosts that differ in those; relative paths in a version resolve from ``--base`` (the working
directory by default).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the rest is imported when the centre is used: ``aiges --help`` stays quick
    from aiges.config import Config
    from aiges.platform.config_source import Fetched
    from aiges.platform.config_watch import ConfigWatch

CENTRE_MODE = "1"
DEFAULT_CACHE = "~/.cache/aiges/config"


def add_centre_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config centre (the config comes from etcd: README, The platform around it)")
    group.add_argument("--etcd", "-u", dest="etcd", help="etcd endpoints, comma separated (-u: the original's flag)")
    group.add_argument("--project", "-p", dest="project", help="project of the config (-p)")
    group.add_argument("--group", "-g", dest="group", help="group of the config: a gray release's unit (-g)")
    group.add_argument(
        "-m",
        dest="config_mode",
        default=None,
        help="0: the file given with -c; 1: the config centre (the original's -m)",
    )
    group.add_argument(
        "--config-cache",
        default=os.environ.get("AIGES_CONFIG_CACHE", DEFAULT_CACHE),
        help=f"folder keeping the last version fetched, for a start without etcd (AIGES_CONFIG_CACHE; {DEFAULT_CACHE})",
    )
    group.add_argument("--base", help="folder the relative paths of a version resolve from (default: here)")


def centre_mode(args: argparse.Namespace) -> bool:
    mode = (args.config_mode or "").lstrip("=")
    return mode == CENTRE_MODE or (bool(args.etcd) and mode in ("", CENTRE_MODE))


def config_from_centre(args: argparse.Namespace) -> tuple[Config, ConfigWatch, Fetched] | None:
    """The config of the group's current version (or the cached copy), and the watch that will
    follow it; None after printing why not (the caller exits 2)."""
    from aiges.config import ConfigError
    from aiges.platform.config_source import ConfigCache, Overrides, materialise, start_version, write_keys
    from aiges.platform.config_store import ConfigStoreError, Scope
    from aiges.platform.config_watch import ConfigWatch

    missing = [
        flag
        for flag, value in (("--etcd", args.etcd), ("--project", args.project), ("--group", args.group))
        if not value
    ]
    if missing:
        print(f"aiges: the config centre needs {', '.join(missing)} (or -u, -p, -g)", file=sys.stderr)
        return None
    if args.config:  # the original's -c named the file to fetch from the centre: one per scope here
        print(f"aiges: note: -c {args.config} ignored: the config comes from the config centre", file=sys.stderr)
    try:
        scope = Scope(args.project, args.group, args.service)
        cache = ConfigCache(Path(args.config_cache), scope)
        fetched = asyncio.run(start_version(args.etcd, scope, cache))
        base = Path(args.base).resolve() if args.base else Path.cwd()
        overrides = Overrides(args.host, args.port, args.wrapper)
        config = materialise(fetched.version, scope, base, overrides)
        write_keys(config, fetched.version.keys)
    except (ConfigStoreError, ConfigError, OSError) as exc:
        print(f"aiges: {exc}", file=sys.stderr)
        return None
    return config, ConfigWatch(args.etcd, scope, cache, fetched, base, overrides), fetched


def log_start(fetched: Fetched, watch: ConfigWatch) -> None:
    """Once logging is configured: which version the host starts from, and from where."""
    import structlog

    log = structlog.get_logger("aiges.config")
    fields = {"scope": watch.scope.label(), "version": fetched.version.number, "by": fetched.version.by}
    if fetched.origin == "cache":
        log.warning(
            "etcd unreachable: starting from the cached config version",
            cache=str(watch.cache.path),
            error=fetched.error,
            **fields,
        )
    else:
        log.info("config from the config centre", **fields)
