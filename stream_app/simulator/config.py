"""The simulated call center: built-in defaults, overridden by a small YAML or TOML file.

A typo in a simulation file would silently simulate something else, so the loader refuses
what it does not understand (unknown keys, duplicate YAML keys, wrong types, impossible
values) and names the file and the exact key path, as SLA files do. Shape::

    time_zone: UTC             # the hours of `profile` and of hourly `agents` are local here
    profile: [0.05, ...]       # 24 hourly multipliers of every queue's arrival rate
    ts_format: rfc3339         # or epoch_ms
    defaults: {talk_seconds: {dist: lognormal, mean: 240, sd: 150}}  # over the built-in queue
    queues: {sales: {arrivals_per_hour: 60, agents: 7}}              # replaces the built-in queues
    breaches: [{queue: sales, minutes: 30, agents: 0, after_minutes: 0}]
    # agents: every queue's agents log in and out with its staffing; per queue, optionally
    queues: {sales: {breaks: [{after_minutes: 120, minutes: 15, reason: break}],
                     also_serves: [support], also_serves_hours: [13, 14, 15]}}
    faults: {duplicate: 0.01, reorder: 0.02, late: 0.005, malformed: 0.002}

A duration is seconds: a number (constant) or `{dist: constant|uniform|exponential|lognormal}`
with `value`, `low`/`high`, `mean` or `mean`/`sd`, and an optional cap `max`.
"""

from __future__ import annotations

import math
import os
import random
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream_app.domain.config_files import (
    key_path,
    mapping,
    no_unknown_keys,
    read_config_file,
    shorten,
)


class SimConfigError(ValueError):
    """The simulation file or an option cannot be used; the message names the key."""


# -- distributions ---------------------------------------------------------------------------

DIST_KINDS: tuple[str, ...] = ("constant", "uniform", "exponential", "lognormal")


@dataclass(frozen=True, slots=True)
class Dist:
    """A duration distribution in seconds; samples are whole milliseconds, never negative."""

    kind: str = "constant"
    mean: float = 0.0  # the value of a constant, the mean of exponential and lognormal
    sd: float = 0.0  # lognormal
    low: float = 0.0  # uniform
    high: float = 0.0  # uniform
    max: float | None = None  # cap: a long tail, but no call lasts a week

    @classmethod
    def constant(cls, value: float) -> Dist:
        return cls("constant", mean=value)

    @classmethod
    def uniform(cls, low: float, high: float) -> Dist:
        return cls("uniform", low=low, high=high)

    @classmethod
    def exponential(cls, mean: float, max: float | None = None) -> Dist:
        return cls("exponential", mean=mean, max=max)

    @classmethod
    def lognormal(cls, mean: float, sd: float, max: float | None = None) -> Dist:
        return cls("lognormal", mean=mean, sd=sd, max=max)

    def sample_ms(self, rng: random.Random) -> int:
        if self.kind == "constant":
            seconds = self.mean
        elif self.kind == "uniform":
            seconds = rng.uniform(self.low, self.high)
        elif self.kind == "exponential":
            seconds = rng.expovariate(1 / self.mean)
        else:
            # The (mu, sigma) of the normal whose exponential has this mean and sd.
            sigma2 = math.log(1 + (self.sd / self.mean) ** 2)
            seconds = rng.lognormvariate(math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2))
        if self.max is not None:
            seconds = min(seconds, self.max)
        return max(0, round(seconds * 1000))

    def describe(self) -> dict[str, object]:
        """The file form (for --print-config)."""
        if self.kind == "constant":
            return {"dist": "constant", "value": self.mean}
        out: dict[str, object] = {"dist": self.kind}
        if self.kind == "uniform":
            out.update(low=self.low, high=self.high)
        else:
            out["mean"] = self.mean
            if self.kind == "lognormal":
                out["sd"] = self.sd
        if self.max is not None:
            out["max"] = self.max
        return out


# -- the model's parameters ------------------------------------------------------------------

# A weekday of a typical inbound center: quiet nights, a morning peak, a smaller afternoon one.
DEFAULT_PROFILE: tuple[float, ...] = (
    0.05, 0.03, 0.02, 0.02, 0.03, 0.06, 0.15, 0.40, 0.75, 0.95, 1.00, 0.95,
    0.85, 0.90, 0.95, 0.90, 0.80, 0.65, 0.45, 0.30, 0.20, 0.15, 0.10, 0.07,
)  # fmt: skip


