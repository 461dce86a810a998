"""Many hosts behind the registry, for real: a 3-member etcd, four aiges hosts and a client, each
in its own network namespace on a private bridge with no route out of the machine (see
``cluster`` and ``netns``), under one open-loop load of ``aiges xtest --etcd`` (one-shot calls,
and a second one of sessions), with faults injected one at a time:

    balance, equal      four equal hosts: their shares of the calls
    balance, one slow   h4's service time x4: it is sent correspondingly less
    host killed         h1 SIGKILLed with calls in flight, then started again
    link cut            h2's link down with calls in flight, until its lease expires; then up
    host draining       h3 SIGTERMed under load (drains, exits 0), then started again
    etcd leader killed  the leader SIGKILLed; a new one is elected; the member restarted
    quorum lost         two of three members down for 30 s, then back
    workers crash       all of h4's workers SIGKILLed, kept down a few seconds, then let up
    config centre       [fc] max pushed to both groups, a gray push to g1, g1 rolled back

A second pair of loads goes through ``aiges gateway`` (HAProxy) at the same time, so every fault
is also seen through the gateway (``platform_run``).

The whole schedule runs once (a module fixture), writes its figures to RESULTS.md and
timeline.png next to this file and prints them; each test then asserts one expectation on them.
Timing bounds are generous and tied to the lease TTL: figures are reported, not asserted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import netns
import pytest
from analysis import Fault, Window, fault_figures, in_window, plot, results_markdown, shares, stats
from cluster import (
    GROUPS,
    LICENCES,
    SERVICE_MS,
    SESSION_TTL_MS,
    TTL_S,
    WORKERS,
    Cluster,
    Xtest,
    wait_until,
)
from conftest import require_tool
from platform_run import (
    CONFIG_LICENCES,
    CONFIG_MAXRECEIVE,
    ConfigPhase,
    config_markdown,
    gateway_figures,
    gateway_markdown,
)

HERE = Path(__file__).resolve().parent
RATE = 100
SESSION_RATE = 3
GATEWAY_RATE = 50
GATEWAY_SESSION_RATE = 2
FRAMES = 3
BALANCE_S = 20
QUORUM_LOSS_S = 30
SLOW_FACTOR = 4
SLACK_S = 2.0
"""Added to the lease TTL in timing bounds: a loaded 2-core machine delays everything a little."""

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]


@dataclass
class Run:
    cluster: Cluster
    once: Xtest
    sessions: Xtest
    once_report: dict
    sessions_report: dict
    faults: dict[str, Fault]
    windows: dict[str, Window]
    figures: dict[str, dict]
    balance: dict
    licences_after: dict[str, dict | None] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    scenario: Scenario | None = None
    gateway_once: Xtest | None = None
    gateway_sessions: Xtest | None = None
    gateway: dict[str, dict] = field(default_factory=dict)
    """Per fault: the figures seen through the gateway."""
    config: ConfigPhase | None = None

    def address(self, host: str) -> str:
        return self.cluster.hosts[host].address


class Scenario:
    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.faults: dict[str, Fault] = {}
        self.windows: dict[str, Window] = {}
        self.log: list[str] = []

    def say(self, text: str) -> None:
        line = f"[cluster +{time.monotonic() - self.began:6.1f} s] {text}"
        self.log.append(line)
        print(line, flush=True)

    def play(self) -> Run:
        cluster = self.cluster
        payload = self.workdir / "payload.txt"
        payload.write_text("hello aiges")
        chunks = self.workdir / "chunks.txt"
        chunks.write_text("abcdefgh" * 4 * FRAMES)
        session_toml = self.workdir / "sessions.toml"
        session_toml.write_text(f"""
