"""The platform parts of the cluster run: the faults as the gateway's clients saw them, and the
config centre under load (a push to every host, a gray push to one group, a rollback).

Gateway figures per fault come from three places: the gateway's clients' call logs (``aiges
xtest --addr`` the gateway: each reply's PeerAddr names the host that answered), HAProxy's
access log (each request's host, and whether HAProxy sent it again), and the gateway's own log
(when HAProxy's checks marked a host DOWN, when the registry made the gateway drain it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from analysis import Fault, fmt_codes, fmt_s, in_window, stats
from cluster import (
    GROUPS,
    LICENCES,
    SECTION,
    CallLog,
    Cluster,
    Gateway,
    ProbeClient,
    group_config,
    log_time,
    wait_until,
)

CONFIG_LICENCES = 60
CONFIG_MAXRECEIVE = 8
GRAY = 'release = "gray"'


def first_after(times: list[float], start: float, until: float) -> float | None:
    found = [t for t in times if start <= t < until]
    return min(found) if found else None


def gateway_figures(fault: Fault, once: CallLog, sessions: CallLog, gateway: Gateway) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "once": stats(in_window(once.update().calls, fault.injected, fault.end)),
        "sessions": stats(in_window(sessions.update().calls, fault.injected, fault.end)),
    }
    requests = [r for r in gateway.access() if fault.injected <= r["t"] < fault.end]
    figures["haproxy_resent"] = sum(1 for r in requests if str(r.get("retries", "0")) not in ("0", ""))
    if fault.host is not None:
        until = fault.restored if fault.restored is not None else fault.end
        routed = [r["t"] for r in gateway.requests if r["address"] == fault.host and fault.injected <= r["t"] < until]
        figures["last_routed_s"] = round(max(routed) - fault.injected, 3) if routed else 0.0
        events = gateway.events()
        down = first_after(
            [
                e["t"]
                for e in events
                if e["event"] == "haproxy server state" and e["address"] == fault.host and e["status"] == "DOWN"
            ],
            fault.injected,
            until,
        )
        drained = first_after(
            [
                e["t"]
                for e in events
                if e["event"] == "host routed" and e["address"] == fault.host and e["state"] in ("drain", "maint")
            ],
            fault.injected,
            until,
        )
        figures["checks_down_s"] = round(down - fault.injected, 3) if down is not None else None
        figures["drained_s"] = round(drained - fault.injected, 3) if drained is not None else None
        if fault.restored is not None:
            back = first_after(
                [c.t for c in once.calls if c.host == fault.host and c.code is None], fault.restored, float("inf")
            )
            figures["recover_s"] = round(back - fault.restored, 3) if back is not None else None
    return figures


def gateway_markdown(faults: list[Fault], figures: dict[str, dict], totals: dict, settings: dict) -> str:
    lines = [
        "",
        "## Through the gateway",
        "",
        f"The same faults, seen by a second pair of loads that go through `aiges gateway` (HAProxy "
        f"{settings.get('haproxy', '')} in its own namespace, the registry followed through etcd): one-shot calls at "
        f"{settings['gateway_rate']}/s (`aiges xtest --addr` the gateway, `--idempotent --retry-refused`) and "
        f"sessions at {settings['gateway_session_rate']}/s. Whole run: {totals['once']['requests']} one-shot calls "
        f"(errors: {fmt_codes(totals['once']['errors_by_code'])}), {totals['sessions']['requests']} sessions (errors: "
        f"{fmt_codes(totals['sessions']['errors_by_code'])}). *Resent by HAProxy*: requests its access log shows sent "
        "again to another host (a connection refused or lost; lost ones only for `aiges-idempotent` calls); "
        "*retried (after)*: by the client, refused (10110) calls sent again; *last routed*: the last request "
        "the access log shows ending on the lost host after the fault (one HAProxy resent elsewhere is logged "
        "where it ended); *checks down*: when HAProxy's own health checks marked it DOWN; *drained or removed*: "
        "when the registry's change made the gateway drain it, or (its key gone and HAProxy finding it DOWN) take "
        "it out; "
        "from the first of those two HAProxy sends it nothing new. "
        "*recover*: from undoing the fault to the first call the host answered through the gateway.",
        "",
        "| fault | one-shot calls | one-shot errors | resent by HAProxy | retried (after) | sessions (errors) | "
        "last routed | checks down | drained or removed | recover | p99 | max |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for fault in faults:
        f = figures[fault.name]
        once, sessions = f["once"], f["sessions"]
        lines.append(
            f"| {fault.title} | {once['requests']} | {fmt_codes(once['errors_by_code'])} | {f['haproxy_resent']} | "
            f"{once['retried']} ({fmt_codes(once['retried_after'])}) | {sessions['requests']} "
            f"({fmt_codes(sessions['errors_by_code'])}) | {fmt_s(f.get('last_routed_s'))} | "
            f"{fmt_s(f.get('checks_down_s'))} | {fmt_s(f.get('drained_s'))} | {fmt_s(f.get('recover_s'))} | "
            f"{once['p99_ms']:.0f} ms | {once['max_ms']:.0f} ms |"
        )
    return "\n".join(lines) + "\n"


class ConfigPhase:
    """Config pushes under the running loads; ``steps`` holds each one's figures."""

    def __init__(self, cluster: Cluster, say: Callable[[str], None], loads: dict[str, CallLog]) -> None:
        self.cluster = cluster
        self.say = say
        self.loads = loads
        self.steps: list[dict] = []
        self.hosts_listing: list[dict] = []
        self.restart_needed: dict[str, list[str]] = {}

    def probe(self) -> ProbeClient:
        probe = self.cluster.probe
        assert probe is not None
        return probe

    def registered_versions(self) -> dict[str, int | None]:
        providers = self.probe().providers() or {}
        return {
            name: (providers.get(host.address, {}).get("value", {}).get("config") or {}).get("version")
            for name, host in self.cluster.hosts.items()
        }

    def statuses(self) -> dict[str, dict | None]:
        return {name: self.probe().status(host.address) for name, host in self.cluster.hosts.items()}

    def applied(self, name: str, version: int, after: float) -> float | None:
        """When host ``name`` logged that it applied ``version`` (after ``after``)."""
        for entry in self.cluster.hosts[name].log_events("config version applied"):
            at = log_time(entry)
            if entry.get("version") == version and at >= after and not entry.get("errors"):
                return at
        return None

    def step(
        self, title: str, pushed: dict[str, int], began: float, check: Callable[[dict, dict], bool]
    ) -> dict[str, Any]:
        """Wait until every host named in ``pushed`` (host -> version) applied it and ``check``
        (registry versions, statuses) holds; the step's figures."""

        def done() -> bool:
            versions = self.registered_versions()
            if any(versions[name] != version for name, version in pushed.items()):
                return False
            if any(self.applied(name, version, began) is None for name, version in pushed.items()):
                return False
            return check(versions, self.statuses())

        wait_until(done, 90, interval=0.5, what=f"{title}: applied on {sorted(pushed)}")
        applied: dict[str, float] = {}
        for name, version in pushed.items():
            at = self.applied(name, version, began)
            assert at is not None
            applied[name] = round(at - began, 2)
        step: dict[str, Any] = {
            "title": title,
            "began": began,
            "applied_s": applied,
            "versions": self.registered_versions(),
        }
        self.steps.append(step)
        self.say(f"{title}: applied on {', '.join(sorted(pushed))} (slowest {max(applied.values()):.1f} s)")
        time.sleep(2)
        step["end"] = time.monotonic()
        return step

    def play(self) -> None:
        cluster = self.cluster
        g1 = [name for name, group in GROUPS.items() if group == "g1"]
        g2 = [name for name, group in GROUPS.items() if group == "g2"]
        began = time.monotonic()
        more = group_config(licences=CONFIG_LICENCES, maxreceive=CONFIG_MAXRECEIVE)
        versions = {
            group: cluster.push(group, more, f"licences {LICENCES} -> {CONFIG_LICENCES}") for group in ("g1", "g2")
        }
        self.say(f"pushed [fc] max = {CONFIG_LICENCES} to g1 and g2")
        self.step(
            "licences on every host",
            {name: versions[GROUPS[name]] for name in cluster.hosts},
            began,
            lambda _, statuses: all(s and s["licences_total"] == CONFIG_LICENCES for s in statuses.values()),
        )
        self.restart_needed = {
            name: (status or {}).get("config", {}).get("restart_needed", []) for name, status in self.statuses().items()
        }
        generations = {name: (s or {})["reload"]["generation"] for name, s in self.statuses().items()}
        began = time.monotonic()
        gray = cluster.push("g1", group_config(CONFIG_LICENCES, CONFIG_MAXRECEIVE, GRAY), "gray: a [wrapper] key")
        self.say(f"gray push to g1 only: version {gray}, a [wrapper] change (a reload)")
        self.step(
            "gray push to g1",
            {name: gray for name in g1},
            began,
            lambda registered, statuses: (
                all(statuses[n] and statuses[n]["reload"]["generation"] > generations[n] for n in g1)
                and all(
                    registered[n] == versions["g2"]
                    and statuses[n]
                    and statuses[n]["reload"]["generation"] == generations[n]
                    for n in g2
                )
            ),
        )
        listing = cluster.config("hosts", None, "--json")
        self.hosts_listing = json.loads(listing.stdout) if listing.returncode == 0 else []
        generations = {name: (s or {})["reload"]["generation"] for name, s in self.statuses().items()}
        began = time.monotonic()
        result = cluster.config("rollback", "g1", "--json")
        assert result.returncode == 0, result.stderr
        self.say(f"rolled g1 back to version {versions['g1']}")
        self.step(
            "rollback of g1",
            {name: versions["g1"] for name in g1},
            began,
            lambda _, statuses: all(statuses[n] and statuses[n]["reload"]["generation"] > generations[n] for n in g1),
        )
        for step in self.steps:
            step["loads"] = {
                name: stats(in_window(log.update().calls, step["began"], step["end"]))
                for name, log in self.loads.items()
            }


