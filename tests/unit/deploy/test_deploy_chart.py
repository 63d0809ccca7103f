"""The Helm chart (charts/ibstream), rendered offline: lint, Kubernetes schema validation, and the invariants that
keep a deployment safe (one executor, no secrets in ConfigMaps, non-root read-only pods with probes and resources).

Needs the `helm` binary that `ops/dev install` builds into .state/tools/bin (or one on PATH); without it every test
here is skipped, saying so. Each values file is rendered once per module.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ibstream.config import FLAT_NAMES, field_info
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "ibstream"
PRODUCTION = CHART / "examples" / "production.yaml"
#: The Kubernetes version manifests are rendered for and validated against (kubernetes-validate ships its schemas).
KUBE_VERSION = "1.34"
DEPLOYABLES = ("producer", "streams", "execution", "sink", "api", "agent0")
#: Port variables the chart sets that no Settings field reads yet: the deployable still has to serve its probes there.
PORT_SETTINGS_PENDING: set[str] = set()
#: Custom resources kubernetes-validate has no schema for; checked structurally below instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
NO_VALIDATOR = "kubernetes-validate not installed (dev extra: kubernetes-validate==1.37.0)"
SECRETISH = re.compile(r"(?i)(password|passwd|secret|token|private|credential|api[_-]?key|(^|_)key$|sasl)")


def _find_helm() -> str | None:
    local = ROOT / ".state" / "tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


HELM = _find_helm()
NO_HELM = "helm is not installed (ops/dev install builds it into .state/tools/bin with the machine's Go toolchain)"


@pytest.fixture(autouse=True, scope="module")
def _helm_present() -> None:
    require_tool(NO_HELM if HELM is None else None)


def helm(*args: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run(
        [HELM, *args, str(chart)], capture_output=True, text=True, timeout=60, env={**os.environ, "HELM_DEBUG": ""}
    )


def template(*args: str, chart: Path = CHART) -> subprocess.CompletedProcess[str]:
    return helm(
        "template", "ibstream", "--namespace", "trading", "--kube-version", f"{KUBE_VERSION}.0", *args, chart=chart
    )


def render(*args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    result = template(*args, chart=chart)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def refused(*args: str) -> str:
    """helm template with these args must fail; returns its error output."""
    result = template(*args)
    assert result.returncode != 0, f"helm template {' '.join(args)} rendered but should have been refused"
    return result.stderr


VALUES_FILES = {"default": (), "production": ("-f", str(PRODUCTION))}


@pytest.fixture(scope="module", params=list(VALUES_FILES))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(*VALUES_FILES[request.param])


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(*VALUES_FILES["production"])


@pytest.fixture(scope="module")
def default() -> list[dict[str, Any]]:
    return render()


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def by_component(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc for doc in of_kind(docs, kind)}


def deployables(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each deployable's workload (a Deployment, or a StatefulSet where it keeps state) by component."""
    return {**by_component(docs, "Deployment"), **by_component(docs, "StatefulSet")}


def workloads(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment, StatefulSet and Job."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


# --- lint and Kubernetes schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", list(VALUES_FILES))
def test_helm_lint_strict(values: str) -> None:
    result = helm("lint", "--strict", "--kube-version", f"{KUBE_VERSION}.0", *VALUES_FILES[values])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_manifest_validates_against_the_kubernetes_openapi_schema(rendered: list[dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason=NO_VALIDATOR)
    problems = []
    for doc in rendered:
        if doc["kind"] in CRD_KINDS:
            continue  # no OpenAPI schema for custom resources in kubernetes-validate; see the structural test below
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {error.message}")
    assert not problems, "\n".join(problems)


def test_the_validator_catches_a_broken_manifest(default: list[dict[str, Any]]) -> None:
    # Guards the test above against validating nothing (e.g. a schema lookup that silently accepts anything).
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason=NO_VALIDATOR)
    broken = copy.deepcopy(of_kind(default, "Deployment")[0])
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)


