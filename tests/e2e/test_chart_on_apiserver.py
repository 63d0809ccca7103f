"""The Helm chart installed on a real Kubernetes API server (tests/e2e/kube_control_plane.py: etcd, kube-apiserver,
controller-manager, scheduler, kwok's fake node): `helm install --wait` of the default values, an upgrade, an
uninstall, then `examples/production.yaml` with the prometheus-operator CRDs it needs.

What this proves beyond the offline render tests (tests/unit/deploy): the apiserver accepts every object (its own
validation and admission, and the CRDs' schemas for ServiceMonitor/PrometheusRule), the pre-install hook Job
completes, the controllers turn the workloads into scheduled pods that become Ready, PVCs bind, and helm's --wait,
upgrade and uninstall agree with all of it. kwok runs no containers: the deployables' own behaviour is not tested here.

One control plane serves the whole module; the default-values tests are one story in file order (install, upgrade,
uninstall and reinstall), the production example runs in its own namespace.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.kube_control_plane import FAKE_NODE, TOOLS, KubeControlPlane, find_binary, missing_reason
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "ibstream"
PRODUCTION = CHART / "examples" / "production.yaml"
CRDS = TOOLS / "share" / "crds"
RELEASE = "ibstream"
#: The workload kinds the chart renders (apps/v1).
WORKLOADS = ("Deployment", "StatefulSet")

pytestmark = pytest.mark.timeout(600)


def _missing() -> str | None:
    if find_binary("helm") is None:
        return "helm is not installed (ops/dev install builds it into .state/tools/bin)"
    if not CRDS.is_dir():
        return "the prometheus-operator CRDs are not installed (ops/dev install copies them into .state/tools/share)"
    return missing_reason()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeControlPlane]:
    require_tool(_missing())
    plane = KubeControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


def helm(cluster: KubeControlPlane, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(find_binary("helm")), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cluster.directory),
            "KUBECONFIG": str(cluster.credentials.kubeconfig),
            "HELM_CACHE_HOME": str(cluster.directory / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(cluster.directory / "helm" / "config"),
            "HELM_DATA_HOME": str(cluster.directory / "helm" / "data"),
        },
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}\n{cluster.log_tails()}"
    return result.stdout


def rendered(cluster: KubeControlPlane, namespace: str, *values: str) -> list[dict[str, Any]]:
    """The release's manifests as helm renders them (for Kubernetes 1.34, the version helm is built for)."""
    out = helm(cluster, "template", RELEASE, str(CHART), "--namespace", namespace, *values)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def claims_of(manifests: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    claims = [doc for doc in manifests if doc["kind"] == "PersistentVolumeClaim"]
    return [{**claim, "metadata": {**claim["metadata"], "namespace": namespace}} for claim in claims]


def provide_volumes(cluster: KubeControlPlane, manifests: list[dict[str, Any]], namespace: str) -> None:
    """The volumes an administrator would have ready for the release's claims (this cluster has no provisioner)."""
    reserved = {
        (pv["spec"]["claimRef"]["namespace"], pv["spec"]["claimRef"]["name"])
        for pv in cluster.api.items("/api/v1/persistentvolumes")
    }
    claims = claims_of(manifests, namespace)
    cluster.provide_volumes([c for c in claims if (namespace, c["metadata"]["name"]) not in reserved])


def workloads(cluster: KubeControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    """ "Kind/name" → object, for every Deployment and StatefulSet in the namespace."""
    found = {}
    for kind in WORKLOADS:
        for item in cluster.api.items(f"/apis/apps/v1/namespaces/{namespace}/{kind.lower()}s"):
            found[f"{kind}/{item['metadata']['name']}"] = item
    return found


def names(cluster: KubeControlPlane, path: str) -> set[str]:
    return {item["metadata"]["name"] for item in cluster.api.items(path)}


def assert_release_ready(cluster: KubeControlPlane, manifests: list[dict[str, Any]], namespace: str) -> None:
    """Every workload helm rendered runs its replicas Ready on the fake node; every claim is bound."""
    expected = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["replicas"] for d in manifests if d["kind"] in WORKLOADS
    }
    running = workloads(cluster, namespace)
    assert set(running) == set(expected)
    for key, replicas in expected.items():
        assert running[key]["status"].get("readyReplicas") == replicas, f"{key}: {running[key]['status']}"
    pods = cluster.api.items(f"/api/v1/namespaces/{namespace}/pods")
    ready = [p for p in pods if {"type": "Ready", "status": "True"} in _conditions(p)]
    assert len(ready) == sum(expected.values()) > 0
    assert {pod["spec"]["nodeName"] for pod in ready} == {FAKE_NODE}
    for claim in claims_of(manifests, namespace):
        name = claim["metadata"]["name"]
        bound = cluster.api.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}")
        assert bound["status"]["phase"] == "Bound", f"{name}: {bound['status']}"
    services = names(cluster, f"/api/v1/namespaces/{namespace}/services")
    assert services == {d["metadata"]["name"] for d in manifests if d["kind"] == "Service"}


def _conditions(pod: dict[str, Any]) -> list[dict[str, str]]:
    return [{"type": c["type"], "status": c["status"]} for c in pod["status"].get("conditions", [])]