# Defaults of the duration fields (module constants: a dataclass default must not be a call).
_IVR_SECONDS = Dist.lognormal(40, 20, max=600)
_ROUTING_SECONDS = Dist.uniform(0, 1)
_RING_SECONDS = Dist.uniform(2, 6)
_TALK_SECONDS = Dist.lognormal(240, 150, max=3600)
_WRAPUP_SECONDS = Dist.exponential(30, max=600)
_PATIENCE_SECONDS = Dist.exponential(180, max=3600)
_SHORT_PATIENCE_SECONDS = Dist.uniform(0.5, 4.5)
_VOICEMAIL_SECONDS = Dist.uniform(10, 60)
_LATE_SECONDS = Dist.uniform(120, 600)


@dataclass(frozen=True, slots=True)
class Break:
    """Every agent of the queue is not ready for `minutes`, `after_minutes` into each session.

    Agents stagger it, so a queue is never emptied at once: agent number i (from 0) takes it
    (i mod 4) x `minutes` later. One who is busy then takes it after the call's work."""

    after_minutes: float
    minutes: float
    reason: str = "break"


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """One queue (skill), its callers and its agents. Durations are in seconds."""

    arrivals_per_hour: float = 30.0  # Poisson rate at profile multiplier 1.0
    profile: tuple[float, ...] | None = None  # this queue's own hourly multipliers
    agents: int | tuple[int, ...] = 4  # a constant, or 24 values by local hour
    ivr_seconds: Dist = _IVR_SECONDS
    ivr_only: float = 0.1  # share of callers served by the IVR (or hanging up in it)
    routing_seconds: Dist = _ROUTING_SECONDS  # IVR end to queue_entered
    ring_seconds: Dist = _RING_SECONDS  # an offered agent answers after this
    no_answer: float = 0.03  # share of offers an agent does not answer
    no_answer_ring_seconds: float = 15.0  # an unanswered offer rings this long
    no_answer_pause_seconds: float = 60.0  # the agent is not ready for this long afterwards
    talk_seconds: Dist = _TALK_SECONDS
    wrapup_seconds: Dist = _WRAPUP_SECONDS  # after-call work
    patience_seconds: Dist = _PATIENCE_SECONDS  # from first joining a queue
    short_abandon_share: float = 0.02  # callers who give up within seconds
    short_patience_seconds: Dist = _SHORT_PATIENCE_SECONDS
    timeout_seconds: float | None = None  # a queue visit longer than this flows out
    overflow: str | None = None  # where a timed-out call goes; none: voicemail, then hang up
    voicemail_seconds: Dist = _VOICEMAIL_SECONDS
    emit_offers: bool = True  # agent_offered events (not every source has them)
    emit_ivr_ended: bool = True  # ivr_ended events (a source without IVR has none)
    breaks: tuple[Break, ...] = ()  # not-ready spans of each agent session (none by default)
    also_serves: tuple[str, ...] = ()  # other queues this queue's agents also take calls of
    also_serves_hours: tuple[int, ...] | None = None  # local hours they do; None: all day

    def serves_at(self, own: str, hour: int) -> tuple[str, ...]:
        """The queues this queue's agents serve at local `hour`, their own first."""
        hours = self.also_serves_hours
        if hours is not None and hour not in hours:
            return (own,)
        return (own, *self.also_serves)

    def agents_at(self, hour: int) -> int:
        return self.agents if isinstance(self.agents, int) else self.agents[hour]

    def max_agents(self) -> int:
        return self.agents if isinstance(self.agents, int) else max(self.agents)


