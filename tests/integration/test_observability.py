"""The dashboard and the alerts that ship (deploy/grafana, deploy/prometheus), against real parts:
promtool runs the rules' unit tests, and a real Prometheus (Debian's ``prometheus``) scrapes a
real aiges (signed callers, registered in a real etcd) loaded by ``aiges xtest`` with failing
calls, evaluates a test copy of the rules (``for:`` shortened to seconds, evaluated every second),
and answers every panel's query of the dashboard.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from conftest import ROOT, WRAPPERS, Server, free_port, require_tool, wait_for

from aiges.client import AigesCallError, Client, SigningKey
from aiges.metrics import StateCollector

RULES = ROOT / "deploy" / "prometheus" / "aiges-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "aiges-rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "aiges.json"
GPU_METRICS = {"aiges_gpu_utilization_ratio", "aiges_gpu_memory_used_bytes", "aiges_gpu_memory_total_bytes"}
KEYS = """
[[app]]
app_id = "shop"
api_key = "key-shop"
api_secret = "secret-shop"
"""
SHOP = SigningKey("key-shop", "secret-shop")


def panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\baiges_[a-z0-9_]+", expr))


# -- promtool -------------------------------------------------------------------------------------


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_rules_pass_promtool_and_their_unit_tests():
    checked = promtool("check", "rules", str(RULES), cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS), cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {rule.get("alert") for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    tests = RULE_TESTS.read_text()
    assert {name for name in names if name} <= set(re.findall(r"alertname: (\w+)", tests))  # each alert tested


def test_promtool_fails_a_rule_test_whose_expectation_is_wrong(tmp_path):
    """The unit tests can fail: the same tests, with the error ratio expected at 20%."""
    (tmp_path / "aiges-rules.yaml").write_text(RULES.read_text())
    wrong = RULE_TESTS.read_text().replace("value: 0.1\n", "value: 0.2\n", 1)
    assert wrong != RULE_TESTS.read_text()
    (tmp_path / "wrong.test.yaml").write_text(wrong)
    tested = promtool("test", "rules", "wrong.test.yaml", cwd=tmp_path)
    assert tested.returncode != 0 and "aiges:request_errors:ratio_rate5m" in tested.stdout + tested.stderr


# -- the dashboard's shape --------------------------------------------------------------------------


def test_the_dashboard_is_well_formed_and_aggregates_by_label():
    """Unique ids, on a 24-column grid without overlaps, every query on the datasource variable
    and filtered by the job and instance variables, and aggregated with ``sum by``/``avg by``/
    ``max by`` (or ``histogram_quantile`` over one), so a label added later (``service``) does not
    split a panel into series it does not expect."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            selected = len(re.findall(r'\baiges_[a-z0-9_]+\{job=~"\$job", instance=~"\$instance"', expr))
            assert selected == len(re.findall(r"\baiges_[a-z0-9_]+", expr)), expr
            assert re.match(r"^\(?(sum|avg|max|histogram_quantile)\b", expr), expr


def test_the_gpu_panels_name_what_the_collector_exports():
    """No GPU here: the GPU panels' metrics are checked against what ``StateCollector`` makes of an
    NVML reading (a device's utilisation and memory), the only place they come from."""
    state = {
        "licences_total": 1,
        "licences_used": 0,
        "sessions": 0,
        "inflight": 0,
        "workers": 1,
        "workers_ready": 1,
        "health": "SERVING",
        "worker_restarts": 0,
    }
    reading = [{"index": 0, "name": "NVIDIA H100", "utilization": 0.5, "memory_used": 1, "memory_total": 2}]
    exported = {metric.name for metric in StateCollector(lambda: state, lambda: reading).collect()}
    used = {name for panel in panels() for t in panel["targets"] for name in metric_names(t["expr"])}
    assert exported >= GPU_METRICS and used >= GPU_METRICS
    assert not GPU_METRICS & {m.name for m in StateCollector(lambda: state, list).collect()}  # absent, not 0


# -- a real pipeline ---------------------------------------------------------------------------------


