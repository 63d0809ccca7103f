"""The API's plain logic without HTTP or I/O: tokens and roles, settings checks, cursors, rate-limit buckets,
outcome and trail assembly, the token command and the startup refusal."""

from __future__ import annotations

import hmac
import json
from base64 import urlsafe_b64encode
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api import token_cli
from api.auth import Principal, Role, TokenVerifier, authorize, check_auth_settings, issue_token, role_from_claims
from api.cursor import decode_cursor, encode_cursor
from api.errors import ApiError
from api.limits import TokenBuckets
from api.models import Fill
from api.queries.common import micros
from api.queries.orders import SUMMARY_TERMS, order_summary, reconciliation
from api.queries.runs import run_detail
from api.queries.signals import signal_outcome
from ibstream import cli
from ibstream.config import load_settings
from ibstream.contracts import OrchestrationRun, OrderEvent, OrderIntent, Plan, RiskDecision
from ibstream.contracts.enums import ExecutionSource, OrderLeg, OrderStatus, OrderType, RunState, Side
from ibstream.exceptions import ConfigError

SECRET = "unit-secret-" + "s" * 32
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def hs_settings(**overrides: Any) -> Any:
    return load_settings(api_jwt_secret=SECRET, **overrides)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {"sub": "u", "role": "viewer", "iss": "ibstream", "aud": "ibstream-api", "exp": now + 60}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


# --- roles and tokens -----------------------------------------------------------------------------------------------


def test_roles_are_ordered_admin_over_trader_over_viewer() -> None:
    for held in Role:
        for required in Role:
            principal = Principal("p", held)
            if held.rank >= required.rank:
                authorize(principal, required)
            else:
                with pytest.raises(ApiError) as error:
                    authorize(principal, required)
                assert (error.value.status, error.value.code) == (403, "forbidden")
    with pytest.raises(ApiError):
        authorize(Principal("p", None), Role.VIEWER)


def test_role_claims_take_the_highest_known_role() -> None:
    assert role_from_claims({"role": "trader"}) is Role.TRADER
    assert role_from_claims({"roles": ["viewer", "admin", "unknown"]}) is Role.ADMIN
    assert role_from_claims({"role": "root", "roles": "admin"}) is None  # unknown name; roles must be a list


def test_hs256_tokens_are_verified_for_signature_expiry_issuer_audience_subject() -> None:
    settings = hs_settings()
    verifier = TokenVerifier(settings)
    issued = issue_token(settings, Role.TRADER, "tom", timedelta(minutes=1))
    assert verifier.verify(issued) == Principal("tom", Role.TRADER)
    cases = {
        "token_expired": jwt.encode(_claims(exp=int(NOW.timestamp()) - 3600), SECRET, algorithm="HS256"),
        "token_invalid": jwt.encode(_claims(), "another-secret-" + "x" * 32, algorithm="HS256"),
    }
    for wrong in ({"iss": "someone-else"}, {"aud": "other-api"}, {"sub": None}, {"exp": None}, {"sub": " "}):
        cases[f"token_invalid {wrong}"] = jwt.encode(_claims(**wrong), SECRET, algorithm="HS256")
    cases["token_invalid none"] = jwt.encode(_claims(), None, algorithm="none")
    for code, value in cases.items():
        with pytest.raises(ApiError) as error:
            verifier.verify(value)
        assert error.value.status == 401 and error.value.code == code.split()[0], code
        assert error.value.headers["WWW-Authenticate"].startswith("Bearer")


def _rsa_pair() -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, public.decode()


def test_rs256_with_a_pem_key_refuses_hs256_tokens_signed_with_the_public_key() -> None:
    private, public = _rsa_pair()
    verifier = TokenVerifier(load_settings(api_jwt_algorithm="RS256", api_jwt_public_key=public))
    assert verifier.verify(jwt.encode(_claims(role="admin"), private, algorithm="RS256")).role is Role.ADMIN
    # Algorithm confusion: an HS256 token "signed" with the public key text must not pass.
    header = {"alg": "HS256", "typ": "JWT"}
    payload = json.dumps(_claims(role="admin")).encode()

    def b64(data: bytes) -> bytes:
        return urlsafe_b64encode(data).rstrip(b"=")

    signing_input = b64(json.dumps(header).encode()) + b"." + b64(payload)
    signature = b64(hmac.new(public.encode(), signing_input, sha256).digest())
    with pytest.raises(ApiError) as error:
        verifier.verify((signing_input + b"." + signature).decode())
    assert error.value.code == "token_invalid"


