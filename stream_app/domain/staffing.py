"""Staffing estimates of contract §6: Erlang C and the expected wait of a caller joining now.

Erlang C (the M/M/N queue) is computed from the Erlang B recursion
`B(0) = 1, B(n) = A·B(n-1) / (n + A·B(n-1))`, then `C = N·B / (N - A·(1 - B))`: every step
stays within [0, 1], so it neither overflows (the textbook form divides A^N/N! by a sum of such
terms, which overflows a float past N ≈ 170) nor loses precision for hundreds of agents.
"""

from __future__ import annotations

import math

TRAFFIC_PERIOD_SECONDS = 900.0  # offered(15m) * AHT / 900 s: the offered load in Erlangs


def _erlang_b(n: int, a: float) -> float:
    b = 1.0
    for k in range(1, n + 1):
        b = a * b / (k + a * b)
    return b


def _c_from_b(n: int, a: float, b: float) -> float:
    return 1.0 if n <= a else n * b / (n - a * (1.0 - b))


def erlang_c(n: int, a: float) -> float:
    """The probability that a call waits, with `n` agents and `a` Erlangs of traffic; 1 where
    n ≤ a (the queue grows without bound: every call waits)."""
    _check(n, a)
    return _c_from_b(n, a, _erlang_b(n, a))


def service_level(n: int, a: float, target_seconds: float, aht_seconds: float) -> float:
    """The share of calls answered within `target_seconds`: 1 - C(n, a)·e^(-(n-a)·T/AHT)."""
    _check(n, a)
    return _service_level(n, a, erlang_c(n, a), target_seconds, aht_seconds)


def _service_level(n: int, a: float, c: float, target_seconds: float, aht_seconds: float) -> float:
    if n <= a:
        return 0.0  # the queue grows without bound: no share of calls is answered in time
    if aht_seconds <= 0:  # calls take no time: whoever waits, waits for nothing
        return 1.0 if target_seconds > 0 else 1.0 - c
    return 1.0 - c * math.exp(-(n - a) * target_seconds / aht_seconds)


def agents_required(
    offered_15m: int,
    aht_1h: float | None,
    service_level_seconds: float,
    target_service_level: float | None,
) -> int | None:
    """The fewest agents N > A whose service level reaches the target, A = offered(15m) *
    AHT(1h) / 900 s; None without offered calls, AHT or target (nothing to size against).

    Terminates for any target ≤ 1: as N grows past A, C(N, A) underflows to 0 and the service
    level becomes exactly 1.
    """
    if offered_15m <= 0 or aht_1h is None or target_service_level is None:
        return None
    if not 0 <= target_service_level <= 1 or aht_1h < 0 or service_level_seconds < 0:
        raise ValueError("a target service level is a ratio 0..1 and times are never negative")
    a = offered_15m * aht_1h / TRAFFIC_PERIOD_SECONDS
    if not math.isfinite(a):
        raise ValueError(f"traffic of {a} Erlangs")
    n, b = 0, 1.0
    while True:  # B(n) advanced one agent at a time: O(N) for the whole search
        n += 1
        b = a * b / (n + a * b)
        if n > a:
            c = _c_from_b(n, a, b)
            if _service_level(n, a, c, service_level_seconds, aht_1h) >= target_service_level:
                return n


def expected_wait_seconds(
    calls_waiting: int, available: int, busy: int, aht_1h: float | None
) -> float | None:
    """The estimate for a caller joining now: 0 when more agents are available than calls wait;
    else (waiting - available + 1) * AHT / N, N = agents available or busy (each of the N frees
    up once per AHT on average). None when N = 0 or there is no AHT of the last hour."""
    if available > calls_waiting:
        return 0.0
    agents = available + busy
    if agents <= 0 or aht_1h is None:
        return None
    return (calls_waiting - available + 1) * aht_1h / agents


def _check(n: int, a: float) -> None:
    if n < 0 or not (a >= 0 and math.isfinite(a)):
        raise ValueError(f"Erlang C needs n >= 0 agents and finite traffic >= 0, got {n}, {a}")
