"""Settings from the environment, validated once at start: a bad value stops the worker with its name."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


_NAME = re.compile(r"^[A-Za-z0-9._-]*$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    app_id: str = "callcenter-metrics"
    topic_prefix: str = ""
    web_host: str = "0.0.0.0"
    web_port: int = 6066
    data_dir: Path = Path(".data")
    sla_config: str = ""
    log_level: str = "info"
    topic_partitions: int = 8
    topic_replication: int = 1
    interval_minutes: int = 15
    grace_seconds: int = 120
    time_zone: str = "UTC"
    state_retention_hours: int = 48
    call_ttl_hours: int = 6
    max_event_bytes: int = 65536
    max_queues: int = 2000
    faust_metrics: bool = True

    @property
    def faust_id(self) -> str:
        """The Faust app id and consumer group: prefixed, so two deployments can share a broker."""
        return f"{self.topic_prefix}{self.app_id}"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def interval_ms(self) -> int:
        return self.interval_minutes * 60_000

    @property
    def grace_ms(self) -> int:
        return self.grace_seconds * 1000

    @property
    def retention_ms(self) -> int:
        return self.state_retention_hours * 3_600_000

    @property
    def call_ttl_ms(self) -> int:
        return self.call_ttl_hours * 3_600_000


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _name(env: Mapping[str, str], name: str, default: str, *, allow_empty: bool) -> str:
    value = env.get(name, default).strip()
    if not value and not allow_empty:
        raise SettingsError(f"{name} must not be empty")
    if not _NAME.match(value):
        raise SettingsError(
            f"{name} may hold only letters, digits, '.', '_' and '-', got {value!r}"
        )
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    bootstrap = env.get("KAFKA_BOOTSTRAP", "").strip() or "127.0.0.1:9092"
    for server in bootstrap.split(","):
        if not _HOST_PORT.match(server.strip()):
            raise SettingsError(
                f"KAFKA_BOOTSTRAP must be host:port[,host:port…], got {bootstrap!r}"
            )
    level = env.get("LOG_LEVEL", "").strip().lower() or "info"
    if level not in {"debug", "info", "warning", "error", "critical"}:
        raise SettingsError(
            f"LOG_LEVEL must be debug, info, warning, error or critical, got {level!r}"
        )
    zone = env.get("TIME_ZONE", "").strip() or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"TIME_ZONE must be an IANA time zone such as Europe/Paris, got {zone!r}"
        ) from None
    interval = _int(env, "INTERVAL_MINUTES", 15, 1, 1440)
    if 1440 % interval:
        raise SettingsError(f"INTERVAL_MINUTES must divide a day (1440 minutes), got {interval}")
    sla = env.get("SLA_CONFIG", "").strip()
    if sla and not Path(sla).is_file():
        raise SettingsError(f"SLA_CONFIG names a file that does not exist: {sla!r}")
    faust_metrics = env.get("FAUST_METRICS", "").strip().lower() or "true"
    if faust_metrics not in {"true", "false", "1", "0", "yes", "no"}:
        raise SettingsError(f"FAUST_METRICS must be true or false, got {faust_metrics!r}")
    settings = Settings(
        kafka_bootstrap=bootstrap,
        app_id=_name(env, "APP_ID", "callcenter-metrics", allow_empty=False),
        topic_prefix=_name(env, "TOPIC_PREFIX", "", allow_empty=True),
        web_host=env.get("WEB_HOST", "").strip() or "0.0.0.0",
        web_port=_int(env, "WEB_PORT", 6066, 1, 65535),
        data_dir=Path(env.get("DATA_DIR", "").strip() or ".data"),
        sla_config=sla,
        log_level=level,
        topic_partitions=_int(env, "TOPIC_PARTITIONS", 8, 1, 1024),
        topic_replication=_int(env, "TOPIC_REPLICATION", 1, 1, 16),
        interval_minutes=interval,
        grace_seconds=_int(env, "GRACE_SECONDS", 120, 0, 86_400),
        time_zone=zone,
        state_retention_hours=_int(env, "STATE_RETENTION_HOURS", 48, 1, 24 * 90),
        call_ttl_hours=_int(env, "CALL_TTL_HOURS", 6, 1, 24 * 7),
        max_event_bytes=_int(env, "MAX_EVENT_BYTES", 65536, 256, 16 * 1024 * 1024),
        max_queues=_int(env, "MAX_QUEUES", 2000, 1, 1_000_000),
        faust_metrics=faust_metrics in {"true", "1", "yes"},
    )
    _check_consistency(settings)
    return settings


def longest_day_ms(zone: ZoneInfo) -> int:
    """24 hours, or 25 in a zone that changes its clocks (the day the clocks go back)."""
    year = datetime.now(UTC).year
    offsets = {datetime(year, month, 1, tzinfo=zone).utcoffset() for month in range(1, 13)}
    return (25 if len(offsets) > 1 else 24) * 3_600_000


def _check_consistency(settings: Settings) -> None:
    """Settings that are each fine but contradict each other."""
    # The `today` window sums the day's intervals, and an interval is published only after its
    # end plus the grace: the state of a whole local day, its last interval and the grace must
    # outlive the sweeps, or `today` and late corrections read buckets already deleted.
    needed = longest_day_ms(settings.zone) + settings.interval_ms + settings.grace_ms
    if settings.retention_ms < needed:
        hours = -(-needed // 3_600_000)
        raise SettingsError(
            f"STATE_RETENTION_HOURS={settings.state_retention_hours} is shorter than the "
            f"'today' window needs: a local day in {settings.time_zone} plus an interval "
            f"(INTERVAL_MINUTES={settings.interval_minutes}) plus the grace "
            f"(GRACE_SECONDS={settings.grace_seconds}): set it to {hours} or more"
        )
    # The queues stage forgets a call's contribution once its facts are past the retention;
    # a call the calls stage still holds open after that would, on its next event, be counted
    # again in buckets already swept.
    if settings.call_ttl_hours >= settings.state_retention_hours:
        raise SettingsError(
            f"CALL_TTL_HOURS={settings.call_ttl_hours} must be shorter than "
            f"STATE_RETENTION_HOURS={settings.state_retention_hours}: the window state would "
            "forget calls the call table still updates"
        )