def config_markdown(phase: ConfigPhase) -> str:
    lines = [
        "",
        "## Config centre",
        "",
        f"Every host's config comes from the config centre in the cluster's etcd (`aiges serve --etcd ... --project "
        f"--group --service`; h3 and h4 with the original's `-m 1 -p -g -s -u`), h1 and h2 in group g1, h3 and h4 in "
        f"g2. Under all four loads: `[fc] max` {LICENCES} -> {CONFIG_LICENCES} (and `[{SECTION}] maxreceive` 4 -> "
        f"{CONFIG_MAXRECEIVE}, which needs a restart) pushed to both groups; a gray push to g1 of a `[wrapper]` change "
        "(a reload of its hosts' workers); g1 rolled back. *Applied*: from the push (or rollback) to each host logging "
        "the version applied; calls are those that ended from the push until 2 s after the last host applied it.",
        "",
        "| step | applied after | direct one-shot (errors) | direct sessions (errors) | gateway one-shot (errors) | "
        "gateway sessions (errors) | p99 direct / gateway |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in phase.steps:
        loads = step["loads"]
        applied = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(step["applied_s"].items()))
        cells = [
            f"{loads[name]['requests']} ({fmt_codes(loads[name]['errors_by_code'])})"
            for name in ("once", "sessions", "gw-once", "gw-sessions")
        ]
        lines.append(
            f"| {step['title']} | {applied} | {' | '.join(cells)} | "
            f"{loads['once']['p99_ms']:.0f} / {loads['gw-once']['p99_ms']:.0f} ms |"
        )
    needed = sorted({key for keys in phase.restart_needed.values() for key in keys})
    lines += [
        "",
        "Reported as needing a restart (cmdserver status, `aiges_config_restart_needed`, the log): "
        f"{', '.join(needed) or 'none'}. "
        "After the gray push, `aiges config hosts` listed: "
        + ", ".join(f"{row['address']} {row['group']} v{row['version']}" for row in phase.hosts_listing)
        + ".",
    ]
    return "\n".join(lines) + "\n"
