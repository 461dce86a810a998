"""``aiges xtest -c xtest.toml``: load-test a service with one-shot calls or streamed sessions.

Reads the original AIGes xtest.toml keys ([xtest] taddrs, [svcMode], [header], [parameter], [data]
and its sections, [downstream]); flags override them. Prints a closing report (requests, errors by
code, throughput, latency percentiles from an HDR histogram, first-result latency for sessions)
and writes it as JSON with ``--json``. With ``--etcd`` the calls are balanced over the registered
providers and retried where safe (``aiges.client.balancer``), and the report adds the calls per
host, the retries, a per-second timeline and the registry changes seen.

While it runs it shows throughput, errors by code and p50/p99 over the last ``--window`` seconds
(``aiges.xtest.live``: a table on a terminal, a line per ``--live-every`` seconds elsewhere);
``--html FILE`` writes the report with its charts as one HTML page; ``--prometheus [HOST:]PORT``
serves xtest's own figures to Prometheus while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine
from functools import partial
from pathlib import Path
from typing import Any

from aiges.cli.common import add_client_options, client_security
from aiges.xtest.exporter import XtestMetrics, parse_listen
from aiges.xtest.figures import CallObserver, RecentCalls
from aiges.xtest.live import keep_showing, open_view, status_source
from aiges.xtest.plan import XtestConfig, XtestConfigError, load_xtest, parse_addresses
from aiges.xtest.runner import Recorder, Targets, report, run_xtest, write_output


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("xtest", help="load-test a service (one-shot calls or sessions)")
    parser.add_argument("-c", "--config", help="xtest.toml")
    parser.add_argument("--addr", action="append", default=[], help="HOST:PORT to test (repeatable; over taddrs)")
    parser.add_argument("--etcd", help="etcd endpoints: test the providers registered there instead")
    parser.add_argument(
        "--service",
        help="the service: the calls' LoaderInput.serviceId (over [svcMode] svcId), with --addr also sent as "
        "aiges-service (for a gateway), with --etcd the key's",
    )
    parser.add_argument("--version", dest="service_version", default="v1", help="with --etcd: the version")
    parser.add_argument("--concurrency", type=int, help="callers at once (multiThr)")
    parser.add_argument("--requests", type=int, help="requests in all (loopCnt)")
    parser.add_argument("--duration", type=float, help="seconds to run instead of a request count")
    parser.add_argument("--rate", type=float, help="open loop: start this many requests per second")
    parser.add_argument("--session", action="store_true", help="streamed sessions (sessMode=1)")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=@FILE[:TYPE]",
        help="a payload, when there is no xtest.toml [data]",
    )
    parser.add_argument("--expect", action="append", default=[], metavar="NAME[:TYPE]")
    parser.add_argument("--timeout-ms", type=int, help="a call's time limit, ms (svcMode timeout)")
    parser.add_argument(
        "--idempotent",
        action="store_true",
        help="one-shot calls may run twice: with --etcd, retry those whose connection was lost; "
        "with --addr, tell a gateway it may (aiges-idempotent)",
    )
    parser.add_argument(
        "--retry-refused",
        action="store_true",
        help="with --addr (a gateway): send again a call refused with 10110 or that reached no server",
    )
    parser.add_argument("--json", help="write the report to this file as JSON")
    parser.add_argument(
        "--calls", help="write every call and registry change to this file as JSON lines, while the run goes"
    )
    parser.add_argument("--html", help="write the report with latency-over-time and distribution charts as HTML")
    parser.add_argument(
        "--prometheus",
        metavar="[HOST:]PORT",
        help="serve xtest's own figures (aiges_xtest_*) at http://HOST:PORT/metrics while it runs",
    )
    parser.add_argument(
        "--live-every",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between live updates (default 1; 0: no live view)",
    )
    parser.add_argument(
        "--window", type=float, default=5.0, metavar="SECONDS", help="the live figures are of the last SECONDS (5)"
    )
    add_client_options(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_xtest(Path(args.config) if args.config else None)
    except XtestConfigError as exc:
        print(f"aiges xtest: {exc}", file=sys.stderr)
        return 2
    apply_flags(config, args)
    problem = validate(config, args)
    if problem:
        print(f"aiges xtest: {problem}", file=sys.stderr)
        return 2
    try:
        tls, signing = client_security(args)
    except ValueError as exc:
        print(f"aiges xtest: {exc}", file=sys.stderr)
        return 2
    observers: list[CallObserver] = []
    metrics = None
    if args.prometheus:
        metrics = XtestMetrics()
        try:
            host, port = parse_listen(args.prometheus)
            metrics.serve(host, port)
        except (ValueError, OSError) as exc:
            print(f"aiges xtest: --prometheus {args.prometheus}: {exc}", file=sys.stderr)
            return 2
        observers.append(metrics)
    live = None
    if args.live_every > 0:
        recent = RecentCalls(args.window)
        observers.append(recent)
        live = partial(show_live, recent=recent, config=config, every_s=args.live_every)
    providers = None
    if args.etcd:
        from aiges.client.registry import EtcdProviders

        providers = EtcdProviders(args.etcd, service=args.service, version=args.service_version)
    targets = Targets(
        config.addresses,
        providers,
        idempotent=args.idempotent,
        tls=tls,
        signing=signing,
        retry_refused=args.retry_refused,
        service=args.service if not args.etcd and args.service else "",
    )
    try:
        recorder = asyncio.run(
            run_xtest(
                config,
                targets,
                write_output(config.output_mode, config.output_path),
                Path(args.calls) if args.calls else None,
                observers=observers,
                live=live,
            )
        )
    finally:
        if providers is not None:
            providers.close()
        if metrics is not None:
            metrics.close()
    result = report(recorder, config)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.html:
        from aiges.xtest.html_report import render

        Path(args.html).write_text(render(result, recorder.calls))
    return 0 if result["errors"] == 0 else 1


def show_live(
    recorder: Recorder, *, recent: RecentCalls, config: XtestConfig, every_s: float
) -> Coroutine[Any, Any, None]:
    """The live view of ``recorder``'s run, on stdout."""
    status = status_source(
        recent,
        lambda: (recorder.requests, sum(recorder.errors.values())),
        None if config.duration_s else config.requests,
        config.duration_s,
    )
    return keep_showing(open_view(sys.stdout), status, every_s)


