"""Packaging: the Dockerfiles lint clean, the compose file and the Helm chart are valid, and the
configs they ship are ones ``aiges serve`` accepts and serves with.

No Docker engine or Kubernetes cluster exists here: images are linted (hadolint), not built; the
chart is linted and rendered by a real helm and each manifest is checked against the Kubernetes
schemas (kubernetes-validate --strict), not applied.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
import yaml
from conftest import ROOT, free_port, health_status, require_tool, wait_for
from grpc_health.v1 import health_pb2

from aiges.config import load_config, tomllib

CHART = ROOT / "deploy" / "helm" / "aiges"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)


def aiges(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return run(sys.executable, "-m", "aiges", *args, cwd=cwd)


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    return run(require_tool("hadolint"), "--failure-threshold", "warning", str(dockerfile))


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_base_images_lint_clean(flavour):
    result = hadolint(ROOT / "docker" / flavour / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_business_dockerfile_from_aiges_new_lints_clean(tmp_path):
    assert aiges("new", "shop", cwd=tmp_path).returncode == 0
    result = hadolint(tmp_path / "shop" / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install aiges\n")
    assert hadolint(bad).returncode != 0


def test_compose_file_matches_the_compose_spec():
    checker = require_tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker" / "compose.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert compose["services"]["aiges"]["depends_on"]["etcd"]["condition"] == "service_healthy"


def test_the_secure_compose_setup_serves_under_mtls_and_its_healthcheck_answers(serve, tmp_path):
    """docker/compose.secure.yaml on top of compose.yaml: its config, with the certificates its
    make-certs.sh makes and the example keys, serves a real server here; the HEALTHCHECK it
    sets answers, a client with the client certificate is served (its app is named by the
    certificate), and one without a certificate is refused."""
    from aiges.client import Client, TlsOptions

    overlay = ROOT / "docker" / "compose.secure.yaml"
    checker = require_tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(overlay))
    assert result.returncode == 0, result.stdout + result.stderr
    aiges_service = yaml.safe_load(overlay.read_text())["services"]["aiges"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":") for volume in aiges_service["volumes"])
    folder = tmp_path / "secure"
    shutil.copytree(ROOT / "docker" / "compose" / "secure", folder)
    assert run(str(folder / "make-certs.sh")).returncode == 0
    shutil.copy(folder / "auth" / "keys.example.toml", folder / "auth" / "keys.toml")
    in_container = {target: folder / Path(source).relative_to("./compose/secure") for source, target in mounts.items()}
    port, metrics = free_port(), free_port()
    text = (ROOT / "docker" / "compose" / "secure" / "aiges.toml").read_text()
    for target, source in in_container.items():
        text = text.replace(target, str(source))
    text = (
        text.replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
        .replace("port = 5090", f"port = {port}")
        .replace("port = 9090", f"port = {metrics}")
        .replace('listen = "0.0.0.0:8080"', f'listen = "127.0.0.1:{free_port()}"')
        .replace('wrapper = "/home/aiges"', f'wrapper = "{ROOT / "demo" / "echo"}"')
        .replace('backend = "etcd"', 'backend = "none"')
    )
    server = serve("", config=text, port=port, wait=False)
    check = aiges_service["healthcheck"]["test"]
    assert check[:3] == ["CMD", "aiges", "health"]
    command = [
        str(server.config_path)
        if part == "/home/aiges/aiges.toml"
        else part.replace("/etc/aiges/tls", str(in_container["/etc/aiges/tls"]))
        for part in check[3:]
    ]
    wait_for(lambda: aiges("health", *command).returncode == 0, timeout=60, interval=0.5)
    ca = str(folder / "ca" / "ca.crt")
    client_cert = TlsOptions(
        ca=ca, cert=str(folder / "client" / "client.pem"), key=str(folder / "client" / "client.key")
    )
    with Client(server.address, tls=client_cert) as client:
        assert client.once({"text": b"safe"}, expect=["text"])["text"] == b"safe"
    with Client(server.address, tls=TlsOptions(ca=ca), timeout=5) as client, pytest.raises(grpc.RpcError):
        client.once({"text": b"no certificate"}, expect=["text"])


def test_shipped_configs_load():
    image = load_config(ROOT / "docker" / "aiges.toml")
    assert image.service.port == 5090 and image.metrics.port == 9090 and image.worker.gpus == "auto"
    composed = load_config(ROOT / "docker" / "compose" / "aiges.toml")
    assert composed.registry.backend == "etcd" and "etcd:2379" in composed.registry.endpoints


def helm_template(*values: str, api_versions: tuple[str, ...] = ()) -> list[dict]:
    """The chart rendered with ``--set`` values; ``api_versions`` are APIs the cluster is taken
    to have beyond Kubernetes' own (such as the Prometheus Operator's ``monitoring.coreos.com/v1``)."""
    helm = require_tool("helm")
    args = [a for value in values for a in ("--set", value)]
    args += [a for version in api_versions for a in ("--api-versions", version)]
    result = run(helm, "template", "shop", str(CHART), *args)
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def by_kind(documents: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for document in documents:
        kinds.setdefault(document["kind"], []).append(document)
    return kinds


def test_chart_lints():
    result = run(require_tool("helm"), "lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


SECURE = (
    "security.tls.secretName=shop-tls",
    "security.tls.mutual=true",
    "security.auth.mode=hmac",
    "security.auth.keysSecretName=shop-keys",
    "security.cors=https://console.example",
)


MONITORING = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
)
OPERATOR = ("monitoring.coreos.com/v1",)
PLATFORM = (
    "ingress.enabled=true",
    "ingress.className=nginx",
    "ingress.host=shop.example",
    "ingress.grpc.host=grpc.shop.example",
    "ingress.tls.secretName=shop-tls",
    "configCentre.enabled=true",
    "configCentre.endpoints=etcd-0.etcd:2379\\,etcd-1.etcd:2379",
    "configCentre.project=shop",
    "configCentre.group=canary",
)


@pytest.mark.parametrize(
    "values",
    [(), ("gpu.count=0",), ("autoscaling.enabled=true", "aiges.registry.backend=etcd"), SECURE, MONITORING, PLATFORM],
)
def test_chart_renders_manifests_valid_for_kubernetes(tmp_path, values):
    """kubernetes-validate has no schema for the operator's ServiceMonitor and PrometheusRule (it
    warns and passes them): ``test_chart_installs_monitoring_where_the_operator_is`` checks those."""
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(yaml.safe_dump_all(helm_template(*values, api_versions=OPERATOR)))
    validator = require_tool("kubernetes-validate")
    result = run(validator, "--strict", "--kubernetes-version", "1.30.0", str(manifests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_probes_drain_and_gpu_wiring():
    kinds = by_kind(helm_template())
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} <= set(kinds)
    assert "HorizontalPodAutoscaler" not in kinds
    pod = kinds["Deployment"][0]["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert "service" not in container["startupProbe"]["grpc"]  # ready once: wrapperInit finished
    assert len(pod["metadata"]["annotations"]["checksum/config"]) == 64
    assert container["livenessProbe"]["grpc"]["service"] == "aiges.liveness"
    assert "service" not in container["readinessProbe"]["grpc"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["spec"]["terminationGracePeriodSeconds"] == 5 + 30 + 15
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    services = {s["metadata"]["name"]: s["spec"] for s in kinds["Service"]}
    assert services["shop-aiges-headless"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in services["shop-aiges"]["ports"]} == {
        "grpc": 5090,
        "metrics": 9090,
        "http": 8080,
    }


def test_chart_installs_monitoring_where_the_operator_is(tmp_path):
    """Off by default; on, the dashboard ConfigMap always, the ServiceMonitor and PrometheusRule
    only where the cluster has the operator's CRDs. The PrometheusRule carries the rules of
    deploy/prometheus (which promtool accepts), the ConfigMap the dashboard's JSON, and the
    ServiceMonitor scrapes the Service's metrics port."""
    assert not {"ServiceMonitor", "PrometheusRule"} & set(by_kind(helm_template(api_versions=OPERATOR)))
    assert len(by_kind(helm_template(api_versions=OPERATOR))["ConfigMap"]) == 1
    without_operator = by_kind(helm_template(*MONITORING))
    assert not {"ServiceMonitor", "PrometheusRule"} & set(without_operator)
    kinds = by_kind(
        helm_template(
            *MONITORING,
            "monitoring.serviceMonitor.labels.release=kps",
            "monitoring.prometheusRule.labels.release=kps",
            api_versions=OPERATOR,
        )
    )
    [monitor] = kinds["ServiceMonitor"]
    [rule] = kinds["PrometheusRule"]
    assert monitor["metadata"]["labels"]["release"] == rule["metadata"]["labels"]["release"] == "kps"
    [endpoint] = monitor["spec"]["endpoints"]
    service = next(s for s in kinds["Service"] if s["metadata"]["name"] == "shop-aiges")
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    rules_file = ROOT / "deploy" / "prometheus" / "aiges-rules.yaml"
    assert rule["spec"] == yaml.safe_load(rules_file.read_text())
    rendered = tmp_path / "rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    checked = run(require_tool("promtool"), "check", "rules", str(rendered))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    dashboard = next(c for c in kinds["ConfigMap"] if c["metadata"]["name"] == "shop-aiges-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["aiges.json"]) == json.loads(
        (ROOT / "deploy" / "grafana" / "aiges.json").read_text()
    )


