"""Per-queue thresholds and SLA targets, loaded from the file named by SLA_CONFIG.

A typo in an SLA file would silently change what counts as "answered in time", so the
loader refuses anything it does not understand (unknown keys, duplicate YAML keys, wrong
types, impossible values) and names the file and the exact key path in its message.

Shape (YAML or TOML, chosen by the file's extension)::

    defaults: {service_level_seconds: 20, ...}     # over the built-in defaults
    queues:   {sales: {service_level_seconds: 10}} # over `defaults`, field by field
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from stream_app.domain.config_files import (
    key_path,
    mapping,
    no_unknown_keys,
    read_config_file,
    shorten,
)


@dataclass(frozen=True, slots=True)
class QueueSla:
    """Thresholds that classify calls, and targets that alert rules compare figures with."""

    service_level_seconds: float = 20.0  # answered within this counts toward service level
    short_abandon_seconds: float = 5.0  # abandons quicker than this are short abandons
    target_service_level: float = 0.8  # ratio 0..1
    target_asa_seconds: float = 30.0
    target_abandon_rate: float = 0.05  # ratio 0..1
    max_oldest_waiting_seconds: float = 120.0
    max_calls_waiting: int = 10
    max_occupancy: float = 0.9  # busy / (busy + available) of the queue's agents; above burns out

    @property
    def service_level_ms(self) -> int:
        return round(self.service_level_seconds * 1000)

    @property
    def short_abandon_ms(self) -> int:
        return round(self.short_abandon_seconds * 1000)


@dataclass(frozen=True)
class SlaConfig:
    """Every queue's SLA; read-only, so all stages classify a call with the same thresholds."""

    default: QueueSla = QueueSla()
    queues: Mapping[str, QueueSla] = field(default_factory=lambda: MappingProxyType({}))

    def for_queue(self, queue: str | None) -> QueueSla:
        """A queue not named in the file gets the defaults."""
        if queue is None:
            return self.default
        return self.queues.get(queue, self.default)


class SlaConfigError(ValueError):
    """The SLA file cannot be used; the message names the file and the key path."""


def load_sla_config(path: str | os.PathLike[str] | None) -> SlaConfig:
    """Load and validate an SLA file; no path (None or "") means the built-in defaults."""
    file = read_config_file(path, SlaConfigError)
    return SlaConfig() if file is None else parse_sla_config(file.data, source=file.source)


def parse_sla_config(data: object, *, source: str) -> SlaConfig:
    """Validate already-parsed file content; an empty document means all defaults."""
    top = mapping(data, "", source, SlaConfigError)
    no_unknown_keys(top, ("defaults", "queues"), "", source, SlaConfigError)
    default = _queue_sla(QueueSla(), top.get("defaults"), "defaults", source)
    queues: dict[str, QueueSla] = {}
    for name, overrides in mapping(top.get("queues"), "queues", source, SlaConfigError).items():
        if not isinstance(name, str) or not name:
            raise SlaConfigError(
                f"{source}: queues: queue name {name!r} must be a non-empty string (quote it)"
            )
        queues[name] = _queue_sla(default, overrides, key_path("queues", name), source)
    return SlaConfig(default=default, queues=MappingProxyType(queues))


def _positive_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number > 0 else None


def _non_negative_number(value: object) -> float | None:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return _positive_number(value)


def _ratio(value: object) -> float | None:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    number = _positive_number(value)
    return number if number is not None and number <= 1 else None


def _positive_ratio(value: object) -> float | None:
    """0 is refused: a limit of 0 would alert whenever any agent takes a call."""
    number = _positive_number(value)
    return number if number is not None and number <= 1 else None


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


# field → (validator returning the clean value or None, what the value must be)
_RULES: dict[str, tuple[Callable[[object], float | int | None], str]] = {
    "service_level_seconds": (_positive_number, "a positive number"),
    # 0 is allowed: it turns short abandons off (every abandon then counts against the SLA)
    "short_abandon_seconds": (_non_negative_number, "a number >= 0"),
    "target_service_level": (_ratio, "a ratio from 0 to 1 (0.8 means 80%)"),
    "target_asa_seconds": (_positive_number, "a positive number"),
    "target_abandon_rate": (_ratio, "a ratio from 0 to 1 (0.05 means 5%)"),
    "max_oldest_waiting_seconds": (_positive_number, "a positive number"),
    "max_calls_waiting": (_positive_int, "a positive integer"),
    "max_occupancy": (_positive_ratio, "a ratio above 0, at most 1 (0.9 means 90%)"),
}
_FIELD_NAMES = tuple(f.name for f in fields(QueueSla))
assert set(_RULES) == set(_FIELD_NAMES), "every QueueSla field needs a validation rule"


def _queue_sla(base: QueueSla, data: object, path: str, source: str) -> QueueSla:
    overrides = mapping(data, path, source, SlaConfigError)
    no_unknown_keys(overrides, _FIELD_NAMES, path, source, SlaConfigError)
    clean: dict[str, Any] = {}
    for name, value in overrides.items():
        check, must_be = _RULES[name]
        result = check(value)
        if result is None:
            raise SlaConfigError(
                f"{source}: {key_path(path, name)} must be {must_be}, got {shorten(value)}"
            )
        clean[name] = result
    return replace(base, **clean)