class Prometheus:
    """A real Prometheus on a free port, scraping ``targets`` every second and evaluating
    ``rules`` every second."""

    def __init__(self, workdir: Path, targets: list[str], rules: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "aiges", "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                require_tool("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._ready, timeout=60, interval=0.2)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{self.log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                answer = json.loads(reply.read())
        except urllib.error.HTTPError as exc:  # a bad query: 400 with the parser's error
            answer = json.loads(exc.read())
        if answer["status"] != "success":
            raise AssertionError(f"{path} {params}: {answer.get('errorType')}: {answer.get('error')}")
        return answer["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.api("query", query=expr)["result"]

    def firing(self, alert: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == alert and a["state"] == "firing"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def quick_rules(path: Path) -> Path:
    """The shipped rules with every ``for:`` at 2 s, so that alerts fire within the test."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    path.write_text(yaml.safe_dump(rules))
    return path


def grafana_variables(expr: str) -> str:
    """The dashboard's variables as Grafana fills them with "All" selected."""
    return expr.replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*")


def xtest_config(path: Path, address: str) -> Path:
    (path.parent / "sample.txt").write_text("load")
    path.write_text(f"""
[xtest]
taddrs = "{address}"
[svcMode]
multiThr = 2
timeout = 5000
[header]
appid = "shop"
[parameter]
mode = "flaky"
[data]
payload = "in1"
expect = "out1"
[in1]
inputSrc = "sample.txt"
name = "text"
type = "text"
[out1]
name = "text"
type = "text"
""")
    return path


@pytest.fixture
def pipeline(tmp_path, etcd):
    """aiges (the observed wrapper, [auth] mode hmac, registered in etcd, 8 licences) and a
    Prometheus scraping it with the quick rules."""
    (tmp_path / "keys.toml").write_text(KEYS)
    metrics_port = free_port()
    server = Server(
        tmp_path,
        WRAPPERS / "observed",
        metrics_port=metrics_port,
        licences=8,
        exec_timeout_ms=1500,
        extra=f'[auth]\nmode = "hmac"\nkeys = "keys.toml"\n'
        f'[registry]\nbackend = "etcd"\nendpoints = "{etcd}"\nttl = 5\n',
    )
    server.start()
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{metrics_port}"], quick_rules(tmp_path / "rules.yaml"))
    try:
        yield server, prometheus, f"127.0.0.1:{metrics_port}"
    finally:
        prometheus.stop()
        server.stop()


def test_prometheus_records_alerts_and_answers_every_panel(pipeline, tmp_path):
    server, prometheus, target = pipeline
    wait_for(lambda: prometheus.query(f'up{{instance="{target}"}} == 1'), timeout=30, interval=0.2)
    wait_for(lambda: prometheus.query("aiges_registry_registered == 1"), timeout=30, interval=0.2)

    with Client(server.address, signing=SHOP) as client:
        sessions = [client.session({"text": b"open"}, headers={"appid": "shop"}, expect=["text"]) for _ in range(3)]
        for session in sessions:
            session.write({"text": b"more"})
        config = xtest_config(tmp_path / "xtest.toml", server.address)
        load = subprocess.run(
            [
                *(sys.executable, "-m", "aiges", "xtest", "-c", str(config), "--live-every", "0"),
                *("--api-key", "key-shop", "--api-secret", "secret-shop"),
                *("--rate", "40", "--duration", "6"),  # several scrapes see the errors grow
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert load.returncode == 1 and "10909" in load.stdout, load.stdout + load.stderr  # a third fail
        stranger = Client(server.address, signing=SigningKey("key-shop", "not-the-secret"))
        with stranger, pytest.raises(grpc.RpcError, match="10133"):  # refused: aiges_auth_refused_total
            stranger.once({"text": b"x"}, expect=["text"])

        # a recording rule: 3 open sessions hold 3 of the 8 licences
        def licence_ratio() -> float | None:
            result = prometheus.query(f'aiges:licences_used:ratio{{instance="{target}"}}')
            return float(result[0]["value"][1]) if result else None

        wait_for(lambda: licence_ratio() == 3 / 8, timeout=30, interval=0.2)

        def error_ratio() -> float:
            result = prometheus.query(f'aiges:request_errors:ratio_rate5m{{instance="{target}"}}')
            return float(result[0]["value"][1]) if result else 0.0

        # every third call fails; rate() does not count the first sample of the errors' series
        # (made by the first failure), hence a range around 1/3
        wait_for(lambda: 0.2 < error_ratio() < 0.4, timeout=30, interval=0.2)

        # an alert that fires when the wrapper fails
        [errors] = wait_for(lambda: prometheus.firing("AigesErrorRatioHigh"), timeout=30, interval=0.2)
        assert errors["labels"]["instance"] == target and errors["labels"]["severity"] == "warning"
        assert "of requests fail" in errors["annotations"]["summary"]
        for session in sessions:
            session.close()

        # a hung wrapper: 10102 once exec_timeout_ms passes, its worker replaced
        with pytest.raises(AigesCallError) as hung:
            client.once({"text": b"x"}, params={"mode": "hang"}, headers={"appid": "shop"}, expect=["text"])
        assert hung.value.code == 10102
    [alert] = wait_for(lambda: prometheus.firing("AigesWorkerHung"), timeout=30, interval=0.2)
    assert alert["labels"]["instance"] == target
    server.wait_serving()
    assert not prometheus.firing("AigesRegistrationLost")

    # every panel's query parses and returns data; no panel names a metric Prometheus lacks
    wait_for(lambda: prometheus.query("sum(increase(aiges_worker_restarts_total[1m])) > 0"), timeout=30, interval=0.2)
    known = set(prometheus.api("label/__name__/values"))
    has_gpu = bool(GPU_METRICS & known)
    empty = []
    for panel in panels():
        for target_query in panel["targets"]:
            expr = grafana_variables(target_query["expr"])
            names = metric_names(expr)
            gpu_only = names <= GPU_METRICS
            if not (gpu_only and not has_gpu):
                assert names <= known, f"{panel['title']}: {sorted(names - known)} not in Prometheus"
            if not prometheus.query(expr) and not (gpu_only and not has_gpu):
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, "panels without data:\n" + "\n".join(empty)
    # what the check relies on: a bad query is an error, an unknown metric has no data
    assert not prometheus.query("sum(aiges_no_such_metric)")
    assert "aiges_no_such_metric" not in prometheus.api("label/__name__/values")
    with pytest.raises(AssertionError, match="bad_data"):
        prometheus.query("sum by (code (aiges_requests_total)")


def test_prometheus_sees_aiges_registration_lost_when_etcd_goes(tmp_path):
    """``aiges_registry_registered`` goes to 0 when etcd stops answering, and the alert fires."""
    binary = require_tool("etcd")
    client_port, peer_port = free_port(), free_port()
    endpoint = f"127.0.0.1:{client_port}"
    etcd_log = (tmp_path / "etcd.log").open("wb")
    etcd = subprocess.Popen(
        [
            binary,
            *("--name", "lost", "--data-dir", str(tmp_path / "etcd-data")),
            *("--listen-client-urls", f"http://{endpoint}", "--advertise-client-urls", f"http://{endpoint}"),
            *("--listen-peer-urls", f"http://127.0.0.1:{peer_port}"),
            *("--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}"),
            *("--initial-cluster", f"lost=http://127.0.0.1:{peer_port}"),
        ],
        stdout=etcd_log,
        stderr=subprocess.STDOUT,
    )
    metrics_port = free_port()
    server = Server(
        tmp_path,
        WRAPPERS / "observed",
        metrics_port=metrics_port,
        extra=f'[registry]\nbackend = "etcd"\nendpoints = "{endpoint}"\nttl = 3\n',
    )
    prometheus = None
    try:
        server.start()
        prometheus = Prometheus(tmp_path, [f"127.0.0.1:{metrics_port}"], quick_rules(tmp_path / "rules.yaml"))
        wait_for(lambda: prometheus.query("aiges_registry_registered == 1"), timeout=60, interval=0.2)
        assert not prometheus.firing("AigesRegistrationLost")
        etcd.terminate()
        etcd.wait(20)
        [alert] = wait_for(lambda: prometheus.firing("AigesRegistrationLost"), timeout=60, interval=0.2)
        assert alert["labels"]["backend"] == "etcd" and alert["labels"]["severity"] == "critical"
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()
        if etcd.poll() is None:
            etcd.kill()
            etcd.wait()
        etcd_log.close()