@dataclass(frozen=True, slots=True)
class Breach:
    """`queue` has `agents` on duty from `after_minutes` after the start, for `minutes`."""

    queue: str
    minutes: float
    agents: int = 0
    after_minutes: float = 0.0


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Shares of events hit by each fault when faults are on (`--faults`)."""

    duplicate: float = 0.01  # sent twice, the same bytes (a producer retry)
    reorder: float = 0.02  # overtaken by the call's next event (or held a few seconds)
    late: float = 0.005  # held back, then sent: a correction to figures already out
    late_seconds: Dist = _LATE_SECONDS
    malformed: float = 0.002  # followed by a broken copy: not JSON, a field missing, bad type


@dataclass(frozen=True)
class SimConfig:
    queues: Mapping[str, QueueConfig]
    profile: tuple[float, ...] = DEFAULT_PROFILE
    time_zone: str = "UTC"
    ts_format: str = "rfc3339"
    breaches: tuple[Breach, ...] = ()
    faults: FaultConfig = FaultConfig()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def profile_of(self, queue: str) -> tuple[float, ...]:
        own = self.queues[queue].profile
        return own if own is not None else self.profile

    def with_breaches(self, extra: tuple[Breach, ...]) -> SimConfig:
        """Add breaches (from the command line), checked like the file's."""
        for breach in extra:
            if breach.queue not in self.queues:
                raise SimConfigError(
                    f"--breach: no queue {breach.queue!r} (queues: {', '.join(self.queues)})"
                )
        return replace(self, breaches=self.breaches + extra)

    def to_data(self) -> dict[str, Any]:
        """The complete configuration in the file's shape: a starting point for a file."""

        def value(v: object) -> object:
            if isinstance(v, Dist):
                return v.describe()
            if isinstance(v, tuple):
                return [record(item) if isinstance(item, Break) else item for item in v]
            return v

        def record(obj: Any) -> dict[str, object]:
            return {f.name: value(getattr(obj, f.name)) for f in fields(obj)}

        return {
            "time_zone": self.time_zone,
            "ts_format": self.ts_format,
            "profile": list(self.profile),
            "queues": {name: record(q) for name, q in self.queues.items()},
            "breaches": [record(b) for b in self.breaches],
            "faults": record(self.faults),
        }


def _staffed(peak: int, profile: tuple[float, ...]) -> tuple[int, ...]:
    """Agents by hour following the load (never fewer than one: calls always get answered)."""
    top = max(profile)
    return tuple(max(1, math.ceil(peak * p / top)) for p in profile)


def default_queues() -> dict[str, QueueConfig]:
    """Three queues of a retail bank: fast sales, slower support, a small VIP line that
    overflows into support after a minute."""
    base = QueueConfig()
    return {
        "sales": replace(
            base,
            arrivals_per_hour=60,
            agents=_staffed(6, DEFAULT_PROFILE),
            talk_seconds=Dist.lognormal(240, 150, max=3600),
            timeout_seconds=600,
        ),
        "support": replace(
            base,
            arrivals_per_hour=40,
            agents=_staffed(7, DEFAULT_PROFILE),
            talk_seconds=Dist.lognormal(420, 240, max=3600),
            wrapup_seconds=Dist.exponential(60, max=600),
            patience_seconds=Dist.exponential(300, max=3600),
            timeout_seconds=900,
        ),
        "vip": replace(
            base,
            arrivals_per_hour=10,
            agents=_staffed(3, DEFAULT_PROFILE),
            ivr_seconds=Dist.lognormal(15, 5, max=120),
            ivr_only=0.02,
            talk_seconds=Dist.lognormal(300, 120, max=3600),
            patience_seconds=Dist.exponential(240, max=3600),
            short_abandon_share=0.01,
            timeout_seconds=60,
            overflow="support",
        ),
    }


def default_config() -> SimConfig:
    return SimConfig(queues=MappingProxyType(default_queues()))


# -- loading ---------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str] | None) -> SimConfig:
    """Load and validate a simulation file; no path (None or "") means the built-in defaults."""
    file = read_config_file(path, SimConfigError)
    return default_config() if file is None else parse_config(file.data, source=file.source)


_TOP_KEYS = ("time_zone", "profile", "ts_format", "defaults", "queues", "breaches", "faults")
_TS_FORMATS = ("rfc3339", "epoch_ms")


