"""A real Kubernetes control plane for tests, without containers: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler as local processes on free ports, and kwok playing the kubelet of one fake node (it marks the pods the
scheduler binds there Running and Ready, and Job pods Succeeded; no container runs). `ops/dev install` builds the
binaries into .state/tools/bin (install_kubernetes) and kwok's stage configs into .state/tools/share/kwok.

Everything lives in one temporary directory: a CA, the apiserver's serving certificate, the service-account signing
key, a static admin token (group system:masters) and the kubeconfig helm and the components use.

Storage: there is no provisioner. ``provide_volumes`` plays one, the way an administrator pre-provisions: a hostPath
PersistentVolume reserved (claimRef) for each named claim, which the controller-manager's binder then binds.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tooling.processes import ProcessError, ProcessGroup, free_port

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".state" / "tools"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_STAGES = TOOLS / "share" / "kwok"
FAKE_NODE = "kwok-node-0"
#: Annotation kwok selects the nodes it manages by (--manage-nodes-with-annotation-selector).
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"


def find_binary(name: str) -> Path | None:
    local = TOOLS / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def missing_reason() -> str | None:
    """Why the control plane cannot start here, or None when it can."""
    missing = [name for name in BINARIES if find_binary(name) is None]
    if not KWOK_STAGES.is_dir():
        missing.append("kwok's stage configs (.state/tools/share/kwok)")
    if missing:
        return (
            f"{', '.join(missing)} not installed (ops/dev install builds etcd, the Kubernetes control plane and kwok"
            " into .state/tools with the machine's Go toolchain)"
        )
    return None


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str, key: rsa.RSAPrivateKey, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None
) -> x509.Certificate:
    """A one-day certificate: the CA's own (issuer None) or a serving certificate for the loopback address."""
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        addresses = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.96.0.1")]
        names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName("kubernetes.default.svc")]
        names += [x509.IPAddress(address) for address in addresses]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


@dataclass(frozen=True)
class Credentials:
    """The files the control plane's processes read."""

    ca: Path
    serving_cert: Path
    serving_key: Path
    service_account_key: Path
    tokens: Path
    kubeconfig: Path
    token: str


def write_credentials(directory: Path, server: str) -> Credentials:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, serving_key = _key(), _key()
    ca = _certificate("ibstream-test-ca", ca_key, None)
    serving = _certificate("kube-apiserver", serving_key, (ca, ca_key))
    files = {name: directory / name for name in ("ca.crt", "apiserver.crt", "apiserver.key", "sa.key", "tokens.csv")}
    files["ca.crt"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["apiserver.crt"].write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    files["apiserver.key"].write_bytes(_pem_key(serving_key))
    files["sa.key"].write_bytes(_pem_key(_key()))
    token = secrets.token_hex(16)
    files["tokens.csv"].write_text(f'{token},admin,admin,"system:masters"\n')
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "test", "cluster": {"server": server, "certificate-authority": str(files["ca.crt"])}}
                ],
                "users": [{"name": "admin", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                "current-context": "test",
            }
        )
    )
    kubeconfig.chmod(0o600)
    return Credentials(
        files["ca.crt"],
        files["apiserver.crt"],
        files["apiserver.key"],
        files["sa.key"],
        files["tokens.csv"],
        kubeconfig,
        token,
    )


class KubeApi:
    """A few REST calls against the apiserver with the admin token (no client library needed)."""

    def __init__(self, server: str, credentials: Credentials) -> None:
        self.server = server
        self._token = credentials.token
        self._tls = ssl.create_default_context(cafile=str(credentials.ca))

    def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self._token}")
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=10) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """Status and JSON answer (the API's resources and its Status errors are JSON)."""
        status, raw = self.send(method, path, body)
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {"text": raw.decode(errors="replace")}
        return status, answer

    def get(self, path: str) -> dict[str, Any]:
        status, body = self.request("GET", path)
        assert status == 200, f"GET {path}: {status} {body}"
        return body

    def items(self, path: str) -> list[dict[str, Any]]:
        return list(self.get(path)["items"])

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = self.request("POST", path, body)
        assert status in (200, 201), f"POST {path}: {status} {answer}"
        return answer

    def healthy(self) -> bool:
        try:
            status, _ = self.send("GET", "/readyz")
        except OSError:
            return False
        return status == 200


class KubeControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok with one fake node."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes = ProcessGroup(directory / "logs", base_env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.credentials = write_credentials(directory / "pki", self.server)
        self.api = KubeApi(self.server, self.credentials)

    def start(self, timeout: float = 120.0) -> None:
        self._start_etcd()
        self._start_apiserver()
        self._wait(self.api.healthy, "kube-apiserver /readyz", timeout)
        kubeconfig = ["--kubeconfig", str(self.credentials.kubeconfig), "--leader-elect=false", "--secure-port=0"]
        self.processes.start(
            "kube-controller-manager",
            [
                str(find_binary("kube-controller-manager")),
                *kubeconfig,
                "--root-ca-file",
                str(self.credentials.ca),
                "--service-account-private-key-file",
                str(self.credentials.service_account_key),
                "--use-service-account-credentials=false",
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                # No node lifecycle: on a loaded machine a late kwok heartbeat would taint the node and evict pods.
                "--controllers=*,-node-lifecycle-controller",
            ],
        )
        self.processes.start("kube-scheduler", [str(find_binary("kube-scheduler")), *kubeconfig])
        self._start_kwok()
        self._add_fake_node()
        self._wait(self._node_ready, f"node {FAKE_NODE} Ready", timeout)
        # The apiserver taints a new node not-ready; the node lifecycle controller (off, see above) would lift it.
        status, answer = self.api.request("PATCH", f"/api/v1/nodes/{FAKE_NODE}", {"spec": {"taints": None}})
        if status != 200:
            raise ProcessError(f"could not untaint node {FAKE_NODE}: {status} {answer}")
        self._wait(self._default_service_account, "the default ServiceAccount", timeout)

    def stop(self) -> None:
        self.processes.stop_all(timeout=10)

    def log_tails(self) -> str:
        return "\n".join(f"--- {name}\n{p.log_tail(15)}" for name, p in self.processes.processes.items())

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.processes.start(
            "etcd",
            [
                str(find_binary("etcd")),
                "--name=test",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=test=http://127.0.0.1:{peer}",
                "--listen-metrics-urls=",
                # A throwaway test cluster: no fsync (the apiserver's writes are what the tests wait on).
                "--unsafe-no-fsync",
            ],
        )

    def _start_apiserver(self) -> None:
        c = self.credentials
        self.processes.start(
            "kube-apiserver",
            [
                str(find_binary("kube-apiserver")),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--tls-cert-file={c.serving_cert}",
                f"--tls-private-key-file={c.serving_key}",
                f"--client-ca-file={c.ca}",
                f"--token-auth-file={c.tokens}",
                f"--service-account-key-file={c.service_account_key}",
                f"--service-account-signing-key-file={c.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=RBAC",
                f"--cert-dir={self.directory / 'pki'}",
                "--enable-priority-and-fairness=false",
                # Nothing in the cluster dials the apiserver's Service (it would list the loopback address, refused).
                "--endpoint-reconciler-type=none",
                "--profiling=false",
            ],
        )

    def _start_kwok(self) -> None:
        stages = sorted(str(path) for path in KWOK_STAGES.glob("*.yaml"))
        self.processes.start(
            "kwok",
            [
                str(find_binary("kwok")),
                f"--kubeconfig={self.credentials.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-ip=10.0.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
                *(f"--config={stage}" for stage in stages),
            ],
        )

    def _add_fake_node(self) -> None:
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti"}
        self.api.create(
            "/api/v1/nodes",
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": FAKE_NODE,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {"kubernetes.io/hostname": FAKE_NODE, "kubernetes.io/os": "linux", "type": "kwok"},
                },
                "status": {"capacity": capacity, "allocatable": capacity},
            },
        )

    def _node_ready(self) -> bool:
        conditions = self.api.get(f"/api/v1/nodes/{FAKE_NODE}").get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _default_service_account(self) -> bool:
        status, _ = self.api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return status == 200

    def wait_for_crds(self, names: list[str], timeout: float = 60.0) -> None:
        """Until each CustomResourceDefinition is Established (its API is served)."""

        def established() -> bool:
            for name in names:
                crd = self.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = (crd.get("status") or {}).get("conditions") or []
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    return False
            return True

        self._wait(established, f"CRDs {', '.join(names)} established", timeout)

    def _wait(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, managed in self.processes.processes.items():
                if not managed.alive():
                    raise ProcessError(f"{name} exited while waiting for {what}:\n{managed.log_tail()}")
            if ready():
                return
            time.sleep(0.3)
        raise ProcessError(f"no {what} within {timeout:.0f}s:\n{self.log_tails()}")

    def provide_volumes(self, claims: list[dict[str, Any]]) -> None:
        """A hostPath PersistentVolume reserved for each PersistentVolumeClaim manifest (its namespace must be set)."""
        for claim in claims:
            meta, spec = claim["metadata"], claim["spec"]
            name = f"pv-{meta['namespace']}-{meta['name']}"
            self.api.create(
                "/api/v1/persistentvolumes",
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": name},
                    "spec": {
                        "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                        "accessModes": spec["accessModes"],
                        "storageClassName": spec.get("storageClassName", ""),
                        "persistentVolumeReclaimPolicy": "Retain",
                        "claimRef": {"namespace": meta["namespace"], "name": meta["name"]},
                        "hostPath": {"path": str(self.directory / "volumes" / name)},
                    },
                },
            )