[svcMode]
sessMode = 1
timeout = 5000
[data]
payload = "chunks"
expect = "echoed"
[chunks]
inputSrc = "{chunks}"
name = "text"
type = "text"
sliceOn = 1
sliceSize = 32
interval = 40
[echoed]
name = "text"
type = "text"
""")
        self.began = time.monotonic()
        once = cluster.xtest(
            "once",
            [
                "--rate",
                str(RATE),
                "--input",
                f"text=@{payload}",
                "--expect",
                "text",
                "--timeout-ms",
                "5000",
                "--idempotent",
            ],
        )
        sessions = cluster.xtest("sessions", ["-c", str(session_toml), "--rate", str(SESSION_RATE)])
        self.gateway_once = cluster.xtest(
            "gw-once",
            [
                "--rate",
                str(GATEWAY_RATE),
                "--input",
                f"text=@{payload}",
                "--expect",
                "text",
                "--timeout-ms",
                "5000",
                "--idempotent",
            ],
            through_gateway=True,
        )
        self.gateway_sessions = cluster.xtest(
            "gw-sessions", ["-c", str(session_toml), "--rate", str(GATEWAY_SESSION_RATE)], through_gateway=True
        )
        self.once_log = once.log
        hosts = cluster.hosts
        started = time.monotonic()
        wait_until(
            lambda: all(
                once.log.successes_on(h.address, started) and self.gateway_once.log.successes_on(h.address, started)
                for h in hosts.values()
            ),
            60,
            what="every host serving calls, directly and through the gateway",
        )
        self.say("load running on all four hosts, directly and through the gateway")
        time.sleep(2)
        self.balance_windows()
        self.kill_host(hosts["h1"])
        self.cut_link(hosts["h2"])
        self.drain_host(hosts["h3"])
        self.kill_etcd_leader()
        self.lose_quorum()
        self.crash_workers(hosts["h4"])
        self.config = ConfigPhase(
            cluster,
            self.say,
            {
                "once": once.log,
                "sessions": sessions.log,
                "gw-once": self.gateway_once.log,
                "gw-sessions": self.gateway_sessions.log,
            },
        )
        self.config.play()
        time.sleep(1)
        self.say("stopping the load")
        once_report, sessions_report = once.stop(), sessions.stop()
        self.gateway_reports = (self.gateway_once.stop(), self.gateway_sessions.stop())
        licences = self.wait_licences_free()
        return self.results(once, sessions, once_report, sessions_report, licences)

    # -- balance ------------------------------------------------------------------------------

    def balance_windows(self) -> None:
        now = time.monotonic()
        self.windows["equal"] = Window("equal hosts", now, now + BALANCE_S)
        time.sleep(BALANCE_S)
        slow = self.cluster.hosts["h4"]
        slow.set_service_ms(SERVICE_MS * SLOW_FACTOR)
        self.say(f"h4 slowed to {SERVICE_MS * SLOW_FACTOR} ms a call")
        time.sleep(3)  # the wrapper reads its control file twice a second; the client adapts as calls end
        now = time.monotonic()
        self.windows["slow"] = Window("h4 x4 slower", now, now + BALANCE_S)
        time.sleep(BALANCE_S)
        slow.set_service_ms(None)
        time.sleep(2)

    # -- host faults --------------------------------------------------------------------------

    def when_busy(self, host, calls: int = 2, timeout: float = 10.0) -> int:
        """Wait until ``host`` has at least ``calls`` one-shot calls in flight (so the fault hits
        calls in flight); returns how many it had."""
        deadline = time.monotonic() + timeout
        best = 0
        while time.monotonic() < deadline:
            status = self.cluster.probe.status(host.address)
            inflight = status["inflight"] if status else 0
            best = max(best, inflight)
            if inflight >= calls:
                return inflight
        return best

    def served_again(self, fault: Fault, host, timeout: float = 90.0) -> float:
        """Wait until ``host`` answers calls again after ``fault.restored``; returns (and notes) when."""
        restored = fault.restored
        assert restored is not None, "the fault is undone before its host can serve again"
        wait_until(
            lambda: self.once_log.successes_on(host.address, restored),
            timeout,
            interval=0.1,
            what=f"{host.name} serving calls again",
        )
        first = min(c.t for c in self.once_log.calls if c.host == host.address and c.code is None and c.t >= restored)
        fault.recovered = max(first, restored)
        return fault.recovered

    def gone_from_registry(self, host, timeout: float) -> float:
        started = time.monotonic()
        wait_until(
            lambda: host.address not in (self.cluster.probe.providers() or {host.address: {}}),
            timeout,
            what=f"{host.name}'s key gone from etcd",
        )
        return time.monotonic() - started

    def kill_host(self, host) -> None:
        fault = self.faults["kill"] = Fault("kill", "host SIGKILLed", host.address)
        inflight = self.when_busy(host)
        fault.injected = time.monotonic()
        host.kill()
        self.say(f"killed {host.name} with {inflight} calls in flight")
        fault.notes["in flight at the kill"] = inflight
        fault.notes["key gone from etcd after"] = f"{self.gone_from_registry(host, TTL_S * 3):.1f} s"
        host.start()
        fault.restored = time.monotonic()
        recovered = self.served_again(fault, host)
        self.say(f"{host.name} restarted and serving")
        fault.end = recovered + 2
        time.sleep(2)

    def cut_link(self, host) -> None:
        fault = self.faults["cut"] = Fault("cut", "host cut off (link down) and back", host.address)
        world = self.cluster.world
        inflight = self.when_busy(host)
        fault.injected = time.monotonic()
        world.set_link(host.name, up=False)
        self.say(f"cut {host.name}'s link with {inflight} calls in flight")
        fault.notes["in flight at the cut"] = inflight
        try:
            fault.notes["lease expired after"] = f"{self.gone_from_registry(host, TTL_S * 3):.1f} s"
        finally:
            world.set_link(host.name, up=True)
        fault.restored = time.monotonic()
        recovered = self.served_again(fault, host)
        self.say(f"{host.name}'s link back, serving again")
        fault.end = recovered + 2
        time.sleep(2)

    def drain_host(self, host) -> None:
        fault = self.faults["drain"] = Fault("drain", "host draining (SIGTERM) under load", host.address)
        inflight = self.when_busy(host)
        fault.injected = time.monotonic()
        host.terminate()
        self.say(f"SIGTERM to {host.name} with {inflight} calls in flight")
        fault.notes["in flight at SIGTERM"] = inflight
        fault.notes["key gone from etcd after"] = f"{self.gone_from_registry(host, TTL_S * 3):.1f} s"
        code = host.wait(30)
        fault.notes["exit code"] = code
        fault.notes["drained and exited after"] = f"{time.monotonic() - fault.injected:.1f} s"
        host.start()
        fault.restored = time.monotonic()
        recovered = self.served_again(fault, host)
        self.say(f"{host.name} drained (exit {code}), restarted and serving")
        fault.end = recovered + 2
        time.sleep(2)

    def crash_workers(self, host) -> None:
        fault = self.faults["crash"] = Fault("crash", "all of a host's workers crash", host.address)
        host.hold_init(True)
        try:
            inflight = self.when_busy(host)
            pids = host.worker_pids()
            fault.injected = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            self.say(f"killed {host.name}'s {len(pids)} workers with {inflight} calls in flight")
            fault.notes["workers killed"] = len(pids)
            fault.notes["in flight at the crash"] = inflight
            wait_until(lambda: not self.cluster.registered([host]), TTL_S * 3, what=f"{host.name} NOT_SERVING in etcd")
            fault.notes["NOT_SERVING in etcd after"] = f"{time.monotonic() - fault.injected:.1f} s"
            wait_until(
                lambda: (
                    (last := self.once_log.last_attempt_on(host.address, fault.injected)) is None
                    or time.monotonic() - last > 1.5
                ),
                TTL_S * 3,
                what=f"the client stopped sending to {host.name}",
            )
        finally:
            host.hold_init(False)
        fault.restored = time.monotonic()
        recovered = self.served_again(fault, host)
        self.say(f"{host.name}'s workers back, serving")
        fault.end = recovered + 2
        time.sleep(2)

    # -- etcd faults --------------------------------------------------------------------------

    def registrations(self) -> dict[str, int]:
        """How many times each host has (re)gained its registration: a new lease, or its lease resumed."""
        return {
            name: len(host.log_events("registered in etcd")) + len(host.log_events("registration resumed in etcd"))
            for name, host in self.cluster.hosts.items()
        }

    def all_registered(self) -> bool:
        providers = self.cluster.probe.providers()
        return providers is not None and all(
            h.address in providers
            and providers[h.address]["value"].get("health") == "SERVING"
            and (providers[h.address]["ttl"] or 0) > 0
            for h in self.cluster.hosts.values()
        )

    def kill_etcd_leader(self) -> None:
        cluster = self.cluster
        fault = self.faults["leader"] = Fault("leader", "etcd leader killed")
        leader = wait_until(cluster.leader, 30, what="an etcd leader")
        fault.injected = time.monotonic()
        leader.kill()
        self.say(f"killed the etcd leader {leader.name}")
        successor = wait_until(
            lambda: m if (m := cluster.leader()) is not None and m is not leader else None, 30, what="a new etcd leader"
        )
        fault.notes["killed"] = leader.name
        fault.notes["new leader"] = f"{successor.name} after {time.monotonic() - fault.injected:.1f} s"
        wait_until(self.all_registered, TTL_S * 4, what="four live registrations under the new leader")
        leader.start()
        fault.restored = time.monotonic()
        wait_until(cluster.etcd_ready, 60, what="three etcd members with a leader")
        fault.recovered = time.monotonic()
        fault.notes["member back in the cluster after"] = f"{fault.recovered - fault.restored:.1f} s"
        self.say(f"{leader.name} back; {successor.name} leads")
        time.sleep(3)
        fault.end = time.monotonic()

    def lose_quorum(self) -> None:
        cluster = self.cluster
        fault = self.faults["quorum"] = Fault("quorum", f"etcd quorum lost for {QUORUM_LOSS_S} s")
        leader = wait_until(cluster.leader, 30, what="an etcd leader")
        # the member the client follows goes down too, so that it loses the registry for real
        attached = [e["address"] for e in self.once_log.update().events if e["event"] == "etcd-back"][-1]
        followed = next(m for m in cluster.etcd.values() if m.endpoint == attached)
        other = leader if leader is not followed else next(m for m in cluster.etcd.values() if m is not leader)
        before = self.registrations()
        fault.injected = time.monotonic()
        followed.kill()
        other.kill()
        self.say(f"killed {followed.name} and {other.name}: no quorum")
        fault.notes["killed"] = ", ".join(
            f"{m.name}{' (leader)' if m is leader else ''}{' (the client watched it)' if m is followed else ''}"
            for m in (followed, other)
        )
        health: Counter[str] = Counter()
        checks = 0
        while time.monotonic() - fault.injected < QUORUM_LOSS_S:  # the schedule is the point: hold it
            for host in cluster.hosts.values():
                health[cluster.probe.health(host.address) or "unreachable"] += 1
            checks += 1
            time.sleep(2)
        fault.notes["host health checks during the loss"] = dict(health)
        self.quorum_health = health
        fault.notes["etcd answered a listing during the loss"] = cluster.probe.providers() is not None
        followed.start()
        other.start()
        fault.restored = time.monotonic()
        self.say("both members restarted")
        wait_until(cluster.etcd_ready, 60, what="etcd quorum back")
        fault.notes["quorum back after restart"] = f"{time.monotonic() - fault.restored:.1f} s"
        wait_until(
            lambda: self.all_registered() and all(n > before[h] for h, n in self.registrations().items()),
            60,
            interval=0.5,
            what="every host registered again by itself",
        )
        fault.recovered = time.monotonic()
        self.registered_again = {h: n - before[h] for h, n in self.registrations().items()}
        fault.notes["every host registered again after"] = f"{fault.recovered - fault.restored:.1f} s"
        self.say("quorum back, every host registered again")
        time.sleep(3)
        fault.end = time.monotonic()

    # -- the end ------------------------------------------------------------------------------

    def wait_licences_free(self) -> dict[str, dict | None]:
        """After the load: no licence held and no session open on any host (sessions whose
        client went away expire after [fc] ttl)."""
        probe = self.cluster.probe

        def states():
            found = {name: probe.status(host.address) for name, host in self.cluster.hosts.items()}
            return found if all(s and s["licences_used"] == 0 and s["sessions"] == 0 for s in found.values()) else None

        try:
            return wait_until(states, SESSION_TTL_MS / 1000 * 3, interval=0.5, what="no licence held on any host")
        except AssertionError:
            return {name: probe.status(host.address) for name, host in self.cluster.hosts.items()}

    def results(
        self, once: Xtest, sessions: Xtest, once_report: dict, sessions_report: dict, licences: dict[str, dict | None]
    ) -> Run:
        cluster = self.cluster
        names = {h.address: h.name for h in cluster.hosts.values()}
        addresses = [h.address for h in cluster.hosts.values()]
        faults = list(self.faults.values())
        figures = {f.name: fault_figures(f, once.log, sessions.log) for f in faults}
        equal = shares(once.log.calls, self.windows["equal"], addresses)
        slow = shares(once.log.calls, self.windows["slow"], addresses)
        fast = [slow[a] for a in addresses if a != cluster.hosts["h4"].address]
        slow_ratio = slow[cluster.hosts["h4"].address] / (sum(fast) / len(fast))
        expected = 1 / SLOW_FACTOR
        balance = {
            "hosts": addresses,
            "equal": {
                "title": "four equal hosts",
                "shares": equal,
                "note": f"max/min {max(equal.values()) / max(min(equal.values()), 1e-9):.3f}",
            },
            "slow": {
                "title": f"h4 {SLOW_FACTOR}x slower",
                "shares": slow,
                "note": f"h4 gets {slow_ratio:.2f} of a fast host's share (capacity ratio {expected:.2f})",
            },
            "equal_ratio": max(equal.values()) / max(min(equal.values()), 1e-9),
            "slow_ratio": slow_ratio,
        }
        start = once.log.start
        assert start is not None, "the once load has logged its start"
        totals = {"once": stats(once.log.calls), "sessions": stats(sessions.log.calls)}
        settings = {
            "cpus": os.cpu_count(),
            "workers": WORKERS,
            "service_ms": SERVICE_MS,
            "licences": LICENCES,
            "ttl_s": TTL_S,
            "rate": RATE,
            "session_rate": SESSION_RATE,
            "frames": FRAMES,
        }
        duration = max(c.t for c in once.log.calls) - start
        text = results_markdown(faults, figures, balance, settings, names, duration, totals)
        gateway = cluster.gateway
        assert gateway is not None
        gw_once, gw_sessions = self.gateway_once.log, self.gateway_sessions.log
        gateway_faults = {f.name: gateway_figures(f, gw_once, gw_sessions, gateway) for f in faults}
        gateway_settings = {
            "gateway_rate": GATEWAY_RATE,
            "gateway_session_rate": GATEWAY_SESSION_RATE,
            "haproxy": haproxy_version(),
        }
        gateway_totals = {"once": stats(gw_once.calls), "sessions": stats(gw_sessions.calls)}
        text += gateway_markdown(faults, gateway_faults, gateway_totals, gateway_settings)
        text += config_markdown(self.config)
        text += "\n## Schedule\n\n```\n" + "\n".join(self.log) + "\n```\n"
        (HERE / "RESULTS.md").write_text(text)
        (self.workdir / "faults.json").write_text(
            json.dumps(
                {
                    "start": start,
                    "faults": [dataclasses.asdict(f) for f in faults],
                    "windows": [dataclasses.asdict(w) for w in self.windows.values()],
                    "figures": figures,
                    "gateway": gateway_faults,
                    "config": self.config.steps,
                    "balance": balance,
                },
                indent=1,
                default=str,
            )
        )
        retried_at = [c.t - start for c in once.log.calls if c.tries]
        plot(
            once_report,
            sessions_report,
            faults,
            list(self.windows.values()),
            start,
            names,
            retried_at,
            HERE / "timeline.png",
        )
        print("\n" + text, flush=True)
        return Run(
            cluster,
            once,
            sessions,
            once_report,
            sessions_report,
            self.faults,
            self.windows,
            figures,
            balance,
            licences,
            names,
            gateway_once=self.gateway_once,
            gateway_sessions=self.gateway_sessions,
            gateway=gateway_faults,
            config=self.config,
        )


def haproxy_version() -> str:
    import subprocess

    try:
        first = subprocess.run(["haproxy", "-v"], capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
    except OSError:
        return ""
    return first.split()[2] if len(first.split()) > 2 else ""


def interrupted(signum: int, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    require_tool("etcd")
    require_tool("haproxy")
    reason = netns.available()
    if reason is not None:
        if os.environ.get("AIGES_REQUIRE_TOOLS"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        message = "the cluster tests plot their run: pip install -e '.[cluster]' (make cluster-test does)"
        if os.environ.get("AIGES_REQUIRE_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    netns.clean_stale()
    # SIGTERM (a cancelled CI job) unwinds through the finaliser below, like Ctrl-C does
    previous = signal.signal(signal.SIGTERM, interrupted)
    workdir = tmp_path_factory.mktemp("cluster")
    cluster = Cluster(workdir, str(os.getpid()))  # the id names the maker, for clean_stale
    began = time.monotonic()
    try:
        cluster.start()
        print(f"\ncluster up in {time.monotonic() - began:.1f} s: {cluster.world.name}, logs in {workdir}")
        scenario = Scenario(cluster, workdir)
        scenario.log.append(f"[cluster] 3 etcd members, 4 hosts up and registered in {time.monotonic() - began:.1f} s")
        result = scenario.play()
        result.scenario = scenario
        yield result
    finally:
        cluster.destroy()
        signal.signal(signal.SIGTERM, previous)
        leftover = [n for n in netns.namespaces() if n.startswith(cluster.world.name)]
        assert not leftover, f"namespaces left behind: {leftover}"
        print(f"cluster run and teardown: {time.monotonic() - began:.1f} s")


def host_faults(run: Run) -> list[Fault]:
    return [run.faults[name] for name in ("kill", "cut", "drain", "crash")]


# -- the topology ----------------------------------------------------------------------------


def test_the_cluster_has_no_route_out(run):
    world = run.cluster.world
    for node in world.nodes:
        routes = world.routes(node)
        assert "default" not in routes and routes.strip().startswith("10.77.0.0/24"), (node, routes)
    assert len(run.cluster.etcd) == 3 and len(run.cluster.hosts) == 4


# -- faults -----------------------------------------------------------------------------------


def test_one_shot_calls_in_flight_on_a_lost_host_are_retried_on_another(run):
    """Killed, cut off or draining: no one-shot call fails (they are idempotent, so those whose
    connection was lost are retried; refused ones always are), and some were retried."""
    for name in ("kill", "cut", "drain"):
        once = run.figures[name]["once"]
        assert once["errors"] == 0, (name, once)
    for name in ("kill", "cut"):
        once = run.figures[name]["once"]
        assert once["retried"] >= 1, (name, once)
        assert set(once["retried_after"]) <= {"grpc:UNAVAILABLE", "grpc:CANCELLED", "10110"}, (name, once)


def test_calls_on_crashed_workers_fail_with_a_clear_code_and_are_not_retried(run):
    """A call whose worker died may be what killed it: it fails with 10909 and goes nowhere else;
    at most one call per worker is lost, the queued ones are run by the restarted workers."""
    once = run.figures["crash"]["once"]
    assert set(once["errors_by_code"]) <= {"10909"}, once
    assert once["errors"] <= WORKERS, once
    assert "10909" not in once["retried_after"], once


def test_the_client_stops_sending_to_a_lost_host_within_a_lease_ttl(run):
    for fault in host_faults(run):
        figures = run.figures[fault.name]
        assert figures["last_sent_s"] <= TTL_S + SLACK_S, (fault.name, figures)


def test_a_lost_connection_marks_the_host_down_before_etcd_does(run):
    for name in ("kill", "cut"):
        figures = run.figures[name]
        assert figures["marked_down_s"] is not None, (name, figures)
        assert figures["removed_s"] is None or figures["marked_down_s"] <= figures["removed_s"], (name, figures)


def test_a_host_that_comes_back_gets_traffic_again(run):
    for fault in host_faults(run):
        assert fault.recovered is not None, fault
        served = run.once.log.successes_on(fault.host, fault.restored)
        assert served > 0, fault


def test_the_drained_host_exited_cleanly(run):
    assert run.faults["drain"].notes["exit code"] == 0


def test_the_etcd_leader_dying_disturbs_no_call(run):
    figures = run.figures["leader"]
    assert figures["once"]["errors"] == 0 and figures["sessions"]["errors"] == 0, figures
    assert set(figures["once"]["hosts"]) == set(run.names), figures


def test_during_quorum_loss_every_host_serves_and_the_client_balances_over_them(run):
    fault = run.faults["quorum"]
    assert set(run.scenario.quorum_health) == {"SERVING"}, run.scenario.quorum_health
    during = in_window(run.once.log.calls, fault.injected, fault.restored)
    assert during and all(c.code is None for c in during), Counter(c.code for c in during)
    late = Counter(c.host for c in during if c.t > fault.restored - 10)
    assert set(late) == set(run.names), late  # still all four, from the last providers it knew


def test_the_client_lost_the_registry_during_quorum_loss(run):
    fault = run.faults["quorum"]
    lost = [e for e in run.once.log.events if e["event"] == "etcd-lost" and fault.injected <= e["t"] < fault.restored]
    assert lost, "the client's etcd member was killed: it must have lost its watch"


def test_registration_comes_back_by_itself_with_quorum(run):
    assert all(n >= 1 for n in run.scenario.registered_again.values()), run.scenario.registered_again
    assert run.faults["quorum"].recovered is not None


def test_no_licence_is_held_after_the_load_on_any_host(run):
    for name, status in run.licences_after.items():
        assert status is not None, name
        assert status["licences_used"] == 0 and status["sessions"] == 0, (name, status)


def test_a_sessions_frames_are_never_sent_to_another_host(run):
    """Only a session's opening may move (when refused or never delivered); a frame reaching
    another host would be answered 10008 (no such session)."""
    calls = run.sessions.log.calls
    assert calls
    assert not any(c.code == "10008" for c in calls)
    for call in calls:
        assert all(code in ("10110", "grpc:UNAVAILABLE") for _, _, code in call.tries), call
    known = {"grpc:UNAVAILABLE", "grpc:CANCELLED", "grpc:DEADLINE_EXCEEDED", "10109", "10101", "10110", "10909"}
    assert {c.code for c in calls if c.code is not None} <= known


# -- balance ----------------------------------------------------------------------------------


def test_equal_hosts_get_shares_within_ten_percent_of_each_other(run):
    assert run.balance["equal_ratio"] <= 1.10, run.balance["equal"]


def test_a_slower_host_is_sent_correspondingly_less(run):
    """Service time x4: a quarter of the capacity. The client sends it clearly less than a fast
    host (at most half), and still some (it is slower, not lost)."""
    ratio = run.balance["slow_ratio"]
    assert 0.05 <= ratio <= 0.5, run.balance["slow"]


# -- through the gateway ----------------------------------------------------------------------


def test_the_gateway_stops_routing_to_a_lost_host_within_a_lease_ttl(run):
    for fault in host_faults(run):
        figures = run.gateway[fault.name]
        assert figures["last_routed_s"] <= TTL_S + SLACK_S, (fault.name, figures)


def test_haproxy_checks_mark_a_killed_or_cut_host_down_before_the_registry_drains_it(run):
    for name in ("kill", "cut"):
        figures = run.gateway[name]
        assert figures["checks_down_s"] is not None, (name, figures)
        assert figures["drained_s"] is None or figures["checks_down_s"] <= figures["drained_s"], (name, figures)


def test_the_registry_drains_a_host_at_the_gateway_when_it_deregisters_or_turns_not_serving(run):
    for name in ("drain", "crash"):
        figures = run.gateway[name]
        assert figures["drained_s"] is not None, (name, figures)


def test_no_one_shot_call_through_the_gateway_is_lost_to_a_drain_or_an_etcd_fault(run):
    for name in ("drain", "leader", "quorum"):
        once = run.gateway[name]["once"]
        assert once["errors"] == 0, (name, once)


def test_calls_lost_with_a_host_through_the_gateway_fail_with_a_transport_code_or_are_resent(run):
    for name in ("kill", "cut"):
        once = run.gateway[name]["once"]
        assert set(once["errors_by_code"]) <= {"grpc:UNAVAILABLE", "grpc:INTERNAL", "grpc:CANCELLED"}, (name, once)
    crash = run.gateway["crash"]["once"]
    assert set(crash["errors_by_code"]) <= {"10909"} and crash["errors"] <= WORKERS, crash


def test_a_host_that_comes_back_is_routed_to_again_by_the_gateway(run):
    for fault in host_faults(run):
        assert run.gateway[fault.name].get("recover_s") is not None, (fault.name, run.gateway[fault.name])


def test_session_frames_through_the_gateway_stay_on_the_sessions_host(run):
    """Each frame carries its handle as aiges-handle: HAProxy sends it to the host the handle
    names. A frame elsewhere would be answered 10008 (no such session)."""
    calls = run.gateway_sessions.log.calls
    assert len(calls) > 100
    assert not any(c.code == "10008" for c in calls)
    served = {c.host for c in calls if c.code is None}
    assert {run.address(h) for h in run.cluster.hosts} <= served, served


# -- the config centre -----------------------------------------------------------------------


def test_config_pushes_under_load_fail_no_call(run):
    for step in run.config.steps:
        for load, figures in step["loads"].items():
            assert figures["requests"] > 0 and figures["errors"] == 0, (step["title"], load, figures)


def test_a_licence_push_reaches_every_host(run):
    [licences, gray, rollback] = run.config.steps
    assert set(licences["applied_s"]) == set(run.cluster.hosts)
    assert all(status["licences_total"] == CONFIG_LICENCES for status in run.licences_after.values())


def test_a_gray_push_changes_only_its_group_and_a_rollback_returns_it(run):
    [licences, gray, rollback] = run.config.steps
    g1 = {n for n, g in GROUPS.items() if g == "g1"}
    assert set(gray["applied_s"]) == g1
    assert {gray["versions"][n] for n in g1} == {3} and {gray["versions"][n] for n in set(GROUPS) - g1} == {2}
    listed = {(row["address"], row["group"], row["version"]) for row in run.config.hosts_listing}
    assert listed == {(run.address(n), GROUPS[n], 3 if n in g1 else 2) for n in GROUPS}, listed
    assert {rollback["versions"][n] for n in GROUPS} == {2}


def test_keys_that_need_a_restart_are_reported_and_left_as_they_are(run):
    expected = f"[svcName] maxreceive: 4 -> {CONFIG_MAXRECEIVE}"
    assert all(expected in keys for keys in run.config.restart_needed.values()), run.config.restart_needed