def apply_flags(config: XtestConfig, args: argparse.Namespace) -> None:
    from aiges.cli.call import parse_expect, parse_input
    from aiges.xtest.plan import ExpectSpec, InputSpec

    if args.service:
        config.service_id = args.service
    if args.addr:
        config.addresses = [a for spec in args.addr for a in parse_addresses(spec)]
    if args.concurrency:
        config.concurrency = args.concurrency
    if args.requests:
        config.requests = args.requests
    if args.duration:
        config.duration_s = args.duration
    if args.rate:
        config.rate = args.rate
    if args.session:
        config.session = True
    if args.timeout_ms:
        config.timeout_ms = args.timeout_ms
    for spec in args.input:
        name, value = parse_input(spec)
        config.inputs.append(InputSpec(name, value.type, [], {}, inline=value.data))
    for name, data_type in parse_expect(args.expect).items():
        config.expect.append(ExpectSpec(name, data_type, {}))


def validate(config: XtestConfig, args: argparse.Namespace) -> str | None:
    if not config.addresses and not args.etcd:
        return "no target: give --addr HOST:PORT, --etcd, or [xtest] taddrs"
    if args.etcd and not args.service:
        return "--etcd needs --service"
    if not config.inputs:
        return "no input: give [data] payload sections or --input NAME=@FILE"
    if config.rate is not None and config.rate <= 0:
        return "--rate must be above 0"
    if args.live_every < 0 or args.window <= 0:
        return "--live-every must be 0 or more, --window above 0"
    return None


def print_report(result: dict[str, Any]) -> None:
    latency = result["latency_ms"]
    print(f"requests    {result['requests']}  ({result['mode']})")
    print(f"successes   {result['successes']}")
    print(f"errors      {result['errors']}" + (f"  by code: {result['errors_by_code']}" if result["errors"] else ""))
    print(f"throughput  {result['throughput_rps']:.1f} requests/s over {result['duration_s']:.1f} s")
    print("latency ms  " + "  ".join(f"{k} {v:.2f}" for k, v in latency.items()))
    if "first_result_ms" in result:
        print("first ms    " + "  ".join(f"{k} {v:.2f}" for k, v in result["first_result_ms"].items()))
    if "hosts" in result:
        total = max(sum(result["hosts"].values()), 1)
        print("hosts       " + "  ".join(f"{host} {n} ({n / total:.0%})" for host, n in result["hosts"].items()))
        print(
            f"retried     {result['retried']}"
            + (f"  after: {result['retried_errors_by_code']}" if result["retried"] else "")
        )
