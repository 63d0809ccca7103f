"""The version ibsim negotiates and the per-version units of its market data (pure)."""

from __future__ import annotations

from ibapi import server_versions as ibapi_versions

from ibsim import messages as m
from ibsim.config import SERVER_VERSION, SimConfig
from ibsim.messages import versions as v
from ibsim.wire import parse_version_range


def test_ibsim_speaks_up_to_its_maximum_by_default() -> None:
    assert SimConfig().server_version == SERVER_VERSION == m.MAX_SERVER_VERSION


def test_every_version_ibsim_follows_is_the_official_clients_own_number() -> None:
    """A typo in a version constant would shift a layout by one version without any test noticing: compare each with
    the number in IB's own server_versions.py."""
    for name in (
        "REPLACE_FA_END",
        "DURATION",
        "MARKET_DATA_IN_SHARES",
        "POST_TO_ATS",
        "AUTO_CANCEL_PARENT",
        "FRACTIONAL_SIZE_SUPPORT",
        "SIZE_RULES",
        "ADVANCED_ORDER_REJECT",
        "PEGBEST_PEGMID_OFFSETS",
        "HMDS_MARKET_DATA_IN_SHARES",
        "FA_PROFILE_DESUPPORT",
        "PENDING_PRICE_REVISION",
    ):
        assert getattr(v, name) == getattr(ibapi_versions, f"MIN_SERVER_VER_{name}"), name


def test_the_10x_client_asks_for_a_range_that_contains_ibsims_maximum() -> None:
    low, high = parse_version_range(f"v{ibapi_versions.MIN_CLIENT_VER}..{ibapi_versions.MAX_CLIENT_VER}")
    assert low <= 157 and high > m.MAX_SERVER_VERSION


def test_sizes_are_lots_up_to_158_and_shares_from_159() -> None:
    assert (m.quote_size(3, 157), m.quote_size(3, 158), m.quote_size(3, 159), m.quote_size(3, 178)) == (3, 3, 300, 300)
    assert (m.volume_size(12_300, 158), m.volume_size(12_300, 159)) == (123, 12_300)