def parse_config(data: object, *, source: str) -> SimConfig:
    """Validate already-parsed file content; an empty document means all defaults."""
    top = mapping(data, "", source, SimConfigError)
    no_unknown_keys(top, _TOP_KEYS, "", source, SimConfigError)
    zone = top.get("time_zone", "UTC")
    if not isinstance(zone, str) or not _is_zone(zone):
        raise SimConfigError(
            f"{source}: time_zone must be an IANA time zone such as Europe/Paris, got {shorten(zone)}"
        )
    ts_format = top.get("ts_format", "rfc3339")
    if ts_format not in _TS_FORMATS:
        raise SimConfigError(
            f"{source}: ts_format must be one of {', '.join(_TS_FORMATS)}, got {shorten(ts_format)}"
        )
    profile = _profile(top["profile"], "profile", source) if "profile" in top else DEFAULT_PROFILE
    base = _record(QueueConfig(), top.get("defaults"), "defaults", source, _QUEUE_RULES)
    queues: dict[str, QueueConfig] = {}
    if "queues" in top:
        given = mapping(top["queues"], "queues", source, SimConfigError)
        if not given:
            raise SimConfigError(f"{source}: queues must name at least one queue")
        for name, value in given.items():
            path = key_path("queues", _queue_name(name, source))
            queues[name] = _record(base, value, path, source, _QUEUE_RULES)
    else:
        # The built-in queues: each one's own settings over the file's `defaults`.
        generic = QueueConfig()
        for name, builtin in default_queues().items():
            own = {
                f.name: getattr(builtin, f.name)
                for f in fields(builtin)
                if getattr(builtin, f.name) != getattr(generic, f.name)
            }
            queues[name] = replace(base, **own)
    for name, queue in queues.items():
        _check_queue(name, queue, queues, source)
    faults = _record(FaultConfig(), top.get("faults"), "faults", source, _FAULT_RULES)
    breaches = _breaches(top.get("breaches"), queues, source)
    return SimConfig(
        queues=MappingProxyType(queues),
        profile=profile,
        time_zone=zone,
        ts_format=ts_format,
        breaches=breaches,
        faults=faults,
    )


def _check_queue(
    name: str, queue: QueueConfig, queues: Mapping[str, QueueConfig], src: str
) -> None:
    path = key_path("queues", name)
    for other in queue.also_serves:
        if other == name or other not in queues:
            raise SimConfigError(
                f"{src}: {path}.also_serves must name other queues, got {other!r} "
                f"(queues: {', '.join(queues)})"
            )
    if queue.overflow is not None:
        if queue.overflow == name:
            raise SimConfigError(f"{src}: {path}.overflow must name another queue, not itself")
        if queue.overflow not in queues:
            raise SimConfigError(
                f"{src}: {path}.overflow names no queue: {queue.overflow!r} "
                f"(queues: {', '.join(queues)})"
            )
        if queue.timeout_seconds is None:
            raise SimConfigError(f"{src}: {path}.overflow needs timeout_seconds")