def test_custom_resources_are_structurally_sound(production: list[dict[str, Any]]) -> None:
    (monitor,) = of_kind(production, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "ibstream"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    (rule,) = of_kind(production, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    for group in rule["spec"]["groups"]:
        assert isinstance(group["name"], str) and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item), item
            assert isinstance(item["expr"], str) and item["expr"]
            assert set(item) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


# --- execution: never two executors --------------------------------------------------------------------------------


def test_execution_runs_exactly_one_replica_as_a_stateful_set(rendered: list[dict[str, Any]]) -> None:
    # A StatefulSet starts no replacement while the old pod may still run (a Deployment's ReplicaSet does, e.g. on
    # a node that stopped answering); its rolling update of one replica deletes the pod first, like Recreate.
    execution = deployables(rendered)["execution"]
    assert execution["kind"] == "StatefulSet"
    assert execution["spec"]["replicas"] == 1
    assert execution["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert execution["spec"]["podManagementPolicy"] == "OrderedReady"
    services = {s["metadata"]["name"] for s in of_kind(rendered, "Service")}
    assert execution["spec"]["serviceName"] in services


def test_the_journal_claim_keeps_its_name_so_an_upgrade_from_the_deployment_keeps_the_journal(
    default: list[dict[str, Any]],
) -> None:
    # The chart's own claim (not a volumeClaimTemplate, which would be a new, empty volume named state-…-0).
    execution = deployables(default)["execution"]
    assert "volumeClaimTemplates" not in execution["spec"]
    volumes = {v["name"]: v for v in execution["spec"]["template"]["spec"]["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": "ibstream-execution-state"}


def test_only_deployables_that_keep_state_run_as_stateful_sets(production: list[dict[str, Any]]) -> None:
    kinds = {component: doc["kind"] for component, doc in deployables(production).items()}
    assert kinds == {
        "producer": "Deployment",
        "streams": "Deployment",
        "execution": "StatefulSet",
        "sink": "Deployment",
        "api": "Deployment",
        "agent0": "StatefulSet",  # persistence.enabled: its plans' SQLite file
    }
    assert deployables(render())["agent0"]["kind"] == "Deployment"  # no volume by default: nothing to keep


def test_the_execution_journal_lives_on_a_kept_persistent_volume(rendered: list[dict[str, Any]]) -> None:
    (config_map,) = [c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    pod = deployables(rendered)["execution"]["spec"]["template"]["spec"]
    state = next(
        m["name"]
        for m in pod["containers"][0]["volumeMounts"]
        if m["mountPath"] == config_map["data"]["IBSTREAM_STATE_DIR"]
    )
    (volume,) = [v for v in pod["volumes"] if v["name"] == state]
    assert "emptyDir" not in volume
    claim = volume["persistentVolumeClaim"]["claimName"]
    pvc = {doc["metadata"]["name"]: doc for doc in of_kind(rendered, "PersistentVolumeClaim")}[claim]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert pvc["spec"]["resources"]["requests"]["storage"]


def test_production_mounts_the_journal_on_one_pod_only(production: list[dict[str, Any]]) -> None:
    pvcs = by_component(production, "PersistentVolumeClaim")
    assert pvcs["execution"]["spec"]["accessModes"] == ["ReadWriteOncePod"]


def test_the_journal_volume_can_be_turned_off_for_a_throwaway_cluster() -> None:
    docs = render("--set", "execution.persistence.enabled=false")
    pod = deployables(docs)["execution"]["spec"]["template"]["spec"]
    assert {"name": "state", "emptyDir": {}} in pod["volumes"]
    assert "execution" not in by_component(docs, "PersistentVolumeClaim")


@pytest.mark.parametrize(
    "override", ["execution.replicas=2", "execution.replicas=0", "execution.strategy=RollingUpdate"]
)
def test_the_schema_refuses_a_second_executor(override: str) -> None:
    error = refused("--set", override)
    key = override.split("=")[0].replace(".", "/")
    assert "values don't meet the specifications of the schema" in error
    assert f"/{key}" in error, error


def test_the_template_refuses_a_second_executor_even_without_the_schema() -> None:
    error = refused("--set", "execution.replicas=2", "--skip-schema-validation")
    assert "two order-placing executors" in error


def test_execution_stays_a_single_stateful_set_without_its_journal_volume() -> None:
    execution = deployables(render("--set", "execution.persistence.enabled=false"))["execution"]
    assert (execution["kind"], execution["spec"]["replicas"]) == ("StatefulSet", 1)


def test_streams_scale_up_to_the_partition_count() -> None:
    streams = deployables(render("--set", "streams.replicas=6"))["streams"]
    assert streams["spec"]["replicas"] == 6
    assert "/streams/replicas" in refused("--set", "streams.replicas=7")


def test_a_restarted_streams_container_keeps_its_group_membership_through_its_pod_name(
    rendered: list[dict[str, Any]],
) -> None:
    """Static membership: the instance id is the pod's name (unique per pod, kept by a container restart)."""
    for component, deployment in by_component(rendered, "Deployment").items():
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        if component == "streams":
            assert env["IBSTREAM_STREAMS_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        else:
            assert "IBSTREAM_STREAMS_INSTANCE_ID" not in env, component
    dynamic = by_component(render("--set", "streams.staticMembership=false"), "Deployment")["streams"]
    names = {e["name"] for e in dynamic["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "IBSTREAM_STREAMS_INSTANCE_ID" not in names


# --- values schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("kafak.bootstrapServers=b:9092", "additional properties 'kafak' not allowed"),
        ("producer.replica=1", "additional properties 'replica' not allowed"),
        ("api.resources.limits.memroy=1Gi", "additional properties 'memroy' not allowed"),
    ],
)
def test_a_typo_in_values_fails_with_a_schema_message(override: str, message: str) -> None:
    assert message in refused("--set", override)


@pytest.mark.parametrize(
    "override",
    [
        "config.IBSTREAM_CLICKHOUSE_PASSWORD=hunter2",
        "config.IBSTREAM_API_JWT_SECRET=0123456789abcdef0123456789abcdef",
        "config.IBSTREAM_KAFKA_CLIENT_CONFIG={}",
        "api.env.IBSTREAM_SCHEMA_REGISTRY_PASSWORD=x",
        "clickhouse.url=https://user:pw@clickhouse:8443",
        "schemaRegistry.url=https://user:pw@registry",
    ],
)
def test_the_schema_refuses_secret_values_in_plain_config(override: str) -> None:
    assert "values don't meet the specifications of the schema" in refused("--set-string", override)


def test_non_root_ids_only() -> None:
    assert "/podSecurity/runAsUser" in refused("--set", "podSecurity.runAsUser=0")


# --- no secret values outside Secrets -----------------------------------------------------------------------------


def secret_findings(docs: list[dict[str, Any]]) -> list[str]:
    """Secret-looking keys, credentials in URLs and secret-looking fields inside values of settings ConfigMaps."""
    findings = []
    for config_map in of_kind(docs, "ConfigMap"):
        if config_map["metadata"].get("labels", {}).get("grafana_dashboard"):
            continue  # dashboard JSON, not settings
        name = config_map["metadata"]["name"]
        for key, value in (config_map.get("data") or {}).items():
            if SECRETISH.search(key):
                findings.append(f"{name}: key {key}")
            if re.search(r"://[^/@\s]+:[^/@\s]*@", str(value)):
                findings.append(f"{name}: {key} carries credentials in a URL")
            if re.search(r"(?i)(password|secret|token)[\"']?\s*[:=]", str(value)):
                findings.append(f"{name}: {key} embeds a secret field")
    return findings


def test_configmaps_hold_no_secret_values(rendered: list[dict[str, Any]]) -> None:
    assert not secret_findings(rendered)


@pytest.mark.parametrize(
    "override",
    [
        "config.IBSTREAM_CLICKHOUSE_PASSWORD=hunter2",
        "clickhouse.url=https://user:pw@clickhouse:8443",
        'config.IBSTREAM_KAFKA_SETTINGS={"sasl.password": "x"}',
    ],
)
def test_the_configmap_scan_finds_a_planted_secret(override: str) -> None:
    # Bypass the schema (which refuses these) to prove the scan above would notice a leak.
    assert secret_findings(render("--skip-schema-validation", "--set-string", override))


def test_secret_looking_env_vars_come_from_secret_refs(rendered: list[dict[str, Any]]) -> None:
    for name, pod in workloads(rendered):
        for container in pod["containers"]:
            for env in container.get("env", []):
                if SECRETISH.search(env["name"]) or env["name"].endswith("_ACCOUNT"):
                    assert "value" not in env, f"{name}: {env['name']} has a literal value"
                    assert "secretKeyRef" in env["valueFrom"], f"{name}: {env['name']} not from a Secret"


def test_secret_references_reach_the_deployables_that_need_them(production: list[dict[str, Any]]) -> None:
    def secret_env(component: str) -> dict[str, tuple[str, str]]:
        container = deployables(production)[component]["spec"]["template"]["spec"]["containers"][0]
        return {
            e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in container["env"]
            if "secretKeyRef" in e.get("valueFrom", {})  # not streams' instance id (the pod's name)
        }

    values = yaml.safe_load(PRODUCTION.read_text())["secrets"]
    assert secret_env("sink")["IBSTREAM_CLICKHOUSE_PASSWORD"] == tuple(values["clickhousePassword"].values())
    assert "IBSTREAM_CLICKHOUSE_PASSWORD" not in secret_env("execution")
    assert secret_env("execution")["IBSTREAM_EXECUTION_ACCOUNT"] == ("ibstream-ib", "account")
    assert "IBSTREAM_EXECUTION_ACCOUNT" not in secret_env("producer")
    assert "IBSTREAM_API_JWT_PUBLIC_KEY" in secret_env("api")
    for component in ("producer", "streams", "execution", "sink", "api"):
        assert secret_env(component)["IBSTREAM_KAFKA_CLIENT_CONFIG"] == ("ibstream-kafka", "client-config.json")
    # Agent0 talks to no topic, registry or table: it gets only the key it verifies tokens with (issue #21).
    assert set(secret_env("agent0")) == {"IBSTREAM_API_JWT_PUBLIC_KEY"}
    agent0_pod = deployables(production)["agent0"]["spec"]["template"]["spec"]
    assert "kafka-tls" not in {volume["name"] for volume in agent0_pod["volumes"]}
    # Only streams presents the service token Agent0 requires.
    assert secret_env("streams")["IBSTREAM_AGENT0_TOKEN"] == tuple(values["agent0Token"].values())
    assert [
        c for c in ("producer", "execution", "sink", "api", "agent0") if "IBSTREAM_AGENT0_TOKEN" in secret_env(c)
    ] == []
    (job,) = of_kind(production, "Job")
    job_env = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "IBSTREAM_KAFKA_CLIENT_CONFIG" in job_env


def _kafka_identity(pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The pod's Kafka SASL variables → (secret, key)."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in pod["containers"][0].get("env", [])
        if e["name"].startswith("IBSTREAM_KAFKA_SASL_")
    }


def test_each_deployable_logs_in_to_kafka_as_its_own_principal(production: list[dict[str, Any]]) -> None:
    config = of_kind(production, "ConfigMap")
    assert any((c.get("data") or {}).get("IBSTREAM_KAFKA_SECURITY_PROTOCOL") == "SASL_SSL" for c in config)
    pods = {c: d["spec"]["template"]["spec"] for c, d in deployables(production).items()}
    (job,) = of_kind(production, "Job")
    pods["job"] = job["spec"]["template"]["spec"]
    assert set(pods) == {*DEPLOYABLES, "job", "agent0"}
    assert not _kafka_identity(pods.pop("agent0"))  # Agent0 touches no topic: no principal, no credentials
    for component, pod in pods.items():
        identity = _kafka_identity(pod)
        assert identity["IBSTREAM_KAFKA_SASL_USERNAME"] == (f"ibstream-kafka-{component}", "username"), component
        assert identity["IBSTREAM_KAFKA_SASL_PASSWORD"] == (f"ibstream-kafka-{component}", "password"), component


def test_without_sasl_no_deployable_gets_kafka_credentials(default: list[dict[str, Any]]) -> None:
    for name, pod in workloads(default):
        assert not _kafka_identity(pod), name


def test_sasl_without_a_deployables_own_principal_is_refused() -> None:
    message = refused("--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafkaIdentities.job.secretName=k-job")
    assert "kafkaIdentities.producer.secretName is required" in message


# --- pods: non-root, read-only, sized, probed ------------------------------------------------------------------------


def test_every_container_is_non_root_read_only_and_sized(rendered: list[dict[str, Any]]) -> None:
    for name, pod in workloads(rendered):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        # Service links would inject e.g. IBSTREAM_API_PORT=tcp://… for the Service "ibstream-api".
        assert pod["enableServiceLinks"] is False, name
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v}
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True and security.get("runAsUser", 1) != 0, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{name}: {bound}"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in empty_dirs, f"{name}: /tmp must be a writable volume"


def test_the_state_dir_is_a_writable_volume(rendered: list[dict[str, Any]]) -> None:
    (config_map,) = [c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    state_dir = config_map["data"]["IBSTREAM_STATE_DIR"]
    for name, pod in workloads(rendered):
        writable = {v["name"] for v in pod["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts.get(state_dir) in writable, f"{name}: {state_dir} is not a writable volume"


def test_every_deployment_has_http_probes_on_its_port(rendered: list[dict[str, Any]]) -> None:
    for component, deployment in deployables(rendered).items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        (port,) = container["ports"]
        assert port["name"] == "http"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["IBSTREAM_HEALTH_PORT"] == str(port["containerPort"]), component
        for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")):
            assert container[probe]["httpGet"] == {"path": path, "port": "http"}, f"{component} {probe}"


def test_ports_agree_with_the_settings_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    fields = FLAT_NAMES
    for component in DEPLOYABLES:
        block = values[component]
        for variable in (block["portEnv"], block["bindEnv"]):
            if not variable:
                continue
            field = variable.removeprefix("IBSTREAM_").lower()
            if field not in fields:
                assert variable in PORT_SETTINGS_PENDING, f"{component}: {variable} is not a setting"
                continue
            if variable == block["portEnv"]:
                assert field_info(field).default == block["port"], f"{component}: {variable} default differs"
    assert len({values[c]["port"] for c in DEPLOYABLES}) == len(DEPLOYABLES), "two deployables share a port"


def test_every_deployable_has_service_pdb_and_network_policy(rendered: list[dict[str, Any]]) -> None:
    deployments = deployables(rendered)
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        assert set(by_component(rendered, kind)) == set(deployments), kind
    for component, service in by_component(rendered, "Service").items():
        selector = deployments[component]["spec"]["selector"]["matchLabels"]
        assert service["spec"]["selector"] == selector
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_only_streams_pods_of_the_release_reach_agent0(rendered: list[dict[str, Any]]) -> None:
    policies = by_component(rendered, "NetworkPolicy")
    (own,) = [peer for peer in policies["agent0"]["spec"]["ingress"][0]["from"] if "podSelector" in peer]
    assert own["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "streams"
    (api_own,) = [peer for peer in policies["api"]["spec"]["ingress"][0]["from"] if "podSelector" in peer]
    assert "app.kubernetes.io/component" not in api_own["podSelector"]["matchLabels"]  # the others: the release


def test_agent0_asks_the_releases_api_about_runs(rendered: list[dict[str, Any]]) -> None:
    (config_map,) = [c for c in of_kind(rendered, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    api_url = config_map["data"]["IBSTREAM_AGENT0_API_URL"]
    (api_service,) = [s for s in of_kind(rendered, "Service") if s["metadata"]["name"].endswith("-api")]
    assert api_url == f"http://{api_service['metadata']['name']}:{api_service['spec']['ports'][0]['port']}"


def test_deployables_run_their_cli_command(rendered: list[dict[str, Any]]) -> None:
    for component, deployment in deployables(rendered).items():
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["run", component]


def test_embedded_warehouse_runs_the_sink_inside_one_api_pod(default: list[dict[str, Any]]) -> None:
    deployments = deployables(default)
    assert "sink" not in deployments
    api = deployments["api"]
    assert api["spec"]["replicas"] == 1 and api["spec"]["strategy"] == {"type": "Recreate"}
    assert "--with-sink" in api["spec"]["template"]["spec"]["containers"][0]["args"]


def test_a_clickhouse_server_gets_its_own_sink(production: list[dict[str, Any]]) -> None:
    deployments = deployables(production)
    assert deployments["sink"]["spec"]["replicas"] == 2
    assert "--with-sink" not in deployments["api"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert deployments["api"]["spec"]["replicas"] == 3


def test_topics_are_ensured_by_a_pre_install_and_pre_upgrade_hook(rendered: list[dict[str, Any]]) -> None:
    (job,) = of_kind(rendered, "Job")
    hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
    assert hooks == {"pre-install", "pre-upgrade"}
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["topics", "ensure"]
    # The ConfigMap does not exist yet when a pre-install hook runs: the Job must carry its settings inline.
    assert "envFrom" not in container
    assert "IBSTREAM_KAFKA_BOOTSTRAP_SERVERS" in {e["name"] for e in container["env"]}


# --- alert rules and dashboards ----------------------------------------------------------------------------------


def test_chart_copies_equal_their_sources() -> None:
    pairs = [
        (ROOT / "ops" / "alerts", CHART / "files" / "alerts", "*.yaml"),
        (ROOT / "ops" / "dashboards", CHART / "files" / "dashboards", "*.json"),
    ]
    for source, copy_dir, pattern in pairs:
        sources = {p.name: p.read_bytes() for p in source.glob(pattern)}
        copies = {p.name: p.read_bytes() for p in copy_dir.glob(pattern)}
        assert copies == sources, (
            f"{copy_dir.relative_to(ROOT)} differs from {source.relative_to(ROOT)}: run charts/sync"
        )


def test_alert_rules_name_the_required_alerts_with_existing_runbooks() -> None:
    rules = {
        rule["alert"]: rule
        for path in (ROOT / "ops" / "alerts").glob("*.yaml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert rules["IBStreamIBDisconnected"]["expr"] == "ibstream_ib_connected == 0"
    assert rules["IBStreamIBDisconnected"]["for"] == "1m"
    assert rules["IBStreamStaleFeed"]["expr"] == "ibstream_feed_staleness_seconds > 60"
    assert rules["IBStreamStaleFeed"]["for"] == "1m"
    for name, rule in rules.items():
        runbook = rule["annotations"]["runbook_url"]
        assert runbook.startswith("ops/runbooks/") and runbook.endswith(".md"), name
        assert (ROOT / runbook).is_file(), f"{name}: {runbook} does not exist"


def test_the_prometheus_rule_renders_every_rule_group(production: list[dict[str, Any]]) -> None:
    (rule,) = of_kind(production, "PrometheusRule")
    base = yaml.safe_load(PRODUCTION.read_text())["prometheusRule"]["runbookBaseUrl"]
    expected = [
        group
        for path in sorted((CHART / "files" / "alerts").glob("*.yaml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    for group in expected:
        for item in group["rules"]:
            if "runbook_url" in item.get("annotations", {}):
                item["annotations"]["runbook_url"] = base + item["annotations"]["runbook_url"]
    assert rule["spec"]["groups"] == expected


def test_dashboards_become_labelled_config_maps(tmp_path: Path) -> None:
    chart = tmp_path / "ibstream"
    shutil.copytree(CHART, chart)
    dashboards = chart / "files" / "dashboards"
    dashboards.mkdir(parents=True, exist_ok=True)
    board = {"title": "ibstream feed", "panels": [{"type": "timeseries", "title": "{{ not a template }}"}]}
    (dashboards / "ibstream_feed.json").write_text(json.dumps(board))
    docs = render("--set", "dashboards.enabled=true", chart=chart)
    (config_map,) = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("feed")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["ibstream_feed.json"]) == board
    assert not [c for c in of_kind(render(chart=chart), "ConfigMap") if "dashboard" in c["metadata"]["name"]]


# --- ingress: the API and its console ----------------------------------------------------------------------------


def test_no_ingress_unless_asked_for(default: list[dict[str, Any]]) -> None:
    assert of_kind(default, "Ingress") == []


def test_production_routes_one_tls_host_to_the_api_service(production: list[dict[str, Any]]) -> None:
    (ingress,) = of_kind(production, "Ingress")
    values = yaml.safe_load(PRODUCTION.read_text())["ingress"]
    assert ingress["spec"]["ingressClassName"] == values["className"]
    assert ingress["spec"]["tls"] == [{"hosts": [values["host"]], "secretName": values["tls"]["secretName"]}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == values["host"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")  # the API's /v1 and the console's /console
    (api_service,) = [s for s in of_kind(production, "Service") if s["metadata"]["name"] == "ibstream-api"]
    (port,) = api_service["spec"]["ports"]
    assert path["backend"]["service"] == {"name": "ibstream-api", "port": {"name": port["name"]}}


def test_an_ingress_without_a_host_is_refused() -> None:
    assert "/ingress/host" in refused("--set", "ingress.enabled=true")
    assert "ingress.host is required" in refused("--set", "ingress.enabled=true", "--skip-schema-validation")


def test_an_ingress_without_the_api_service_is_refused() -> None:
    args = ("--set", "ingress.enabled=true", "--set", "ingress.host=trading.test", "--set", "api.service.enabled=false")
    assert "needs api.enabled and api.service.enabled" in refused(*args)