def test_rs256_with_jwks_picks_the_key_by_kid(monkeypatch: pytest.MonkeyPatch) -> None:
    private, _ = _rsa_pair()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", lambda self: {"keys": [jwk]})
    verifier = TokenVerifier(load_settings(api_jwt_algorithm="RS256", api_jwt_jwks_url="https://idp.example/jwks"))
    good = jwt.encode(_claims(sub="ivy"), private, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(good).subject == "ivy"
    other, _ = _rsa_pair()
    unknown_kid = jwt.encode(_claims(), other, algorithm="RS256", headers={"kid": "k2"})
    with pytest.raises(ApiError) as error:
        verifier.verify(unknown_kid)
    assert error.value.code == "token_invalid"


# --- settings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"api_jwt_secret": "short"}, "IBSTREAM_API_JWT_SECRET"),
        ({"api_cors_origins": "*"}, "IBSTREAM_API_CORS_ORIGINS"),
        ({"api_cors_origins": "https://ok.example.com,https://bad.example.com/path"}, "IBSTREAM_API_CORS_ORIGINS"),
        ({"api_cors_origins": "ftp://files.example.com"}, "IBSTREAM_API_CORS_ORIGINS"),
        ({"api_cors_origins": "http://host:port"}, "IBSTREAM_API_CORS_ORIGINS"),
        ({"api_jwt_jwks_url": "idp.example/jwks"}, "IBSTREAM_API_JWT_JWKS_URL"),
    ],
)
def test_bad_api_settings_name_the_setting(overrides: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(**overrides)
    assert error.value.setting == setting


def test_origins_split_from_the_environment_form() -> None:
    settings = load_settings(api_cors_origins="https://a.example.com, http://localhost:3000")
    assert settings.api.cors_origins == ["https://a.example.com", "http://localhost:3000"]


def test_missing_keys_stop_startup_naming_the_setting() -> None:
    with pytest.raises(ConfigError) as missing_secret:
        check_auth_settings(load_settings())
    assert missing_secret.value.setting == "IBSTREAM_API_JWT_SECRET"
    with pytest.raises(ConfigError) as missing_key:
        check_auth_settings(load_settings(api_jwt_algorithm="RS256"))
    assert missing_key.value.setting == "IBSTREAM_API_JWT_PUBLIC_KEY"
    with pytest.raises(ConfigError) as bad_key:
        check_auth_settings(load_settings(api_jwt_algorithm="RS256", api_jwt_public_key="not a key"))
    assert bad_key.value.setting == "IBSTREAM_API_JWT_PUBLIC_KEY"


def test_api_and_token_commands_refuse_to_run_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import api.app

    without = load_settings()
    monkeypatch.setattr(api.app, "get_settings", lambda: without)
    monkeypatch.setattr(api.app.telemetry, "configure", lambda component: None)
    monkeypatch.setattr(token_cli, "get_settings", lambda: without)
    assert cli.main(["run", "api"]) == 2
    assert cli.main(["token", "--role", "admin"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all("IBSTREAM_API_JWT_SECRET" in line for line in errors)


def test_token_command_prints_a_token_the_api_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = hs_settings()
    monkeypatch.setattr(token_cli, "get_settings", lambda: settings)
    assert cli.main(["token", "--role", "trader", "--subject", "carol", "--ttl", "15m"]) == 0
    issued = capsys.readouterr().out.strip()
    assert TokenVerifier(settings).verify(issued) == Principal("carol", Role.TRADER)
    claims = jwt.decode(issued, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 900
    assert token_cli.parse_ttl("8h") == timedelta(hours=8) and token_cli.parse_ttl("90") == timedelta(seconds=90)
    for bad in ("0", "-5m", "1w", "soon"):
        with pytest.raises(Exception, match="duration"):
            token_cli.parse_ttl(bad)
    with pytest.raises(ConfigError) as rs256:
        issue_token(load_settings(api_jwt_algorithm="RS256", api_jwt_public_key="x"), Role.ADMIN, "a", timedelta(1))
    assert rs256.value.setting == "IBSTREAM_API_JWT_ALGORITHM"


# --- cursors and buckets --------------------------------------------------------------------------------------------


def test_cursor_round_trips_and_is_bound_to_its_filters() -> None:
    filters = {"symbol": "AAPL", "status": None}
    moment = datetime(2026, 3, 2, 14, 30, 0, 123456, tzinfo=UTC)
    cursor = encode_cursor(moment, "id-1", filters)
    assert decode_cursor(cursor, {"status": None, "symbol": "AAPL"}) == (moment, "id-1")
    for other, garbage in (({"symbol": "MSFT"}, cursor), (filters, "not-a-cursor"), (filters, cursor[:-3])):
        with pytest.raises(ApiError) as error:
            decode_cursor(garbage, other)
        assert (error.value.status, error.value.code) == (400, "bad_cursor")
    assert micros(moment) - micros(moment - timedelta(microseconds=1)) == 1


def test_token_buckets_allow_a_burst_then_the_rate() -> None:
    clock = [100.0]
    buckets = TokenBuckets(per_minute=30, burst=2, clock=lambda: clock[0], max_clients=2)
    assert buckets.take("a") is None and buckets.take("a") is None
    assert buckets.take("a") == pytest.approx(2.0)  # 30/min: one token every 2 s
    assert buckets.take("b") is None  # per client
    clock[0] += 1.0
    assert buckets.take("a") == pytest.approx(1.0)
    clock[0] += 1.0
    assert buckets.take("a") is None
    buckets.take("c")
    assert len(buckets._buckets) == 2  # bounded: the least recently used client was evicted


# --- assembly -------------------------------------------------------------------------------------------------------


def test_signal_outcome_follows_the_audit_definitions() -> None:
    fills = [
        Fill(order_id="o", side=Side.SELL, quantity=10, price=50.0, commission=1.0),
        Fill(order_id="o", side=Side.BUY, quantity=4, price=48.0, commission=0.5),
    ]
    partial = signal_outcome(Side.SELL, 51.0, ["o", "o"], fills)
    assert partial.traded and not partial.closed and partial.pnl is None and partial.order_ids == ["o"]
    closed = signal_outcome(
        Side.SELL, 51.0, ["o"], [*fills, Fill(order_id="o", side=Side.BUY, quantity=6, price=48.0, commission=0.5)]
    )
    assert closed.closed and closed.exit_price == pytest.approx(48.0)
    assert closed.pnl == pytest.approx((48.0 - 50.0) * -1 * 10 - 2.0)
    assert closed.r == pytest.approx((48.0 - 50.0) * -1 / 1.0)
    round_trip = [
        Fill(order_id="o", side=Side.BUY, quantity=1, price=50.0, commission=None),
        Fill(order_id="o", side=Side.SELL, quantity=1, price=51.0, commission=None),
    ]
    flat = signal_outcome(Side.BUY, 50.0, ["o"], round_trip)
    assert flat.closed and flat.r is None and flat.pnl == pytest.approx(1.0)  # entry at the stop: no risk unit


def _run(state: RunState, seconds: int, **extra: Any) -> OrchestrationRun:
    values: dict[str, Any] = {"run_id": "r", "signal_id": "s", "symbol": "AAPL", "state": state}
    values.update(actor="orchestration", attempt=1, time=NOW + timedelta(seconds=seconds))
    return OrchestrationRun(**{**values, **extra})


def test_run_detail_takes_the_latest_plan_and_collects_failures() -> None:
    plan = Plan(
        plan_id="p", side=Side.BUY, quantity=1, order_type=OrderType.MKT, stop_loss=1, take_profit=3, rationale="r"
    )
    records = [
        _run(RunState.TRIGGERED, 0),
        _run(RunState.FAILED, 1, reason="timeout"),
        _run(RunState.PLANNED, 2, plan=plan, attempt=2),
        _run(RunState.AWAITING_APPROVAL, 3, attempt=2),
    ]
    detail = run_detail(records, ["o2", "o1", "o2"])
    assert detail.state is RunState.AWAITING_APPROVAL and detail.plan == plan and detail.attempt == 2
    assert [f.reason for f in detail.failures] == ["timeout"] and detail.order_ids == ["o1", "o2"]
    assert (detail.started_time, detail.updated_time) == (NOW, NOW + timedelta(seconds=3))


def test_order_summary_and_reconciliation_use_the_latest_parent_event() -> None:
    intent = OrderIntent(
        order_id="o",
        symbol="AAPL",
        side=Side.BUY,
        quantity=5,
        order_type=OrderType.MKT,
        requested_by="x",
        created_time=NOW,
    )

    def event(n: int, status: OrderStatus, filled: float, leg: OrderLeg = OrderLeg.PARENT, **extra: Any) -> OrderEvent:
        return OrderEvent(
            event_id=f"e{n}",
            order_id="o",
            leg=leg,
            symbol="AAPL",
            status=status,
            filled_quantity=filled,
            remaining_quantity=5 - filled,
            source=ExecutionSource.LIVE,
            event_time=NOW + timedelta(seconds=n),
            **extra,
        )

    events = [
        event(1, OrderStatus.PARTIALLY_FILLED, 2, avg_fill_price=10.0, reconciliation_status="mismatch"),
        event(2, OrderStatus.FILLED, 5),
        event(3, OrderStatus.CANCELLED, 0, leg=OrderLeg.STOP_LOSS, reconciliation_status="matched"),
    ]
    summary = order_summary(intent, [], events)
    assert (summary.risk, summary.status, summary.filled_quantity, summary.avg_fill_price) == (
        "pending",
        OrderStatus.FILLED,
        5,
        10.0,
    )
    rejected = RiskDecision(
        decision_id="d", order_id="o", symbol="AAPL", approved=False, checks=[], intent_time=NOW, decided_time=NOW
    )
    assert order_summary(intent, [rejected], []).risk == "rejected"
    assert reconciliation(events, ["fill_mismatch"]).model_dump() == {"status": "mismatch", "issues": ["fill_mismatch"]}


def test_order_summary_shows_the_intents_terms_its_model_declares() -> None:
    intent = OrderIntent(
        order_id="o",
        run_id="r",
        signal_id="s",
        symbol="AAPL",
        side=Side.SELL,
        quantity=5,
        order_type=OrderType.LMT,
        limit_price=10.5,
        stop_loss=11.0,
        requested_by="x",
        created_time=NOW,
    )
    summary = order_summary(intent, [], [])
    assert SUMMARY_TERMS == ("run_id", "signal_id", "symbol", "side", "quantity", "order_type", "limit_price")
    assert {name: getattr(summary, name) for name in SUMMARY_TERMS} == {
        name: value for name, value in intent.terms().items() if name in SUMMARY_TERMS
    }
    assert (summary.order_id, summary.created_time) == ("o", NOW)
