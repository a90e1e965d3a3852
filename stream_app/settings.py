"""Settings from the environment, validated once at start: a bad value stops the worker with its name."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable."""


_NAME = re.compile(r"^[A-Za-z0-9._-]*$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class Secret:
    """A value that prints as asterisks, so a password reaches no repr, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


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
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret = field(default=Secret(""), repr=False)
    kafka_ssl_cafile: str = ""
    kafka_ssl_certfile: str = ""
    kafka_ssl_keyfile: str = ""

    @property
    def kafka_uses_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def kafka_uses_tls(self) -> bool:
        return self.kafka_security_protocol in {"SSL", "SASL_SSL"}

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
    security = _kafka_security(env)
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
        **security,
    )
    _check_consistency(settings)
    if settings.kafka_uses_tls:
        from stream_app.kafka_clients import ssl_context

        ssl_context(settings)  # a CA, certificate or key that does not load stops here
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


class _Security(TypedDict):
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: Secret
    kafka_ssl_cafile: str
    kafka_ssl_certfile: str
    kafka_ssl_keyfile: str


def _kafka_security(env: Mapping[str, str]) -> _Security:
    """The KAFKA_SECURITY_PROTOCOL family, with the settings that contradict it rejected."""
    protocol = env.get("KAFKA_SECURITY_PROTOCOL", "").strip().upper() or "PLAINTEXT"
    if protocol not in SECURITY_PROTOCOLS:
        raise SettingsError(
            f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, got {protocol!r}"
        )
    sasl = protocol.startswith("SASL_")
    tls = protocol in {"SSL", "SASL_SSL"}
    given = {name for name in _SECURITY_VARIABLES if env.get(name, "").strip()}
    if not sasl and (stray := sorted(given & _SASL_VARIABLES)):
        raise SettingsError(
            f"{stray[0]} is set but KAFKA_SECURITY_PROTOCOL is {protocol}: SASL needs"
            " SASL_PLAINTEXT or SASL_SSL"
        )
    if not tls and (stray := sorted(given & _SSL_VARIABLES)):
        raise SettingsError(
            f"{stray[0]} is set but KAFKA_SECURITY_PROTOCOL is {protocol}: TLS needs SSL or SASL_SSL"
        )
    mechanism = env.get("KAFKA_SASL_MECHANISM", "").strip().upper() or "PLAIN"
    if mechanism not in SASL_MECHANISMS:
        raise SettingsError(
            f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, got {mechanism!r}"
        )
    username = env.get("KAFKA_SASL_USERNAME", "").strip()
    password = env.get("KAFKA_SASL_PASSWORD", "")
    password_file = env.get("KAFKA_SASL_PASSWORD_FILE", "").strip()
    if password and password_file:
        raise SettingsError("set KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
    if password_file:
        try:
            # One trailing line break is the file's, not the password's (as secrets mounts write).
            password = Path(password_file).read_text(encoding="utf-8").removesuffix("\n")
            password = password.removesuffix("\r")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SettingsError(
                f"KAFKA_SASL_PASSWORD_FILE cannot be read: {password_file!r} ({reason})"
            ) from None
        if not password:
            raise SettingsError(f"KAFKA_SASL_PASSWORD_FILE names an empty file: {password_file!r}")
    if sasl and not username:
        raise SettingsError(f"KAFKA_SECURITY_PROTOCOL {protocol} needs KAFKA_SASL_USERNAME")
    if sasl and not password:
        raise SettingsError(
            f"KAFKA_SECURITY_PROTOCOL {protocol} needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE"
        )
    files = {name: env.get(name, "").strip() for name in sorted(_SSL_VARIABLES)}
    for name, path in files.items():
        if path and not Path(path).is_file():
            raise SettingsError(f"{name} names a file that does not exist: {path!r}")
    if bool(files["KAFKA_SSL_CERTFILE"]) != bool(files["KAFKA_SSL_KEYFILE"]):
        raise SettingsError(
            "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (a client certificate and its key)"
        )
    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": username,
        "kafka_sasl_password": Secret(password),
        "kafka_ssl_cafile": files["KAFKA_SSL_CAFILE"],
        "kafka_ssl_certfile": files["KAFKA_SSL_CERTFILE"],
        "kafka_ssl_keyfile": files["KAFKA_SSL_KEYFILE"],
    }


_SASL_VARIABLES = {
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
}
_SSL_VARIABLES = {"KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"}
_SECURITY_VARIABLES = _SASL_VARIABLES | _SSL_VARIABLES
