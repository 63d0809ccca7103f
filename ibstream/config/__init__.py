"""Settings in sections, validated at startup: ``settings.kafka.bootstrap_servers``, ``settings.ib.port``, …

Each section is a frozen pydantic model (Quix Streams' ``ConnectionConfig`` style); ``Settings`` holds one of each
plus the two process-wide knobs (``state_dir``, ``log_level``) and the paths derived from ``state_dir``.

Environment variables keep their flat names: a field ``<section>.<name>`` is read from ``IBSTREAM_`` + the section's
prefix + the name (``IBSTREAM_KAFKA_BOOTSTRAP_SERVERS`` → ``kafka.bootstrap_servers``), unless the section names it
otherwise in ``ENV_NAMES`` (``IBSTREAM_SYMBOLS`` → ``feed.symbols``, ``IBSTREAM_ACCOUNT_EQUITY`` →
``risk.account_equity``). ``FLAT_NAMES`` maps every flat name (the variable without the prefix, lower case) to its
section and field; the same flat names are the keyword overrides ``load_settings`` and ``Settings.with_overrides``
accept.

Bad values never stop the process with a stack trace: ``load_settings`` collects every validation error and raises
one ``ConfigError`` that lists each bad variable by name.
"""

from ibstream.config.loading import (
    ENV_PREFIX,
    FLAT_NAMES,
    LOG_LEVELS,
    PROJECT_ROOT,
    TOP_LEVEL,
    LogLevel,
    Settings,
    config_error,
    env_name,
    field_info,
    get_settings,
    load_settings,
)
from ibstream.config.sections import (
    LIVE_PORTS,
    SECTIONS,
    Agent0Settings,
    ApiSettings,
    ExecutionSettings,
    FeedSettings,
    IbSettings,
    KafkaSettings,
    OrchestrationSettings,
    RegistrySettings,
    RiskSettings,
    Section,
    SinkSettings,
    StackSettings,
    StreamsSettings,
    UatSettings,
    WarehouseSettings,
)

__all__ = [
    "ENV_PREFIX",
    "FLAT_NAMES",
    "LIVE_PORTS",
    "LOG_LEVELS",
    "PROJECT_ROOT",
    "SECTIONS",
    "TOP_LEVEL",
    "Agent0Settings",
    "ApiSettings",
    "ExecutionSettings",
    "FeedSettings",
    "IbSettings",
    "KafkaSettings",
    "LogLevel",
    "OrchestrationSettings",
    "RegistrySettings",
    "RiskSettings",
    "Section",
    "Settings",
    "SinkSettings",
    "StackSettings",
    "StreamsSettings",
    "UatSettings",
    "WarehouseSettings",
    "config_error",
    "env_name",
    "field_info",
    "get_settings",
    "load_settings",
]