def _entries(
    value: object, path: str, kind: type, required: tuple[str, ...], src: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """A list of mappings, each with only `kind`'s fields and the `required` ones: (path, entry)."""
    if not isinstance(value, list):
        raise SimConfigError(f"{src}: {path} must be a list, got {shorten(value)}")
    known = tuple(f.name for f in fields(kind))
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        entry = mapping(item, where, src, SimConfigError)
        no_unknown_keys(entry, known, where, src, SimConfigError)
        for name in required:
            if name not in entry:
                raise SimConfigError(f"{src}: {where}.{name} is required")
        yield where, entry


def _breaches(data: object, queues: Mapping[str, QueueConfig], src: str) -> tuple[Breach, ...]:
    if data is None:
        return ()
    out: list[Breach] = []
    for path, entry in _entries(data, "breaches", Breach, ("queue", "minutes"), src):
        queue = entry["queue"]
        if queue not in queues:
            raise SimConfigError(
                f"{src}: {path}.queue names no queue: {shorten(queue)} (queues: {', '.join(queues)})"
            )
        out.append(
            Breach(
                queue=queue,
                minutes=_check(_positive, entry["minutes"], f"{path}.minutes", src),
                agents=_check(_count, entry.get("agents", 0), f"{path}.agents", src),
                after_minutes=_check(
                    _non_negative, entry.get("after_minutes", 0), f"{path}.after_minutes", src
                ),
            )
        )
    return tuple(out)


# -- value rules -------------------------------------------------------------------------------

Rule = Callable[[object, str, str], object]  # (value, path, source) -> clean value, or raises


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _positive(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _non_negative(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _ratio(value: object) -> float | None:
    number = _number(value)
    return number if number is not None and 0 <= number <= 1 else None


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


_MUST_BE: dict[Callable[[object], object], str] = {
    _positive: "a positive number",
    _non_negative: "a number >= 0",
    _ratio: "a ratio from 0 to 1 (0.05 means 5%)",
    _count: "an integer >= 0",
}


_T = TypeVar("_T")
_R = TypeVar("_R")


def _check(check: Callable[[object], _T | None], value: object, path: str, src: str) -> _T:
    result = check(value)
    if result is None:
        raise SimConfigError(f"{src}: {path} must be {_MUST_BE[check]}, got {shorten(value)}")
    return result


def _simple(check: Callable[[object], object]) -> Rule:
    return lambda value, path, src: _check(check, value, path, src)


def _optional(check: Callable[[object], object]) -> Rule:
    """`null` (or `none` in TOML, which has no null) turns the feature off."""

    def rule(value: object, path: str, src: str) -> object:
        if value is None or value == "none":
            return None
        return _check(check, value, path, src)

    return rule


def _boolean(value: object, path: str, src: str) -> bool:
    if not isinstance(value, bool):
        raise SimConfigError(f"{src}: {path} must be true or false, got {shorten(value)}")
    return value


def _profile(value: object, path: str, src: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != 24:
        raise SimConfigError(
            f"{src}: {path} must be a list of 24 hourly multipliers (hour 0 first), got {shorten(value)}"
        )
    out = tuple(_check(_non_negative, v, f"{path}[{i}]", src) for i, v in enumerate(value))
    if not any(out):
        raise SimConfigError(f"{src}: {path} must have at least one hour above 0")
    return out


def _agents(value: object, path: str, src: str) -> int | tuple[int, ...]:
    if isinstance(value, list):
        if len(value) != 24:
            raise SimConfigError(
                f"{src}: {path} must be an integer or a list of 24 (by local hour), got {len(value)} values"
            )
        return tuple(_check(_count, v, f"{path}[{i}]", src) for i, v in enumerate(value))
    if _count(value) is None:
        raise SimConfigError(
            f"{src}: {path} must be an integer >= 0 or a list of 24 (by local hour), got {shorten(value)}"
        )
    return _check(_count, value, path, src)


def _breaks(value: object, path: str, src: str) -> tuple[Break, ...]:
    out = []
    for where, entry in _entries(value, path, Break, ("after_minutes", "minutes"), src):
        reason = entry.get("reason", "break")
        if not isinstance(reason, str) or not reason or "|" in reason or not reason.isprintable():
            raise SimConfigError(
                f"{src}: {where}.reason must be a printable name without '|', got {shorten(reason)}"
            )
        out.append(
            Break(
                after_minutes=_check(
                    _non_negative, entry["after_minutes"], f"{where}.after_minutes", src
                ),
                minutes=_check(_positive, entry["minutes"], f"{where}.minutes", src),
                reason=reason,
            )
        )
    return tuple(out)


def _queue_names(value: object, path: str, src: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SimConfigError(f"{src}: {path} must be a list of queue names, got {shorten(value)}")
    return tuple(dict.fromkeys(value))


def _hours(value: object, path: str, src: str) -> tuple[int, ...] | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, list) or not all(type(v) is int and 0 <= v <= 23 for v in value):
        raise SimConfigError(
            f"{src}: {path} must be a list of local hours 0..23 (or null: all day), got {shorten(value)}"
        )
    return tuple(sorted(set(value)))


def _queue_ref(value: object, path: str, src: str) -> str | None:
    if value is None or value == "none":
        return None
    if not isinstance(value, str) or not value:
        raise SimConfigError(f"{src}: {path} must be a queue name, got {shorten(value)}")
    return value


_DIST_KEYS: dict[str, tuple[str, ...]] = {
    "constant": ("value",),
    "uniform": ("low", "high"),
    "exponential": ("mean",),
    "lognormal": ("mean", "sd"),
}


def _dist(value: object, path: str, src: str) -> Dist:
    if _non_negative(value) is not None:
        return Dist.constant(_check(_non_negative, value, path, src))
    if not isinstance(value, Mapping):
        raise SimConfigError(
            f"{src}: {path} must be seconds (a number) or a mapping with `dist`, got {shorten(value)}"
        )
    kind = value.get("dist")
    if kind not in _DIST_KEYS:
        raise SimConfigError(
            f"{src}: {path}.dist must be one of {', '.join(DIST_KINDS)}, got {shorten(kind)}"
        )
    needed = _DIST_KEYS[kind]
    capped = ("max",) if kind in ("exponential", "lognormal") else ()
    no_unknown_keys(value, ("dist", *needed, *capped), path, src, SimConfigError)
    for key in needed:
        if key not in value:
            raise SimConfigError(f"{src}: {path}.{key} is required for dist {kind}")
    cap = value.get("max")
    cap_value = None if cap is None else _check(_positive, cap, f"{path}.max", src)
    if kind == "constant":
        return Dist.constant(_check(_non_negative, value["value"], f"{path}.value", src))
    if kind == "uniform":
        low = _check(_non_negative, value["low"], f"{path}.low", src)
        high = _check(_non_negative, value["high"], f"{path}.high", src)
        if high < low:
            raise SimConfigError(f"{src}: {path}.high must be >= low ({low:g}), got {high:g}")
        return Dist.uniform(low, high)
    mean = _check(_positive, value["mean"], f"{path}.mean", src)
    if kind == "exponential":
        return Dist.exponential(mean, cap_value)
    sd = _check(_positive, value["sd"], f"{path}.sd", src)
    return Dist.lognormal(mean, sd, cap_value)


_QUEUE_RULES: dict[str, Rule] = {
    "arrivals_per_hour": _simple(_non_negative),
    "profile": lambda v, p, s: None if v is None else _profile(v, p, s),
    "agents": _agents,
    "ivr_seconds": _dist,
    "ivr_only": _simple(_ratio),
    "routing_seconds": _dist,
    "ring_seconds": _dist,
    "no_answer": _simple(_ratio),
    "no_answer_ring_seconds": _simple(_positive),
    "no_answer_pause_seconds": _simple(_non_negative),
    "talk_seconds": _dist,
    "wrapup_seconds": _dist,
    "patience_seconds": _dist,
    "short_abandon_share": _simple(_ratio),
    "short_patience_seconds": _dist,
    "timeout_seconds": _optional(_positive),
    "overflow": _queue_ref,
    "voicemail_seconds": _dist,
    "emit_offers": _boolean,
    "emit_ivr_ended": _boolean,
    "breaks": _breaks,
    "also_serves": _queue_names,
    "also_serves_hours": _hours,
}
_FAULT_RULES: dict[str, Rule] = {
    "duplicate": _simple(_ratio),
    "reorder": _simple(_ratio),
    "late": _simple(_ratio),
    "late_seconds": _dist,
    "malformed": _simple(_ratio),
}
assert set(_QUEUE_RULES) == {f.name for f in fields(QueueConfig)}, "every queue field needs a rule"
assert set(_FAULT_RULES) == {f.name for f in fields(FaultConfig)}, "every fault field needs a rule"


def _record(base: _R, data: object, path: str, src: str, rules: Mapping[str, Rule]) -> _R:
    overrides = mapping(data, path, src, SimConfigError)
    no_unknown_keys(overrides, tuple(rules), path, src, SimConfigError)
    clean = {
        name: rules[name](value, key_path(path, name), src) for name, value in overrides.items()
    }
    return replace(base, **clean)  # type: ignore[type-var]  # _R is always a dataclass here


# -- command-line values ---------------------------------------------------------------------

_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str) -> int:
    """Milliseconds of "90m", "2h", "1h30m", "45s", "1d"; raises SimConfigError."""
    raw = text.strip().lower()
    parts = _SPAN.findall(raw)
    if not raw or "".join(n + u for n, u in parts) != raw:
        raise SimConfigError(f"not a duration: {text!r} (examples: 90m, 2h, 1h30m, 45s, 1d)")
    total = round(sum(float(n) * _UNIT_MS[u] for n, u in parts))
    if total <= 0:
        raise SimConfigError(f"a duration must be positive, got {text!r}")
    return total


def parse_breach(text: str) -> Breach:
    """`QUEUE[:MINUTES[:AGENTS]]`: from the start, QUEUE has AGENTS (default 0) for MINUTES
    (default 30), then its normal staffing again."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise SimConfigError(f"--breach must be QUEUE[:MINUTES[:AGENTS]], got {text!r}")
    try:
        minutes = float(parts[1]) if len(parts) > 1 else 30.0
        agents = int(parts[2]) if len(parts) > 2 else 0
    except ValueError:
        raise SimConfigError(f"--breach must be QUEUE[:MINUTES[:AGENTS]], got {text!r}") from None
    if not (math.isfinite(minutes) and minutes > 0) or agents < 0:
        raise SimConfigError(f"--breach needs MINUTES > 0 and AGENTS >= 0, got {text!r}")
    return Breach(queue=parts[0], minutes=minutes, agents=agents)


# -- helpers ---------------------------------------------------------------------------------


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _queue_name(name: object, src: str) -> str:
    if not isinstance(name, str) or not name:
        raise SimConfigError(f"{src}: queues: queue name {name!r} must be a non-empty string")
    return name


__all__ = [
    "DEFAULT_PROFILE",
    "Breach",
    "Break",
    "Dist",
    "FaultConfig",
    "QueueConfig",
    "SimConfig",
    "SimConfigError",
    "default_config",
    "load_config",
    "parse_breach",
    "parse_config",
    "parse_duration",
]
