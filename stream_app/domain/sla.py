"""Per-queue thresholds and SLA targets, loaded from the file named by SLA_CONFIG.

A typo in an SLA file would silently change what counts as "answered in time", so the
loader refuses anything it does not understand (unknown keys, duplicate YAML keys, wrong
types, impossible values) and names the file and the exact key path in its message.

Shape (YAML or TOML, chosen by the file's extension)::

    defaults: {service_level_seconds: 20, ...}     # over the built-in defaults
    queues:   {sales: {service_level_seconds: 10}} # over `defaults`, field by field
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml


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
    if path is None or os.fspath(path) == "":
        return SlaConfig()
    source = os.fspath(path)
    suffix = Path(source).suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise SlaConfigError(
            f"{source}: unsupported format {suffix or '(no extension)'}: use .yaml, .yml or .toml"
        )
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SlaConfigError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SlaConfigError(f"{source}: cannot read: {exc}") from None
    data: object
    try:
        data = tomllib.loads(text) if suffix == ".toml" else yaml.load(text, Loader=_StrictLoader)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        kind = "TOML" if suffix == ".toml" else "YAML"
        raise SlaConfigError(f"{source}: not valid {kind}: {exc}") from None
    return parse_sla_config(data, source=source)


def parse_sla_config(data: object, *, source: str) -> SlaConfig:
    """Validate already-parsed file content; an empty document means all defaults."""
    top = _mapping(data, "", source, allow_none=True)
    _no_unknown_keys(top, ("defaults", "queues"), "", source)
    default = _queue_sla(QueueSla(), top.get("defaults"), "defaults", source)
    queues: dict[str, QueueSla] = {}
    for name, overrides in _mapping(top.get("queues"), "queues", source, allow_none=True).items():
        if not isinstance(name, str) or not name:
            raise SlaConfigError(
                f"{source}: queues: queue name {name!r} must be a non-empty string (quote it)"
            )
        queues[name] = _queue_sla(default, overrides, _path("queues", name), source)
    return SlaConfig(default=default, queues=MappingProxyType(queues))


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are resolved by the base class
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
}
_FIELD_NAMES = tuple(f.name for f in fields(QueueSla))
assert set(_RULES) == set(_FIELD_NAMES), "every QueueSla field needs a validation rule"


def _queue_sla(base: QueueSla, data: object, path: str, source: str) -> QueueSla:
    overrides = _mapping(data, path, source, allow_none=True)
    _no_unknown_keys(overrides, _FIELD_NAMES, path, source)
    clean: dict[str, Any] = {}
    for name, value in overrides.items():
        check, must_be = _RULES[name]
        result = check(value)
        if result is None:
            raise SlaConfigError(
                f"{source}: {_path(path, name)} must be {must_be}, got {_shorten(value)}"
            )
        clean[name] = result
    return replace(base, **clean)


def _mapping(data: object, path: str, source: str, *, allow_none: bool) -> Mapping[Any, Any]:
    if data is None and allow_none:
        return {}
    if not isinstance(data, Mapping):
        where = path or "the top level"
        raise SlaConfigError(f"{source}: {where} must be a mapping, got {_shorten(data)}")
    return data


def _no_unknown_keys(data: Mapping[Any, Any], known: tuple[str, ...], path: str, src: str) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
            raise SlaConfigError(f"{src}: unknown key {_path(path, str(key))}{hint}")


def _path(parent: str, key: str) -> str:
    """A TOML-style dotted key path; a key that is not a bare word is quoted."""
    bare = key and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in key)
    part = key if bare else f'"{key}"'
    return f"{parent}.{part}" if parent else part


def _shorten(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
