"""The `queue-live` record (contract §7) and when it is published, without a broker."""

from __future__ import annotations

from types import MappingProxyType

from stream_app.domain.live import (
    LiveReadings,
    LiveThrottle,
    fingerprint,
    live_record,
    queue_now,
)
from stream_app.domain.model import Contribution
from stream_app.domain.queues import WINDOWS
from stream_app.domain.sla import QueueSla, SlaConfig
from stream_app.domain.staffing import agents_required
from tests.unit.dict_store import DictStore
from tests.unit.test_queues import MIN, T0, Feeder, S, abandoned, answered, at, handled, make

SLA = SlaConfig(queues=MappingProxyType({"vip": QueueSla(target_asa_seconds=10)}))


def centre() -> tuple[Feeder, int]:
    """sales at 10:05: two answered calls (3 s and 25 s), one abandon after 48 s, one call
    waiting since 10:04:00, one since 10:04:30."""
    stage = make(DictStore(), sla=SLA)
    feed = Feeder(stage)
    feed("sales", "c1", Contribution(answered=answered(60, 3, 2), handled=handled(300, 200)))
    feed("sales", "c2", Contribution(answered=answered(120, 25, 20)))
    feed("sales", "c3", Contribution(abandoned=abandoned(200, 48)))
    feed("sales", "w1", Contribution(waiting_since=at(240)))
    feed("sales", "w2", Contribution(waiting_since=at(270)))
    return feed, at(300)


def test_the_record_holds_every_window_waiting_calls_and_targets() -> None:
    feed, now = centre()
    record = live_record(queue_now(feed.stage, SLA, "sales", now), as_of_ms=now + 250)
    assert set(record["windows"]) == set(WINDOWS)
    interval = record["windows"]["interval"]
    assert (interval["offered"], interval["answered"], interval["abandoned"]) == (3, 2, 1)
    assert interval["asa_seconds"] == 14.0
    assert interval["service_level"] == 1 / 3
    assert interval["abandon_rate"] == 1 / 3
    assert interval["aht_seconds"] == 200.0
    assert interval["longest_wait_seconds"] == 48.0
    assert record["windows"]["15m"]["answered"] == 2
    assert (record["calls_waiting"], record["oldest_waiting_seconds"]) == (2, 60.0)
    assert record["targets"]["target_service_level"] == 0.8
    assert record["stream_time"] == "2026-03-02T10:05:00Z"
    assert record["as_of"] == "2026-03-02T10:05:00.250Z"
    # No agent served the queue: null, never a made-up 0. Agents required come from the calls
    # alone (Erlang C on the offered calls of 15 minutes and the AHT of the hour).
    assert record["agents"] is None
    assert record["expected_wait_seconds"] is None
    assert interval["occupancy"] is None
    assert record["agents_required"] == agents_required(
        record["windows"]["15m"]["offered"], record["windows"]["1h"]["aht_seconds"], 20, 0.8
    )
    assert record["agents_required"] is not None


def test_an_idle_queue_has_null_means_and_no_oldest_wait() -> None:
    stage = make(DictStore(), sla=SLA)
    record = live_record(queue_now(stage, SLA, "vip", T0), as_of_ms=T0)
    assert record["calls_waiting"] == 0
    assert record["oldest_waiting_seconds"] is None
    assert record["windows"]["today"]["asa_seconds"] is None
    assert record["windows"]["today"]["offered"] == 0
    assert record["targets"]["target_asa_seconds"] == 10  # the queue's own


def test_stream_time_and_ageing_alone_are_no_change_but_a_new_call_is() -> None:
    feed, now = centre()
    before = fingerprint(queue_now(feed.stage, SLA, "sales", now))
    later = queue_now(feed.stage, SLA, "sales", now + 20 * S)
    assert later.oldest_waiting_seconds == 80.0
    assert fingerprint(later) == before
    feed("sales", "c4", Contribution(answered=answered(310, 5, 5)))
    assert fingerprint(queue_now(feed.stage, SLA, "sales", now + 20 * S)) != before


def test_a_minute_leaving_a_rolling_window_is_a_change() -> None:
    feed, now = centre()
    before = fingerprint(queue_now(feed.stage, SLA, "sales", now))
    assert fingerprint(queue_now(feed.stage, SLA, "sales", now + 15 * MIN)) != before


def test_throttle_sends_changes_once_per_second_and_refreshes_unchanged_records() -> None:
    throttle = LiveThrottle(refresh_ms=5000)
    wall = 1_000_000_000_300
    assert throttle.due("q", ("a",), wall)  # never sent
    throttle.sent("q", ("a",), wall)
    assert not throttle.due("q", ("b",), wall + 600)  # the same second: held back
    assert throttle.due("q", ("b",), wall + 750)  # the next second: sent
    throttle.sent("q", ("b",), wall + 750)
    assert not throttle.due("q", ("b",), wall + 2000)  # unchanged
    assert not throttle.due("q", ("b",), wall + 5749)
    assert throttle.due("q", ("b",), wall + 5750)  # re-sent: its owner is alive
    assert throttle.due("other", ("b",), wall + 800)  # per queue


def test_a_held_back_change_is_sent_at_the_next_tick() -> None:
    throttle = LiveThrottle()
    wall = 1_000_000_000_000
    throttle.sent("q", ("a",), wall)
    assert not throttle.due("q", ("b",), wall + 10)
    assert throttle.due("q", ("b",), wall + 1000)  # compared with what was sent, not seen


def test_a_queue_that_comes_back_is_published_at_once() -> None:
    throttle = LiveThrottle()
    throttle.sent("q", ("a",), 5000)
    throttle.forget("q")
    assert throttle.due("q", ("a",), 5001)


def test_readings_follow_live_calls_at_once_and_old_corrections_within_a_minute() -> None:
    feed, now = centre()  # 10:05, interval 10:00-10:15
    readings = LiveReadings(feed.stage, SLA)
    first = readings.read("sales", now)
    assert readings.full_readings == 1
    # Nothing changed: the last reading, at the new stream time (the oldest call aged).
    again = readings.read("sales", now + 5 * S)
    assert readings.full_readings == 1
    assert again.oldest_waiting_seconds == 65.0 and again.windows == first.windows
    # A call answered now, one that starts waiting, one in the previous interval: at once.
    feed("sales", "c4", Contribution(answered=answered(305, 4, 4)))
    assert readings.read("sales", now + 6 * S).windows["15m"].answered == 3
    feed("sales", "w3", Contribution(waiting_since=at(306)))
    assert readings.read("sales", now + 7 * S).calls_waiting == 3
    feed("sales", "p1", Contribution(answered=answered(-60, 9, 9)))  # 09:59
    assert readings.read("sales", now + 8 * S).windows["1h"].answered == 4
    # A correction to an older interval (09:40) shows at the next minute's full reading.
    feed("sales", "o1", Contribution(answered=answered(-1200, 9, 9)))
    assert readings.read("sales", now + 9 * S).windows["1h"].answered == 4
    assert readings.read("sales", now + 60 * S).windows["1h"].answered == 5
    # Every reading equals a full one but for that minute's delay.
    assert readings.read("sales", now + 61 * S) == queue_now(feed.stage, SLA, "sales", now + 61 * S)