def test_chart_without_gpus_or_with_autoscaling():
    cpu = by_kind(helm_template("gpu.count=0"))
    limits = cpu["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits
    scaled = by_kind(helm_template("autoscaling.enabled=true", "aiges.drainSeconds=60"))
    assert scaled["HorizontalPodAutoscaler"][0]["spec"]["maxReplicas"] == 8
    deployment = scaled["Deployment"][0]["spec"]
    assert "replicas" not in deployment
    assert deployment["template"]["spec"]["terminationGracePeriodSeconds"] == 5 + 60 + 15


def chart_config(*values: str) -> str:
    [config_map] = by_kind(helm_template(*values))["ConfigMap"]
    return config_map["data"]["aiges.toml"]


def test_chart_config_is_one_aiges_accepts(tmp_path):
    text = chart_config(
        "aiges.registry.backend=etcd",
        "aiges.registry.endpoints=etcd-0:2379",
        "aiges.licences=7",
        "aiges.drainSeconds=12",
    )
    assert tomllib.loads(text)["wrapper"] == {"model_dir": "/models"}
    path = tmp_path / "aiges.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.fc.max == 7 and config.aiges.drain_timeout_ms == 12000
    assert config.registry.backend == "etcd" and config.registry.endpoints == "etcd-0:2379"
    assert config.http_listen == "0.0.0.0:8080"
    path.write_text(chart_config("service.httpPort=0"))
    assert load_config(path).http_listen == ""


def test_server_serves_with_the_chart_config_and_answers_aiges_health(serve):
    """The chart's aiges.toml, pointed at the echo demo and free ports, serves; ``aiges health``
    (the images' HEALTHCHECK) and the liveness service the probes ask both answer."""
    port, metrics = free_port(), free_port()
    text = (
        chart_config()
        .replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
        .replace("port = 5090", f"port = {port}")
        .replace("port = 9090", f"port = {metrics}")
        .replace('listen = "0.0.0.0:8080"', f'listen = "127.0.0.1:{free_port()}"')
        .replace('wrapper = "/home/aiges"', f'wrapper = "{ROOT / "demo" / "echo"}"')
    )
    server = serve("", config=text, port=port)
    assert aiges("health", "--addr", server.address).returncode == 0
    assert health_status(server.address, "aiges.liveness") == SERVING
    with server.client() as client:
        assert client.once({"text": b"hi"}, expect=["text"])["text"] == b"hi"


def test_the_secure_chart_mounts_its_secrets_and_its_probes_answer_under_mtls(serve, tmp_path):
    """With TLS, mTLS and hmac: the Secrets are mounted as folders (so renewals reach the pod),
    the config names their files, and the probes (``aiges health`` in the pod, the kubelet's gRPC
    probe speaks no TLS) answer without credentials; run here against a real server with that
    config, its /etc/aiges files replaced by certificates made now."""
    from tls_certs import CertificateAuthority

    with pytest.raises(AssertionError, match="keysSecretName"):
        helm_template("security.auth.mode=hmac")
    kinds = by_kind(helm_template(*SECURE))
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"]["mountPath"] == "/etc/aiges/tls" and "subPath" not in mounts["tls"]
    assert mounts["auth"]["mountPath"] == "/etc/aiges/auth" and "subPath" not in mounts["auth"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"tls": "shop-tls", "auth": "shop-keys"}
    assert "grpc" not in container["readinessProbe"]

    folder = tmp_path / "etc"
    ca = CertificateAuthority(tmp_path / "ca")
    issued = ca.server()
    (folder / "tls").mkdir(parents=True)
    (folder / "auth").mkdir()
    for source, name in ((issued.cert, "tls.crt"), (issued.key, "tls.key"), (ca.path, "ca.crt")):
        (folder / "tls" / name).write_bytes(source.read_bytes())
    (folder / "auth" / "keys.toml").write_text('[[app]]\napp_id = "a"\napi_key = "k"\napi_secret = "s"\n')
    port, metrics = free_port(), free_port()
    text = (
        chart_config(*SECURE)
        .replace("/etc/aiges", str(folder))
        .replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
        .replace("port = 5090", f"port = {port}")
        .replace("port = 9090", f"port = {metrics}")
        .replace('listen = "0.0.0.0:8080"', f'listen = "127.0.0.1:{free_port()}"')
        .replace('wrapper = "/home/aiges"', f'wrapper = "{ROOT / "demo" / "echo"}"')
    )
    server = serve("", config=text, port=port, wait=False)

    def probe(name: str) -> subprocess.CompletedProcess:
        command = [
            part.replace("/etc/aiges", str(folder)).replace("/home/aiges/aiges.toml", str(server.config_path))
            for part in container[name]["exec"]["command"]
        ]
        assert command[:2] == ["aiges", "health"]
        return aiges(*command[1:])

    try:
        wait_for(lambda: probe("readinessProbe").returncode == 0, timeout=60, interval=0.5)
    except AssertionError:
        raise AssertionError(f"{probe('readinessProbe')}\n{server.log()}") from None
    assert probe("livenessProbe").returncode == 0 and probe("startupProbe").returncode == 0
    assert aiges("health", "--addr", server.address).returncode == 1  # plain text is not spoken


def test_aiges_health_fails_while_starting_and_when_nothing_listens(serve):
    server = serve("faulty", wait=False, wrapper_config={"init_delay": "3"})
    wait_for(lambda: health_status(server.address) == NOT_SERVING)
    starting = aiges("health", "--addr", server.address)
    assert starting.returncode == 1 and "NOT_SERVING" in starting.stdout
    live = aiges("health", "--addr", server.address, "--service", "aiges.liveness")
    assert live.returncode == 0
    nobody = aiges("health", "--addr", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert nobody.returncode == 1 and "UNAVAILABLE" in nobody.stderr


def test_kubernetes_validate_does_fail_an_unknown_field(tmp_path):
    bad = tmp_path / "service.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n")
    result = run(require_tool("kubernetes-validate"), "--strict", "--kubernetes-version", "1.30.0", str(bad))
    assert result.returncode != 0 and "portz" in result.stdout + result.stderr


def test_the_charts_ingresses_play_the_gateway_for_http_websocket_and_grpc():
    assert "Ingress" not in by_kind(helm_template())
    http, grpc_ingress = by_kind(helm_template(*PLATFORM))["Ingress"]
    assert http["spec"]["ingressClassName"] == "nginx" and http["spec"]["tls"][0]["secretName"] == "shop-tls"
    [rule] = http["spec"]["rules"]
    assert rule["host"] == "shop.example"
    assert rule["http"]["paths"][0]["backend"]["service"]["port"]["name"] == "http"
    assert grpc_ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/backend-protocol"] == "GRPC"
    assert grpc_ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["name"] == "grpc"
    assert grpc_ingress["spec"]["rules"][0]["host"] == "grpc.shop.example"
    with pytest.raises(AssertionError, match="needs service.httpPort"):
        helm_template("ingress.enabled=true", "service.httpPort=0")


def test_the_charts_config_centre_option_serves_from_etcd(etcd, tmp_path):
    """With configCentre.enabled the pod runs ``aiges serve --etcd ...``: that command, with the
    chart's own aiges.toml pushed to the group, serves (the emptyDir cache is written)."""
    values = ("configCentre.enabled=true", f"configCentre.endpoints={etcd}", "configCentre.project=shop")
    kinds = by_kind(helm_template(*values, "configCentre.group=canary"))
    pod = kinds["Deployment"][0]["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command[:4] == ["tini", "--", "aiges", "serve"]
    assert {"name": "config-cache", "emptyDir": {}} in pod["volumes"]
    with pytest.raises(AssertionError, match="configCentre.enabled needs"):
        helm_template("configCentre.enabled=true")
    port = free_port()
    text = (
        chart_config()
        .replace('host = "0.0.0.0"', 'host = "127.0.0.1"')
        .replace("port = 5090", f"port = {port}")
        .replace("port = 9090", "port = 0")
        .replace('listen = "0.0.0.0:8080"', 'listen = ""')
        .replace('wrapper = "/home/aiges"', f'wrapper = "{ROOT / "demo" / "echo"}"')
    )
    (tmp_path / "aiges.toml").write_text(text)
    scope = ("--etcd", etcd, "--project", "shop", "--group", "canary")
    assert aiges("config", "push", "-c", str(tmp_path / "aiges.toml"), *scope).returncode == 0
    argv = [a.replace("/var/cache/aiges", str(tmp_path / "cache")) for a in command[3:]]
    server = subprocess.Popen([sys.executable, "-m", "aiges", *argv], cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: health_status(f"127.0.0.1:{port}") == SERVING, 60, interval=0.2)
        assert (tmp_path / "cache" / "shop" / "canary" / "svcName.json").exists()
    finally:
        server.terminate()
        server.wait(30)


def test_chart_and_compose_take_the_list_of_services(tmp_path):
    """``services`` in the chart's values and compose.services.yaml's config are the list form:
    each renders to a config aiges loads into its services; without them, the one wrapper."""
    helm = require_tool("helm")
    services = (
        '[{"name":"embedding","wrapper":"/home/aiges/models/embedding","workers":1,"gpus":"0","licences":16},'
        '{"wrapper":"/home/aiges/models/digits","version":"v2","config":{"model_path":"/models/digits"}}]'
    )
    result = run(helm, "template", "shop", str(CHART), "--set-json", f"services={services}")
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    config_map = next(d for d in documents if d["kind"] == "ConfigMap")
    rendered = tmp_path / "aiges.toml"
    rendered.write_text(config_map["data"]["aiges.toml"])
    config = load_config(rendered)
    embedding, digits = config.specs()
    assert (embedding.name, embedding.worker.count, embedding.worker.gpus, embedding.fc.max) == (
        "embedding",
        1,
        "0",
        16,
    )
    assert (digits.name, digits.version, digits.wrapper_config["model_path"]) == ("", "v2", "/models/digits")
    assert digits.worker.gpus == "auto" and digits.fc.max == 100  # the chart's top-level sections, as defaults
    single = next(d for d in helm_template() if d["kind"] == "ConfigMap")
    assert (
        'wrapper = "/home/aiges"' in single["data"]["aiges.toml"] and "[[service]]" not in single["data"]["aiges.toml"]
    )

    checker = require_tool("check-jsonschema")
    overlay = ROOT / "docker" / "compose.services.yaml"
    result = run(checker, "--builtin-schema", "vendor.compose-spec", str(overlay))
    assert result.returncode == 0, result.stdout + result.stderr
    mounted = yaml.safe_load(overlay.read_text())["services"]["aiges"]["volumes"][0].split(":")[0]
    composed = load_config((ROOT / "docker" / mounted).resolve())
    assert [s.name for s in composed.specs()] == ["echo", "echo-small"]
    assert composed.registry.backend == "etcd" and composed.specs()[1].fc.max == 8
