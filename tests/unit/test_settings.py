"""Settings: each bad value, and each pair of values that contradict each other, stops the start."""

from __future__ import annotations

import pytest

from stream_app.queue_registry import QueueRegistry
from stream_app.settings import SettingsError, load_settings, longest_day_ms


def test_the_defaults_hold_together() -> None:
    settings = load_settings({})
    assert settings.max_queues == 2000
    assert settings.state_retention_hours == 48


@pytest.mark.parametrize("value", ["0", "-1", "many", "1000001"])
def test_max_queues_must_be_a_positive_integer(value: str) -> None:
    with pytest.raises(SettingsError, match="MAX_QUEUES"):
        load_settings({"MAX_QUEUES": value})


def test_a_zone_that_changes_its_clocks_has_a_25_hour_day() -> None:
    assert longest_day_ms(load_settings({}).zone) == 24 * 3_600_000
    assert longest_day_ms(load_settings({"TIME_ZONE": "Europe/Paris"}).zone) == 25 * 3_600_000


@pytest.mark.parametrize(
    ("env", "fits"),
    [
        ({"STATE_RETENTION_HOURS": "25", "CALL_TTL_HOURS": "6"}, True),  # 24 h + 15 min + 2 min
        ({"STATE_RETENTION_HOURS": "24", "CALL_TTL_HOURS": "6"}, False),
        ({"STATE_RETENTION_HOURS": "25", "TIME_ZONE": "Europe/Paris"}, False),  # 25 h day
        ({"STATE_RETENTION_HOURS": "26", "TIME_ZONE": "Europe/Paris"}, True),
        ({"STATE_RETENTION_HOURS": "25", "INTERVAL_MINUTES": "60"}, False),
        ({"STATE_RETENTION_HOURS": "25", "GRACE_SECONDS": "3600"}, False),
    ],
)
def test_the_retention_must_hold_a_local_day_an_interval_and_the_grace(
    env: dict[str, str], fits: bool
) -> None:
    if fits:
        load_settings(env)
    else:
        with pytest.raises(SettingsError, match=r"STATE_RETENTION_HOURS=.*set it to"):
            load_settings(env)


def test_calls_must_leave_the_call_table_before_the_window_state_forgets_them() -> None:
    load_settings({"STATE_RETENTION_HOURS": "48", "CALL_TTL_HOURS": "47"})
    with pytest.raises(SettingsError, match="CALL_TTL_HOURS=48 must be shorter"):
        load_settings({"STATE_RETENTION_HOURS": "48", "CALL_TTL_HOURS": "48"})


def test_the_registry_admits_known_queues_and_new_ones_while_there_is_room() -> None:
    registry = QueueRegistry("queue-registry", limit=2, client_options={})
    registry.known.add("sales")  # read from the topic
    assert registry.admit("sales") and registry.take_unsent() == []
    assert registry.admit("support")
    assert not registry.admit("billing")  # the third one
    assert registry.admit("support") and registry.admit("sales")
    assert registry.take_unsent() == ["support"]
    assert registry.take_unsent() == []
