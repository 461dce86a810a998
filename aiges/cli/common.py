"""Options and config loading shared by the subcommands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiges.config import DEFAULT_SERVICE, Config, ConfigError, load_config

if TYPE_CHECKING:  # imported where used: the commands that need neither do not load grpc or the plugins
    from aiges.client.credentials import SigningKey, TlsOptions
    from aiges.plugins.contract import Plugin


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


def load_wrapper(config: Config) -> Plugin | None:
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


def load_schema(config: Config) -> dict[str, Any] | None:
    """The wrapper's schema from its declared fields, or None after printing why."""
    plugin = load_wrapper(config)
    if plugin is None:
        return None
    schema = plugin.schema()
    if schema is None:
        print(f"aiges: {config.wrapper_path} is a {plugin.style}-style wrapper: it declares no fields", file=sys.stderr)
    return schema


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """TLS and signing options for the commands that call a server (each also read from the
    environment variable named in its help)."""
    group = parser.add_argument_group("TLS and credentials (a server with [tls] or [auth] mode = hmac)")
    group.add_argument("--tls-ca", help="CA certificates to trust, PEM (AIGES_TLS_CA; default: the system's)")
    group.add_argument("--tls-cert", help="client certificate for mTLS, PEM (AIGES_TLS_CERT)")
    group.add_argument("--tls-key", help="its private key, PEM (AIGES_TLS_KEY)")
    group.add_argument(
        "--tls-server-name", help="name to check the server's certificate against (AIGES_TLS_SERVER_NAME)"
    )
    group.add_argument("--app-id", help="the app's id (AIGES_APP_ID)")
    group.add_argument("--api-key", help="sign every call with this app's api_key (AIGES_API_KEY)")
    group.add_argument("--api-secret", help="and its api_secret (AIGES_API_SECRET)")


def client_security(
    args: argparse.Namespace, config: Config | None = None
) -> tuple[TlsOptions | None, SigningKey | None]:
    """(TlsOptions or None, SigningKey or None) from the flags, else the environment. With the
    server's own ``config`` (``-c``), TLS is used when it has [tls], and under mTLS its own
    certificate is the client's unless one is given (what a probe in its container needs)."""
    from aiges.client.credentials import SigningKey, TlsOptions

    def option(name: str) -> str:
        return getattr(args, name, None) or os.environ.get(f"AIGES_{name.upper()}", "")

    tls_values = {name: option(f"tls_{name}") for name in ("ca", "cert", "key", "server_name")}
    tls = TlsOptions(**tls_values) if any(tls_values.values()) else None
    if config is not None and config.tls.cert:
        tls = tls or TlsOptions()
        if config.tls.client_ca and not tls.cert:
            tls = TlsOptions(
                tls.ca,
                str(config.relative_path(config.tls.cert)),
                str(config.relative_path(config.tls.key)),
                tls.server_name,
            )
    api_key, api_secret = option("api_key"), option("api_secret")
    if bool(api_key) != bool(api_secret):
        raise ValueError("--api-key and --api-secret go together")
    signing = SigningKey(api_key, api_secret, option("app_id")) if api_key else None
    return tls, signing


def config_address(config: Config) -> str:
    """Where the server that ``config`` configures answers on this machine: its port, on loopback
    when it listens on every address."""
    service = config.service
    path = config.path
    if service.port == 0:
        raise ValueError(f"{path}: the port is 0 (picked at start): give --addr")
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(service.host, service.host)
    return f"[{host}]:{service.port}" if ":" in host and not host.startswith("[") else f"{host}:{service.port}"


def running_server(args: argparse.Namespace) -> tuple[str | None, TlsOptions | None, SigningKey | None]:
    """(address or None, TlsOptions or None, SigningKey or None) of the running server a command
    talks to: ``--addr``, else the port of the config in ``-c`` (read from its ``--section``), with
    TLS and signing as ``client_security`` finds them. Raises ConfigError, ValueError or OSError."""
    config = load_config(args.config, args.section or DEFAULT_SERVICE) if args.config else None
    address = args.addr or (config_address(config) if config is not None else None)
    tls, signing = client_security(args, config)
    return address, tls, signing