def ingresses(cluster: KubeControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    items = cluster.api.items(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses")
    return {item["metadata"]["name"]: item for item in items}


def journal_claim(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{RELEASE}-execution-state"


# --- default values: install, upgrade, uninstall, reinstall ------------------------------------------------------

DEFAULT_NS = "trading"


def test_default_values_install_and_become_ready(cluster: KubeControlPlane) -> None:
    manifests = rendered(cluster, DEFAULT_NS)
    provide_volumes(cluster, manifests, DEFAULT_NS)
    helm(cluster, "install", RELEASE, str(CHART), "-n", DEFAULT_NS, "--create-namespace", "--wait", "--timeout", "4m")

    assert_release_ready(cluster, manifests, DEFAULT_NS)
    assert workloads(cluster, DEFAULT_NS)[f"StatefulSet/{RELEASE}-execution"]["spec"]["replicas"] == 1
    assert ingresses(cluster, DEFAULT_NS) == {}
    # The pre-install hook (topics ensure) ran to completion: helm deletes it only when it succeeded.
    assert names(cluster, f"/apis/batch/v1/namespaces/{DEFAULT_NS}/jobs") == set()


def test_upgrade_replaces_the_pods_and_keeps_the_journal(cluster: KubeControlPlane) -> None:
    journal_before = cluster.api.get(journal_claim(DEFAULT_NS))["metadata"]["uid"]
    pods_before = {p["metadata"]["uid"] for p in cluster.api.items(f"/api/v1/namespaces/{DEFAULT_NS}/pods")}
    values = ["--set", "config.IBSTREAM_SYMBOLS=AAPL\\,MSFT", "--set", "ingress.enabled=true"]
    values += ["--set", "ingress.host=trading.test"]
    manifests = rendered(cluster, DEFAULT_NS, *values)
    helm(cluster, "upgrade", RELEASE, str(CHART), "-n", DEFAULT_NS, *values, "--wait", "--timeout", "4m")

    assert_release_ready(cluster, manifests, DEFAULT_NS)
    pods_after = {p["metadata"]["uid"] for p in cluster.api.items(f"/api/v1/namespaces/{DEFAULT_NS}/pods")}
    assert not pods_before & pods_after, "a changed ConfigMap must replace every pod (checksum/config)"
    assert cluster.api.get(journal_claim(DEFAULT_NS))["metadata"]["uid"] == journal_before
    (ingress,) = ingresses(cluster, DEFAULT_NS).values()
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "trading.test"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": f"{RELEASE}-api", "port": {"name": "http"}}
    (last,) = yaml.safe_load(helm(cluster, "history", RELEASE, "-n", DEFAULT_NS, "--max", "1", "-o", "yaml"))
    assert (last["revision"], last["status"]) == (2, "deployed")


def test_uninstall_removes_the_release_but_keeps_the_journal(cluster: KubeControlPlane) -> None:
    journal = cluster.api.get(journal_claim(DEFAULT_NS))["metadata"]["uid"]
    helm(cluster, "uninstall", RELEASE, "-n", DEFAULT_NS, "--wait", "--timeout", "2m")

    assert workloads(cluster, DEFAULT_NS) == {}
    assert names(cluster, f"/api/v1/namespaces/{DEFAULT_NS}/services") == set()
    assert ingresses(cluster, DEFAULT_NS) == {}
    assert cluster.api.get(journal_claim(DEFAULT_NS))["metadata"]["uid"] == journal

    # Installed again, the executor finds the same journal (helm adopts the kept claim).
    manifests = rendered(cluster, DEFAULT_NS)
    helm(cluster, "install", RELEASE, str(CHART), "-n", DEFAULT_NS, "--wait", "--timeout", "4m")
    assert_release_ready(cluster, manifests, DEFAULT_NS)
    assert cluster.api.get(journal_claim(DEFAULT_NS))["metadata"]["uid"] == journal
    helm(cluster, "uninstall", RELEASE, "-n", DEFAULT_NS, "--wait", "--timeout", "2m")


# --- examples/production.yaml, with the prometheus-operator CRDs it needs -------------------------------------------

PRODUCTION_NS = "trading-production"


def test_production_example_installs_with_its_crds(cluster: KubeControlPlane) -> None:
    for crd in sorted(CRDS.glob("*.yaml")):
        cluster.api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", yaml.safe_load(crd.read_text()))
    cluster.wait_for_crds(["servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"])
    manifests = rendered(cluster, PRODUCTION_NS, "-f", str(PRODUCTION))
    provide_volumes(cluster, manifests, PRODUCTION_NS)
    install = ["install", RELEASE, str(CHART), "-n", PRODUCTION_NS, "--create-namespace", "-f", str(PRODUCTION)]
    helm(cluster, *install, "--wait", "--timeout", "4m")

    assert_release_ready(cluster, manifests, PRODUCTION_NS)
    kinds = {key.split("/")[1]: key.split("/")[0] for key in workloads(cluster, PRODUCTION_NS)}
    assert kinds[f"{RELEASE}-execution"] == kinds[f"{RELEASE}-agent0"] == "StatefulSet"
    monitoring = f"/apis/monitoring.coreos.com/v1/namespaces/{PRODUCTION_NS}"
    assert names(cluster, f"{monitoring}/servicemonitors") == {
        d["metadata"]["name"] for d in manifests if d["kind"] == "ServiceMonitor"
    }
    (rule,) = cluster.api.items(f"{monitoring}/prometheusrules")
    (rendered_rule,) = [d for d in manifests if d["kind"] == "PrometheusRule"]
    assert len(rule["spec"]["groups"]) == len(rendered_rule["spec"]["groups"]) > 0
    (ingress,) = ingresses(cluster, PRODUCTION_NS).values()
    assert ingress["spec"]["tls"][0]["secretName"] == "ibstream-api-tls"
    policies = names(cluster, f"/apis/networking.k8s.io/v1/namespaces/{PRODUCTION_NS}/networkpolicies")
    assert policies == {d["metadata"]["name"] for d in manifests if d["kind"] == "NetworkPolicy"}

    helm(cluster, "uninstall", RELEASE, "-n", PRODUCTION_NS, "--wait", "--timeout", "2m")
    assert workloads(cluster, PRODUCTION_NS) == {}
    assert cluster.api.items(f"{monitoring}/prometheusrules") == []
