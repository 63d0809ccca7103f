"""The chart's optional IB Gateway (ibGateway.*, run by IBC), rendered offline with helm: off by default; when on, a
gateway pod whose login comes only from a Secret, paper unless live is asked for explicitly and the live interlock is
set, the daily restart time given to IBC and to ibstream alike, and only the producer and execution pointed at it and
admitted to it. Bad values stop the render with a message naming the value.

Needs helm like test_deploy_chart.py (skipped without it, saying so).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from ibstream.config import field_info, load_settings
from tests.tools import require_tool
from tests.unit.deploy.test_deploy_chart import (
    CHART,
    HELM,
    KUBE_VERSION,
    NO_HELM,
    NO_VALIDATOR,
    PRODUCTION,
    SECRETISH,
    helm,
    of_kind,
    refused,
    render,
    secret_findings,
)

GATEWAY_EXAMPLE = CHART / "examples" / "ib-gateway.yaml"
ENABLED = ("-f", str(PRODUCTION), "-f", str(GATEWAY_EXAMPLE))
#: The minimum that turns the gateway on over the default values.
MINIMAL = ("--set", "ibGateway.enabled=true", "--set", "ibGateway.credentials.secretName=ib-login")
LIVE = (*MINIMAL, "--set", "ibGateway.tradingMode=live")
GATEWAY_KINDS = {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}


@pytest.fixture(autouse=True, scope="module")
def _helm_present() -> None:
    require_tool(NO_HELM if HELM is None else None)


@pytest.fixture(scope="module")
def enabled() -> list[dict[str, Any]]:
    return render(*ENABLED)


def gateway_objects(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """kind → the ib-gateway component's object of that kind."""
    found = [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "ib-gateway"]
    assert len({d["kind"] for d in found}) == len(found), "two gateway objects of one kind"
    return {d["kind"]: d for d in found}


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = gateway_objects(docs)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def settings_config(docs: list[dict[str, Any]]) -> dict[str, str]:
    (config_map,) = [c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-config")]
    return config_map["data"]  # type: ignore[no-any-return]


def deployment(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    (found,) = [
        d
        for d in of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


# --- off by default -----------------------------------------------------------------------------------------------


def test_the_gateway_is_off_by_default_and_the_deployables_dial_ib_host() -> None:
    docs = render()
    assert gateway_objects(docs) == {}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["ibGateway"]["enabled"] is False
    config = settings_config(docs)
    assert (config["IBSTREAM_IB_HOST"], config["IBSTREAM_IB_PORT"]) == (values["ib"]["host"], str(values["ib"]["port"]))
    assert "IBSTREAM_IB_DAILY_RESTART_TIME" not in config


# --- enabled: objects, credentials, paper, restart, wiring --------------------------------------------------------


@pytest.mark.parametrize("values", ["example", "minimal"])
def test_helm_lint_strict_with_the_gateway(values: str) -> None:
    args = ENABLED if values == "example" else MINIMAL
    result = helm("lint", "--strict", "--kube-version", f"{KUBE_VERSION}.0", *args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_enabled_renders_a_valid_deployment_service_pdb_and_network_policy(enabled: list[dict[str, Any]]) -> None:
    objects = gateway_objects(enabled)
    assert set(objects) == GATEWAY_KINDS
    names = {o["metadata"]["name"] for o in objects.values()}
    assert names == {"ibstream-ib-gateway"}
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason=NO_VALIDATOR)
    for doc in objects.values():
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_one_gateway_pod_replaced_by_recreate(enabled: list[dict[str, Any]]) -> None:
    # IBKR allows one session per username: a second gateway pod would log the first one out.
    spec = gateway_objects(enabled)["Deployment"]["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}


def test_the_login_comes_only_from_the_secret(enabled: list[dict[str, Any]]) -> None:
    container = gateway_container(enabled)
    refs = {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if "valueFrom" in e
    }
    example = yaml.safe_load(GATEWAY_EXAMPLE.read_text())["ibGateway"]["credentials"]
    assert refs["TWS_USERID"] == (example["secretName"], example["usernameKey"])
    assert refs["TWS_PASSWORD"] == (example["secretName"], example["passwordKey"])
    for env in container["env"]:
        if SECRETISH.search(env["name"]) or env["name"] == "TWS_USERID":
            assert "value" not in env, f"{env['name']} has a literal value"
    assert not secret_findings(enabled)


def test_without_the_credentials_secret_the_render_is_refused() -> None:
    error = refused("--set", "ibGateway.enabled=true")
    assert "ibGateway.credentials.secretName is required" in error


def test_paper_mode_by_default(enabled: list[dict[str, Any]]) -> None:
    container = gateway_container(enabled)
    assert plain_env(container)["TRADING_MODE"] == "paper"
    assert plain_env(container)["READ_ONLY_API"] == "no"  # execution places orders through it
    # The image's socat relays the gateway's paper port (127.0.0.1:4002) to the pod network on 4004.
    assert container["ports"] == [{"name": "ib-api", "containerPort": 4004, "protocol": "TCP"}]
    service = gateway_objects(enabled)["Service"]
    assert service["spec"]["ports"] == [{"name": "ib-api", "port": 4002, "targetPort": "ib-api", "protocol": "TCP"}]
    assert settings_config(enabled)["IBSTREAM_IB_PORT"] == "4002"


@pytest.mark.parametrize(
    ("time", "ibc_time"),
    [("23:45", "11:45 PM"), ("06:30", "06:30 AM"), ("00:05", "12:05 AM"), ("12:00", "12:00 PM"), ("13:15", "01:15 PM")],
)
def test_the_daily_restart_time_reaches_ibc_and_ibstream(time: str, ibc_time: str) -> None:
    docs = render(
        *MINIMAL,
        "--set-string",
        f"ibGateway.dailyRestart.time={time}",
        "--set",
        "ibGateway.dailyRestart.timeZone=Europe/Zurich",
    )
    env = plain_env(gateway_container(docs))
    assert env["AUTO_RESTART_TIME"] == ibc_time  # IBC's AutoRestartTime format
    assert env["TWOFA_TIMEOUT_ACTION"] == "restart" and env["RELOGIN_AFTER_TWOFA_TIMEOUT"] == "yes"
    assert env["TIME_ZONE"] == env["TZ"] == "Europe/Zurich"
    config = settings_config(docs)
    assert config["IBSTREAM_IB_DAILY_RESTART_TIME"] == time
    assert config["IBSTREAM_IB_DAILY_RESTART_TIMEZONE"] == "Europe/Zurich"


def test_ibstream_loads_the_rendered_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The ConfigMap the producer and execution read must pass ibstream's own validation (time of day, zone, port).
    # Default values (PLAINTEXT Kafka), so no Secret-sourced variable is needed to load them.
    docs = render(*MINIMAL)
    service = gateway_objects(docs)["Service"]
    for name, value in settings_config(docs).items():
        monkeypatch.setenv(name, value)
    settings = load_settings(state_dir=tmp_path)
    assert settings.ib.host == service["metadata"]["name"]
    assert settings.ib.port == service["spec"]["ports"][0]["port"] == 4002
    assert settings.ib.daily_restart_time == "23:45"
    assert settings.ib.daily_restart_timezone == "America/New_York"


def test_producer_and_execution_dial_the_gateway_service_with_their_own_client_ids(
    enabled: list[dict[str, Any]],
) -> None:
    service = gateway_objects(enabled)["Service"]
    config = settings_config(enabled)
    assert config["IBSTREAM_IB_HOST"] == service["metadata"]["name"]
    assert config["IBSTREAM_IB_PORT"] == str(service["spec"]["ports"][0]["port"])
    client_ids = {}
    for component in ("producer", "execution"):
        container = deployment(enabled, component)["spec"]["template"]["spec"]["containers"][0]
        assert {"configMapRef": {"name": "ibstream-config"}} in container["envFrom"]
        names = {e["name"] for e in container["env"]}
        assert not names & {"IBSTREAM_IB_HOST", "IBSTREAM_IB_PORT"}, component  # nothing overrides the ConfigMap
        client_ids[component] = field_info(f"{component}_client_id").default
    assert "IBSTREAM_PRODUCER_CLIENT_ID" not in config and "IBSTREAM_EXECUTION_CLIENT_ID" not in config
    assert client_ids["producer"] != client_ids["execution"]


def test_only_producer_and_execution_pods_reach_the_api_port(enabled: list[dict[str, Any]]) -> None:
    policy = gateway_objects(enabled)["NetworkPolicy"]
    deployment_selector = gateway_objects(enabled)["Deployment"]["spec"]["selector"]
    assert policy["spec"]["podSelector"] == deployment_selector
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "ibstream"
    assert peer["podSelector"]["matchExpressions"] == [
        {"key": "app.kubernetes.io/component", "operator": "In", "values": ["producer", "execution"]}
    ]
    assert rule["ports"] == [{"port": "ib-api", "protocol": "TCP"}]
    without = gateway_objects(render(*ENABLED, "--set", "networkPolicy.enabled=false"))
    assert set(without) == GATEWAY_KINDS - {"NetworkPolicy"}


def test_the_gateway_pod_is_as_strict_as_the_image_allows(enabled: list[dict[str, Any]]) -> None:
    pod = gateway_objects(enabled)["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    container = gateway_container(enabled)
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
    assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # The one relaxation, documented in the chart README: the image writes its config under /home/ibgateway.
    assert security["readOnlyRootFilesystem"] is False
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][bound])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "ib-api"}, probe
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}


# --- live: only explicitly and with the interlock -----------------------------------------------------------------


def test_live_without_allow_live_is_refused() -> None:
    error = refused(*LIVE, "--set", "secrets.ibLiveAccount.name=ib-live")
    assert "ibGateway.tradingMode live needs ibGateway.allowLive: true" in error


def test_live_without_the_live_account_interlock_is_refused() -> None:
    error = refused(*LIVE, "--set", "ibGateway.allowLive=true")
    assert "ibGateway.tradingMode live needs secrets.ibLiveAccount" in error


def test_live_with_both_runs_the_live_port_and_hands_the_interlock_to_producer_and_execution() -> None:
    docs = render(*LIVE, "--set", "ibGateway.allowLive=true", "--set", "secrets.ibLiveAccount.name=ib-live")
    container = gateway_container(docs)
    assert plain_env(container)["TRADING_MODE"] == "live"
    assert container["ports"][0]["containerPort"] == 4003
    assert gateway_objects(docs)["Service"]["spec"]["ports"][0]["port"] == 4001
    assert settings_config(docs)["IBSTREAM_IB_PORT"] == "4001"
    for component in ("producer", "execution"):
        env = deployment(docs, component)["spec"]["template"]["spec"]["containers"][0]["env"]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
        assert refs["IBSTREAM_IB_LIVE_ACCOUNT"] == "ib-live", component


@pytest.mark.parametrize("mode", ["both", "Live", "PAPER"])
def test_the_schema_knows_only_paper_and_live(mode: str) -> None:
    error = refused(*MINIMAL, "--set", f"ibGateway.tradingMode={mode}")
    assert "/ibGateway/tradingMode" in error


def test_the_image_cannot_be_switched_to_live_through_env() -> None:
    assert "invalid propertyName 'TRADING_MODE'" in refused(*MINIMAL, "--set", "ibGateway.env.TRADING_MODE=live")
    error = refused(*MINIMAL, "--set", "ibGateway.env.TRADING_MODE=live", "--skip-schema-validation")
    assert "ibGateway.env.TRADING_MODE is set by the chart" in error


def test_the_template_refuses_live_even_without_the_schema() -> None:
    error = refused(*LIVE, "--skip-schema-validation")
    assert "ibGateway.tradingMode live needs ibGateway.allowLive: true" in error


# --- other bad values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("time", ["24:00", "7:30", "23:45:00", "11:45 PM", "noon"])
def test_a_malformed_restart_time_is_refused_by_schema_and_template(time: str) -> None:
    assert "/ibGateway/dailyRestart/time" in refused(*MINIMAL, "--set-string", f"ibGateway.dailyRestart.time={time}")
    error = refused(*MINIMAL, "--set-string", f"ibGateway.dailyRestart.time={time}", "--skip-schema-validation")
    assert "ibGateway.dailyRestart.time must be a time of day HH:MM" in error


def test_config_may_not_point_the_deployables_elsewhere_while_the_gateway_runs() -> None:
    error = refused(*MINIMAL, "--set", "config.IBSTREAM_IB_HOST=other-gateway")
    assert "config.IBSTREAM_IB_HOST conflicts with ibGateway.enabled" in error


@pytest.mark.parametrize("name", ["VNC_SERVER_PASSWORD", "SSH_PASSPHRASE", "TWS_PASSWORD"])
def test_secret_looking_gateway_env_is_refused(name: str) -> None:
    assert f"invalid propertyName '{name}'" in refused(*MINIMAL, "--set-string", f"ibGateway.env.{name}=x")


def test_extra_secret_env_reaches_the_gateway_as_a_secret_ref() -> None:
    docs = render(
        *MINIMAL,
        "--set",
        "ibGateway.extraSecretEnv[0].name=VNC_SERVER_PASSWORD",
        "--set",
        "ibGateway.extraSecretEnv[0].secretName=ib-vnc",
        "--set",
        "ibGateway.extraSecretEnv[0].key=password",
    )
    (vnc,) = [e for e in gateway_container(docs)["env"] if e["name"] == "VNC_SERVER_PASSWORD"]
    assert vnc == {"name": "VNC_SERVER_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "ib-vnc", "key": "password"}}}


def test_the_gateway_example_only_adds_to_production(enabled: list[dict[str, Any]]) -> None:
    # examples/ib-gateway.yaml layers on production.yaml; the deployables stay as production renders them, apart
    # from the settings (the ConfigMap, its checksum in their pod annotations, the topics Job's inline copy).
    def stable(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = []
        for doc in docs:
            if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "ib-gateway":
                continue
            if doc["kind"] == "Job":
                continue  # the topics hook carries the settings inline (the ConfigMap does not exist yet then)
            doc = copy.deepcopy(doc)
            if doc["kind"] in ("Deployment", "StatefulSet"):
                doc["spec"]["template"]["metadata"]["annotations"].pop("checksum/config")
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-config"):
                continue
            kept.append(doc)
        return kept

    assert stable(enabled) == stable(render("-f", str(PRODUCTION)))


@pytest.mark.parametrize("override", ["ibGateway.service.type=LoadBalancer", "ibGateway.service.type=NodePort"])
def test_the_gateway_service_is_never_exposed_outside_the_cluster(override: str) -> None:
    # The IB API is an unauthenticated socket that places orders: no value turns its Service into an external one.
    assert "additional properties 'type' not allowed" in refused(*MINIMAL, "--set", override)
    docs = render(*MINIMAL, "--set", override, "--skip-schema-validation")
    assert gateway_objects(docs)["Service"]["spec"]["type"] == "ClusterIP"
