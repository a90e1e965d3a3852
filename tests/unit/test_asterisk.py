"""The Asterisk queue_log adapter against the format facts of docs/sources.md.

Fixtures are queue_log lines written here, one per verb of the table, in the file form
(``epoch|callid|queue|agent|EVENT|data...``) and the realtime form (Wazo's example lines);
then the produced events go through the engine's own domain code, and the connector loop
runs against a stand-in broker (commit only after delivery, state kept across runs).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError

from stream_app.domain.calls import CallState
from stream_app.domain.events import format_ts, parse_event
from stream_app.domain.model import Contribution
from stream_app.settings import Settings
from stream_app.sources import asterisk_cli, producer
from stream_app.sources.asterisk import (
    BadLine,
    Emitted,
    QueueLogMapper,
    Record,
    agent_name,
    load,
    parse_file_line,
    parse_local_time,
    summary,
)

T = 1_772_445_600  # 2026-03-02T10:00:00Z, epoch seconds
MS = 1000


def at(seconds: float) -> str:
    """The contract ts of T + seconds."""
    return format_ts(round((T + seconds) * MS))


def row(offset: int, callid: str, queue: str, agent: str, verb: str, *data: str) -> str:
    """One file-form line at T + offset seconds."""
    return "|".join([str(T + offset), callid, queue, agent, verb, *data])


def feed(mapper: QueueLogMapper, lines: Iterable[str]) -> list[Emitted]:
    out: list[Emitted] = []
    for number, text in enumerate(lines, start=1):
        out.extend(mapper.feed(text + "\n", number))
    return out


def events_of(
    lines: Iterable[str], form: str = "file", tz: tzinfo = UTC
) -> list[dict[str, object]]:
    return [event for _, event in feed(QueueLogMapper(form, tz), lines)]


def types(events: list[dict[str, object]]) -> list[str]:
    return [str(event["type"]) for event in events]


def without_ids(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in event.items() if k != "event_id"} for event in events]


def write(tmp_path: Path, lines: Iterable[str], name: str = "queue_log") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{text}\n" for text in lines))
    return path


ENTER = row(0, "1.1", "sales", "NONE", "ENTERQUEUE", "", "5551234", "1")
CONNECT = row(15, "1.1", "sales", "Agent/1001", "CONNECT", "15", "1.2", "3")


# -- the file form, verb by verb -------------------------------------------------------------


def test_the_file_form_example_line_parses_into_its_fields() -> None:
    record = parse_file_line("1366720340|1366720340.303267|MYQUEUE|SIP/8007|RINGNOANSWER|1000")
    assert record == Record(
        ts=1_366_720_340_000,
        callid="1366720340.303267",
        queue="MYQUEUE",
        agent="SIP/8007",
        verb="RINGNOANSWER",
        data=("1000",),
    )


def test_enterqueue_connect_and_complete_map_to_the_contract() -> None:
    complete = row(200, "1.1", "sales", "Agent/1001", "COMPLETECALLER", "15", "185", "1")
    events = events_of([ENTER, CONNECT, complete])
    assert without_ids(events) == [
        {"call_id": "1.1", "type": "queue_entered", "ts": at(0), "queue": "sales"},
        # offered when the ring started: the CONNECT's ts minus its ring time (data3)
        {
            "call_id": "1.1",
            "type": "agent_offered",
            "ts": at(12),
            "queue": "sales",
            "agent_id": "1001",
        },
        {
            "call_id": "1.1",
            "type": "call_answered",
            "ts": at(15),
            "queue": "sales",
            "agent_id": "1001",
        },
        {
            "call_id": "1.1",
            "type": "call_ended",
            "ts": at(200),
            "queue": "sales",
            "agent_id": "1001",
        },
        # queue_log has no after-call work: it ends with the call (contract §6)
        {
            "call_id": "1.1",
            "type": "wrapup_ended",
            "ts": at(200),
            "queue": "sales",
            "agent_id": "1001",
        },
    ]
    ids = [str(event["event_id"]) for event in events]
    assert len(set(ids)) == 5
    assert all(
        i.startswith("ast:") and i.endswith(":" + str(e["type"]))
        for i, e in zip(ids, events, strict=True)
    )
    # One CONNECT line, two events: the same line hash, two types.
    assert ids[1].rsplit(":", 1)[0] == ids[2].rsplit(":", 1)[0]


@pytest.mark.parametrize(
    "terminal",
    [
        ("COMPLETECALLER", "15", "185", "1"),
        ("COMPLETEAGENT", "15", "185", "1"),
        ("BLINDTRANSFER", "2000", "from-internal", "15", "185", "1"),
        ("ATTENDEDTRANSFER", "BRIDGE", "SIP/2000-0001", "15", "185", "1"),
        ("ATTENDEDTRANSFER", "APP", "Voicemail", "15", "185", "1"),
        (
            "ATTENDEDTRANSFER",
            "LINK",
            "Local/2000@x-0001;1",
            "Local/2000@x-0001;2",
            "15",
            "185",
            "1",
        ),
        ("TRANSFER", "2000", "from-internal", "15", "185", "1"),
    ],
    ids=lambda terminal: "-".join(terminal[:2]),
)
def test_every_end_of_an_answered_call_is_call_ended_at_its_line(terminal: tuple[str, ...]) -> None:
    mapper = QueueLogMapper()
    feed(mapper, [ENTER, CONNECT])
    assert mapper.open_calls == 1
    events = [
        event for _, event in feed(mapper, [row(200, "1.1", "sales", "Agent/1001", *terminal)])
    ]
    assert without_ids(events) == [
        {
            "call_id": "1.1",
            "type": kind,
            "ts": at(200),
            "queue": "sales",
            "agent_id": "1001",
        }
        for kind in ("call_ended", "wrapup_ended")
    ]
    assert mapper.open_calls == 0  # terminal: the call is forgotten
    assert not mapper.skips


def test_abandon_is_call_abandoned() -> None:
    events = events_of([ENTER, row(48, "1.1", "sales", "NONE", "ABANDON", "1", "1", "48")])
    assert without_ids(events)[1] == {
        "call_id": "1.1",
        "type": "call_abandoned",
        "ts": at(48),
        "queue": "sales",
    }


@pytest.mark.parametrize(
    ("verb", "data", "reason"),
    [
        ("EXITWITHTIMEOUT", ("1", "1", "30"), "timeout"),
        ("EXITEMPTY", ("1", "1", "30"), "empty"),
        ("EXITWITHKEY", ("5", "1", "1", "30"), "key"),
        ("WITHDRAW", ("1", "1", "30", "callback requested"), "withdraw"),
    ],
)
def test_leaving_a_queue_alive_is_queue_left_with_its_reason(
    verb: str, data: tuple[str, ...], reason: str
) -> None:
    mapper = QueueLogMapper()
    events = [
        event for _, event in feed(mapper, [ENTER, row(30, "1.1", "sales", "NONE", verb, *data)])
    ]
    assert without_ids(events)[1] == {
        "call_id": "1.1",
        "type": "queue_left",
        "ts": at(30),
        "queue": "sales",
        "reason": reason,
    }
    assert mapper.open_calls == 0


def test_ring_lines_and_agentdump_are_ignored_but_counted_and_the_call_stays_queued() -> None:
    mapper = QueueLogMapper()
    lines = [
        ENTER,
        row(5, "1.1", "sales", "SIP/8007", "RINGNOANSWER", "15000"),
        row(20, "1.1", "sales", "SIP/8008", "AGENTDUMP"),
        row(25, "1.1", "sales", "SIP/8009", "RINGCANCELED", "2000"),
    ]
    assert types([event for _, event in feed(mapper, lines)]) == ["queue_entered"]
    assert mapper.stats.ignored == {"RINGNOANSWER": 1, "AGENTDUMP": 1, "RINGCANCELED": 1}
    assert mapper.open_calls == 1
    assert not mapper.skips


def test_syscompat_drops_the_caller_a_call_ended() -> None:
    mapper = QueueLogMapper()
    events = feed(mapper, [ENTER, row(12, "1.1", "sales", "SIP/8007", "SYSCOMPAT")])
    assert without_ids([events[1][1]]) == [
        {
            "call_id": "1.1",
            "type": "call_ended",
            "ts": at(12),
            "queue": "sales",
            "agent_id": "8007",
        }
    ]
    assert len(events) == 2  # unanswered: no after-call work
    assert mapper.open_calls == 0


def test_agent_lines_become_agent_events_keyed_by_the_agent() -> None:
    mapper = QueueLogMapper()
    lines = [
        row(0, "MANAGER", "sales", "SIP/8007", "ADDMEMBER", ""),
        row(1, "NONE", "sales", "SIP/8007", "PAUSE", "lunch"),
        row(2, "NONE", "sales", "SIP/8007", "UNPAUSE", ""),
        row(3, "NONE", "NONE", "SIP/8007", "PAUSEALL", "break"),
        row(4, "NONE", "NONE", "SIP/8007", "UNPAUSEALL", ""),
        row(5, "NONE", "NONE", "Agent/1001", "AGENTLOGIN", "SIP/8008-0001"),
        row(6, "NONE", "NONE", "Agent/1001", "AGENTLOGOFF", "SIP/8008-0001", "3600"),
        row(7, "MANAGER", "sales", "SIP/8007", "REMOVEMEMBER", ""),
        row(8, "NONE", "sales", "SIP/8007", "PAUSE", ""),  # no reason given
    ]
    out = feed(mapper, lines)
    assert [(key, without_ids([event])[0]) for key, event in out] == [
        ("8007", {"agent_id": "8007", "type": "agent_logged_in", "ts": at(0), "queues": ["sales"]}),
        ("8007", {"agent_id": "8007", "type": "agent_not_ready", "ts": at(1), "reason": "lunch"}),
        ("8007", {"agent_id": "8007", "type": "agent_ready", "ts": at(2)}),
        ("8007", {"agent_id": "8007", "type": "agent_not_ready", "ts": at(3), "reason": "break"}),
        ("8007", {"agent_id": "8007", "type": "agent_ready", "ts": at(4)}),
        ("1001", {"agent_id": "1001", "type": "agent_logged_in", "ts": at(5), "queues": []}),
        ("1001", {"agent_id": "1001", "type": "agent_logged_out", "ts": at(6)}),
        ("8007", {"agent_id": "8007", "type": "agent_logged_out", "ts": at(7)}),
        ("8007", {"agent_id": "8007", "type": "agent_not_ready", "ts": at(8)}),
    ]  # fmt: skip
    ids = [str(event["event_id"]) for _, event in out]
    assert len(set(ids)) == len(ids) and all(i.startswith("ast:") for i in ids)
    assert mapper.stats.agent_lines == len(lines) and not mapper.stats.ignored
    assert not mapper.skips
    assert "agent lines: 9" in summary(mapper.stats)


def test_membership_is_kept_per_agent_across_queues() -> None:
    mapper = QueueLogMapper()
    lines = [
        row(0, "MANAGER", "sales", "Local/2004@from-internal/n", "ADDMEMBER", ""),
        row(1, "REALTIME", "support", "PJSIP/2004", "ADDMEMBER", ""),
        row(2, "MANAGER", "support", "Local/2004@from-queue/n", "ADDMEMBER", ""),  # again
        row(3, "NONE", "NONE", "PJSIP/2004-0000001a", "PAUSEALL", "Coffee"),
        row(4, "MANAGER", "sales", "Local/2004@from-internal/n", "REMOVEMEMBER", ""),
        row(5, "MANAGER", "vip", "2004", "REMOVEMEMBER", ""),  # not a member there
        row(6, "MANAGER", "support", "PJSIP/2004", "REMOVEMEMBER", ""),
    ]
    events = [event for _, event in feed(mapper, lines)]
    assert {event["agent_id"] for event in events} == {"2004"}
    assert [(e["type"], e.get("queues")) for e in events] == [
        ("agent_logged_in", ["sales"]),
        ("agent_queues", ["sales", "support"]),
        ("agent_not_ready", None),
        ("agent_queues", ["support"]),
        ("agent_logged_out", None),
    ]


def test_a_connector_restart_keeps_the_agents_memberships() -> None:
    lines = [
        row(0, "MANAGER", "sales", "SIP/1", "ADDMEMBER", ""),
        row(1, "MANAGER", "support", "SIP/1", "ADDMEMBER", ""),
        row(2, "MANAGER", "sales", "SIP/1", "REMOVEMEMBER", ""),
    ]
    whole = feed(QueueLogMapper(), lines)
    first = QueueLogMapper()
    feed(first, lines[:1])
    second = QueueLogMapper()
    second.restore(json.loads(json.dumps(first.snapshot())))
    assert feed(first, lines[1:]) == feed(second, lines[1:]) == whole[1:]


@pytest.mark.parametrize(
    ("written", "name"),
    [
        ("Local/2004@from-internal/n", "2004"),
        ("Local/2004@from-queue;1", "2004"),
        ("PJSIP/201", "201"),
        ("SIP/201-0000001a", "201"),
        ("PJSIP/alice-desk", "alice-desk"),  # not a channel suffix: kept
        ("Agent/1001", "1001"),
        ("Alice Smith", "Alice Smith"),
        ("  Bob ", "Bob"),
        ("NONE", ""),
        ("", ""),
    ],
)
def test_agents_are_named_alike_on_every_line(written: str, name: str) -> None:
    assert agent_name(written) == name


def test_agent_lines_without_a_usable_agent_or_queue_are_skipped() -> None:
    mapper = QueueLogMapper(source="q.log")
    lines = [
        row(0, "MANAGER", "sales", "NONE", "ADDMEMBER", ""),
        row(1, "MANAGER", "NONE", "SIP/1", "ADDMEMBER", ""),
        row(2, "NONE", "sales", "x" * 300, "PAUSE", ""),
        row(3, "NONE", "sales", "SIP/1", "PAUSE", "x" * 300),  # the pause counts, not its reason
    ]
    events = [event for _, event in feed(mapper, lines)]
    assert [(s.line, s.reason) for s in mapper.skips] == [
        (1, "no_agent"),
        (2, "no_queue"),
        (3, "bad_agent"),
    ]
    assert without_ids(events) == [{"agent_id": "1", "type": "agent_not_ready", "ts": at(3)}]
    assert mapper.stats.reasons_dropped == 1


def test_custom_verbs_and_configreload_are_ignored_and_counted_by_verb() -> None:
    mapper = QueueLogMapper()
    lines = [
        row(8, "1.9", "sales", "NONE", "DID", "5550000"),  # a custom QueueLog() verb
        ENTER,
        row(9, "NONE", "NONE", "NONE", "CONFIGRELOAD", ""),  # logger reload: calls go on
    ]
    assert types([event for _, event in feed(mapper, lines)]) == ["queue_entered"]
    assert mapper.stats.ignored == {"DID": 1, "CONFIGRELOAD": 1}
    assert mapper.open_calls == 1  # CONFIGRELOAD closed nothing
    assert not mapper.skips
    assert "ignored lines: 1 CONFIGRELOAD, 1 DID" in summary(mapper.stats)


def test_queuestart_ends_the_calls_left_open_at_its_ts() -> None:
    mapper = QueueLogMapper()
    lines = [
        row(0, "1.1", "sales", "NONE", "ENTERQUEUE", "", "1", "1"),  # still queued
        row(5, "1.2", "support", "NONE", "ENTERQUEUE", "", "2", "1"),
        row(9, "1.2", "support", "Agent/7", "CONNECT", "4", "1.3", "1"),  # talking
        row(10, "1.4", "sales", "NONE", "ENTERQUEUE", "", "3", "2"),
        row(20, "1.4", "sales", "NONE", "ABANDON", "1", "2", "10"),  # over before the restart
        row(600, "NONE", "NONE", "NONE", "QUEUESTART", ""),
    ]
    events = feed(mapper, lines)
    closing = [event for _, event in events if event["ts"] == at(600)]
    assert without_ids(closing) == [
        {"call_id": "1.1", "type": "call_ended", "ts": at(600), "queue": "sales"},
        {"call_id": "1.2", "type": "call_ended", "ts": at(600), "queue": "support"},
        {"call_id": "1.2", "type": "wrapup_ended", "ts": at(600), "queue": "support"},
    ]
    assert mapper.open_calls == 0
    assert mapper.stats.closed_at_restart == 2
    assert "calls ended by QUEUESTART: 2" in summary(mapper.stats)
    # Another restart finds nothing open.
    assert feed(mapper, [row(700, "NONE", "NONE", "NONE", "QUEUESTART", "")]) == []
    states = engine(events)
    assert outcome(states["1.1"])["outcome"] == "abandoned"
    assert outcome(states["1.1"])["abandon_seconds"] == 600.0
    assert outcome(states["1.2"])["outcome"] == "answered"


def test_a_call_can_visit_a_second_queue_under_the_same_call_id() -> None:
    lines = [
        row(0, "1.1", "sales", "NONE", "ENTERQUEUE", "", "1", "1"),
        row(30, "1.1", "sales", "NONE", "EXITWITHTIMEOUT", "1", "1", "30"),
        row(31, "1.1", "support", "NONE", "ENTERQUEUE", "", "1", "1"),
        row(40, "1.1", "support", "Agent/7", "CONNECT", "9", "1.5", "2"),
    ]
    events = events_of(lines)
    assert [(e["type"], e.get("queue")) for e in events] == [
        ("queue_entered", "sales"),
        ("queue_left", "sales"),
        ("queue_entered", "support"),
        ("agent_offered", "support"),
        ("call_answered", "support"),
    ]
    assert {e["call_id"] for e in events} == {"1.1"}


def test_lines_with_equal_timestamps_keep_their_file_order() -> None:
    lines = [
        row(0, "1.1", "sales", "NONE", "ENTERQUEUE", "", "1", "1"),
        row(0, "1.2", "sales", "NONE", "ENTERQUEUE", "", "2", "2"),
        row(0, "1.1", "sales", "Agent/1", "CONNECT", "0", "1.3", "0"),
        row(0, "1.2", "sales", "NONE", "ABANDON", "1", "2", "0"),
    ]
    expected = [
        ("1.1", "queue_entered"),
        ("1.2", "queue_entered"),
        ("1.1", "agent_offered"),
        ("1.1", "call_answered"),
        ("1.2", "call_abandoned"),
    ]
    assert [(e["call_id"], e["type"]) for e in events_of(lines)] == expected


def test_a_replay_sorts_by_ts_and_keeps_file_order_on_ties(tmp_path: Path) -> None:
    lines = [
        row(0, "1.1", "sales", "NONE", "ENTERQUEUE", "", "1", "1"),
        row(10, "1.2", "sales", "NONE", "ENTERQUEUE", "", "2", "2"),
        row(10, "1.3", "sales", "NONE", "ENTERQUEUE", "", "3", "3"),
        row(12, "1.1", "sales", "Agent/1", "CONNECT", "12", "1.4", "5"),  # offered at 7
    ]
    plan = load([write(tmp_path, lines)])
    assert [(key, event["type"], event["ts"]) for key, event in plan.events] == [
        ("1.1", "queue_entered", at(0)),
        ("1.1", "agent_offered", at(7)),
        ("1.2", "queue_entered", at(10)),
        ("1.3", "queue_entered", at(10)),
        ("1.1", "call_answered", at(12)),
    ]
    assert plan.calls == 3
    assert plan.stats.lines == 4


def test_connect_without_ring_time_gives_the_answer_alone() -> None:
    old = row(15, "1.1", "sales", "Agent/1001", "CONNECT", "15", "1.2")  # Asterisk 1.4
    assert types(events_of([ENTER, old])) == ["queue_entered", "call_answered"]


def test_an_offer_never_precedes_the_queue_entry() -> None:
    # Whole seconds: a ring time can round past the entry.
    connect = row(3, "1.1", "sales", "Agent/1", "CONNECT", "3", "1.2", "4")
    offered = [e for e in events_of([ENTER, connect]) if e["type"] == "agent_offered"]
    assert offered[0]["ts"] == at(0)


def test_an_answer_or_abandon_of_an_unseen_entry_rebuilds_it_from_the_hold_time() -> None:
    mapper = QueueLogMapper()
    lines = [
        row(100, "2.1", "sales", "Agent/1", "CONNECT", "20", "2.2", "2"),
        row(150, "2.3", "support", "NONE", "ABANDON", "2", "3", "45"),
    ]
    events = [event for _, event in feed(mapper, lines)]
    assert [(e["call_id"], e["type"], e["ts"], e.get("queue")) for e in events] == [
        ("2.1", "queue_entered", at(80), "sales"),
        ("2.1", "agent_offered", at(98), "sales"),
        ("2.1", "call_answered", at(100), "sales"),
        ("2.3", "queue_entered", at(105), "support"),
        ("2.3", "call_abandoned", at(150), "support"),
    ]
    assert mapper.stats.rebuilt_entries == 2
    # Seen entries are never rebuilt.
    assert types(events_of([ENTER, CONNECT])) == ["queue_entered", "agent_offered", "call_answered"]


# -- bad lines ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("1772445600|1.1|sales", "too_few_fields"),
        ("yesterday|1.1|sales|NONE|ENTERQUEUE||1|1", "bad_time"),
        ("999999999999|1.1|sales|NONE|ENTERQUEUE||1|1", "bad_time"),
        ("1772445600|1.1|sales|NONE||x", "no_event"),
        ("1772445600|NONE|sales|NONE|ENTERQUEUE||1|1", "no_callid"),
        ("1772445600|1.1|NONE|NONE|ENTERQUEUE||1|1", "no_queue"),
        ("1772445600|1.1||NONE|ENTERQUEUE||1|1", "no_queue"),
    ],
)
def test_unreadable_lines_are_skipped_with_a_reason(text: str, reason: str) -> None:
    mapper = QueueLogMapper(source="q.log")
    assert mapper.feed(text, 7) == []
    assert [(s.source, s.line, s.reason) for s in mapper.skips] == [("q.log", 7, reason)]
    assert mapper.stats.skipped == {reason: 1}
    assert str(mapper.skips[0]).startswith(f"q.log:7: skipped ({reason}): ")


def test_parse_errors_are_bad_lines() -> None:
    with pytest.raises(BadLine, match="bad_time"):
        parse_file_line("1.2.3|x|q|a|ENTERQUEUE")


def test_a_file_with_bad_lines_reports_their_numbers_and_maps_the_rest(tmp_path: Path) -> None:
    lines = [
        ENTER,
        "garbage",
        "",
        "1772445600|1.1|sales|NONE|",
        CONNECT,
        "17724456xx|1.1|sales|NONE|ABANDON|1|1|1",
    ]
    path = write(tmp_path, lines)
    plan = load([path])
    assert [(s.source, s.line, s.reason) for s in plan.skips] == [
        (str(path), 2, "too_few_fields"),
        (str(path), 4, "no_event"),
        (str(path), 6, "bad_time"),
    ]
    assert types([event for _, event in plan.events]) == [
        "queue_entered",
        "agent_offered",
        "call_answered",
    ]
    assert plan.stats.blank == 1
    assert summary(plan.stats).startswith(
        "skipped lines: 1 bad_time, 1 no_event, 1 too_few_fields; ignored lines: none"
    )


def test_bytes_that_are_not_utf8_do_not_stop_a_replay(tmp_path: Path) -> None:
    path = tmp_path / "queue_log"
    path.write_bytes(
        f"{T}|1.1|sales|NONE|ENTERQUEUE||555|1|M\xfcller\n".encode("latin-1")
        + CONNECT.encode()
        + b"\r\n"
    )
    plan = load([path])
    assert types([event for _, event in plan.events]) == [
        "queue_entered",
        "agent_offered",
        "call_answered",
    ]
    assert not plan.skips


# -- event ids: stable per line ----------------------------------------------------------------


def test_reading_a_file_twice_gives_identical_events(tmp_path: Path) -> None:
    lines = [
        ENTER,
        CONNECT,
        row(200, "1.1", "sales", "Agent/1001", "COMPLETEAGENT", "15", "185", "1"),
        row(300, "1.5", "sales", "NONE", "ENTERQUEUE", "", "9", "1"),
        row(400, "NONE", "NONE", "NONE", "QUEUESTART", ""),
    ]
    path = write(tmp_path, lines)
    first, second = load([path]), load([path])
    assert first.events == second.events
    ids = [event["event_id"] for _, event in first.events]
    assert len(ids) == len(set(ids)) == 7


def test_identical_lines_of_one_call_are_distinct_events_with_stable_ids(tmp_path: Path) -> None:
    # A dialplan loop can write the same line twice in one second.
    left = row(1, "1.1", "sales", "NONE", "EXITEMPTY", "1", "1", "1")
    enter = row(1, "1.1", "sales", "NONE", "ENTERQUEUE", "", "1", "1")
    lines = [ENTER, left, enter, left]
    events = events_of(lines)
    ids = [str(event["event_id"]) for event in events]
    assert len(set(ids)) == 4
    assert ids[1].split(":")[1] == ids[3].split(":")[1]  # same content hash...
    assert ids[1].split(":")[2] == "0" and ids[3].split(":")[2] == "1"  # ...another occurrence
    assert events_of(lines) == events


def test_the_same_line_in_another_call_gets_another_id() -> None:
    one = events_of([row(0, "1.1", "sales", "NONE", "ENTERQUEUE", "", "1", "1")])
    two = events_of([row(0, "1.2", "sales", "NONE", "ENTERQUEUE", "", "1", "1")])
    assert one[0]["event_id"] != two[0]["event_id"]


def test_a_mapper_restored_from_its_snapshot_continues_as_if_never_stopped() -> None:
    lines = [
        ENTER,
        row(5, "1.2", "support", "NONE", "ENTERQUEUE", "", "2", "1"),
        ENTER.replace(f"{T}|", f"{T + 1}|"),  # the same call enters again
        CONNECT,
        row(600, "NONE", "NONE", "NONE", "QUEUESTART", ""),
    ]
    whole = feed(QueueLogMapper(), lines)
    first = QueueLogMapper()
    head = feed(first, lines[:3])
    saved = json.loads(json.dumps(first.snapshot()))
    second = QueueLogMapper()
    second.restore(saved)
    tail = [
        emitted
        for number, text in enumerate(lines[3:], start=4)
        for emitted in second.feed(text, number)
    ]
    assert head + tail == whole


def test_calls_silent_for_too_long_are_forgotten() -> None:
    mapper = QueueLogMapper(max_open_hours=1)
    feed(mapper, [ENTER, row(7200, "1.2", "sales", "NONE", "ENTERQUEUE", "", "1", "1")])
    assert mapper.open_calls == 1
    assert mapper.stats.forgotten == 1


# -- the realtime form (CSV) -------------------------------------------------------------------

WAZO = [
    "2012-07-04 07:33:21.165823 | 1341401601.24 | q1 | NONE | ENTERQUEUE | | 1000 | 1",
    "2012-07-04 07:33:23.085718 | 1341401601.24 | q1 | Agent/3001 | CONNECT | 2 | 1341401601.27 | 1",
    "2012-07-04 07:49:52.939802 | 1341402586.51 | q1 | NONE | ABANDON | 1 | 1 | 6",
]
WAZO_CSV = [
    "time,callid,queuename,agent,event,data1,data2,data3,data4,data5",
    "2012-07-04 07:33:21.165823,1341401601.24,q1,NONE,ENTERQUEUE,,1000,1,,",
    "2012-07-04 07:33:23.085718,1341401601.24,q1,Agent/3001,CONNECT,2,1341401601.27,1,,",
    "2012-07-04 07:49:52.939802,1341402586.51,q1,NONE,ABANDON,1,1,6,,",
]


def test_wazos_realtime_example_lines_map_with_their_microseconds() -> None:
    events = events_of(WAZO, form="csv")
    assert [(e["call_id"], e["type"], e["ts"]) for e in events] == [
        ("1341401601.24", "queue_entered", "2012-07-04T07:33:21.165Z"),
        ("1341401601.24", "agent_offered", "2012-07-04T07:33:22.085Z"),
        ("1341401601.24", "call_answered", "2012-07-04T07:33:23.085Z"),
        # its ENTERQUEUE is not in the example: rebuilt from the wait (data3 = 6 s)
        ("1341402586.51", "queue_entered", "2012-07-04T07:49:46.939Z"),
        ("1341402586.51", "call_abandoned", "2012-07-04T07:49:52.939Z"),
    ]
    assert events[2]["agent_id"] == "3001"


def test_the_realtime_table_as_csv_with_a_header_maps_the_same() -> None:
    mapper = QueueLogMapper("csv")
    events = [event for _, event in feed(mapper, WAZO_CSV)]
    assert without_ids(events) == without_ids(events_of(WAZO, form="csv"))
    assert mapper.stats.headers == 1
    assert not mapper.skips


def test_local_times_are_read_in_the_given_zone() -> None:
    paris = events_of(WAZO_CSV, form="csv", tz=ZoneInfo("Europe/Paris"))
    assert paris[0]["ts"] == "2012-07-04T05:33:21.165Z"  # CEST is UTC+2
    assert parse_local_time(
        "2012-07-04 07:33:21.165823+02:00", ZoneInfo("UTC")
    ) == parse_local_time("2012-07-04 05:33:21.165823", ZoneInfo("UTC"))
    assert parse_local_time("1341401601.5", ZoneInfo("Europe/Paris")) == 1_341_401_601_500


def test_csv_data5_holds_the_remainder_of_a_six_field_attended_transfer() -> None:
    lines = [
        "2026-03-02 10:00:00.000000,9.1,sales,NONE,ENTERQUEUE,,555,1,,",
        "2026-03-02 10:00:10.000000,9.1,sales,SIP/1,CONNECT,10,9.2,2,,",
        '2026-03-02 10:03:00.000000,9.1,sales,SIP/1,ATTENDEDTRANSFER,LINK,Local/1@x;1,Local/1@x;2,10,"170|1"',
    ]
    mapper = QueueLogMapper("csv")
    events = [event for _, event in feed(mapper, lines)]
    assert [(e["type"], e["ts"]) for e in events[-2:]] == [
        ("call_ended", at(180)),
        ("wrapup_ended", at(180)),
    ]
    assert mapper.open_calls == 0


def test_a_csv_header_may_order_and_add_columns() -> None:
    lines = [
        "id,event,time,callid,agent,queuename,data1,data2,data3,data4,data5,serverid",
        "1,ENTERQUEUE,2026-03-02 10:00:00.25,9.1,NONE,sales,,555,1,,,pbx1",
        "2,ABANDON,2026-03-02 10:00:04.75,9.1,NONE,sales,1,1,4,,,pbx1",
    ]
    events = events_of(lines, form="csv")
    assert [(e["type"], e["ts"], e["queue"]) for e in events] == [
        ("queue_entered", "2026-03-02T10:00:00.250Z", "sales"),
        ("call_abandoned", "2026-03-02T10:00:04.750Z", "sales"),
    ]


def test_the_non_adaptive_realtime_table_has_one_data_column() -> None:
    lines = [
        "time,callid,queuename,agent,event,data",
        "2026-03-02 10:00:00,9.1,sales,NONE,ENTERQUEUE,|555|1",
        "2026-03-02 10:00:20,9.1,sales,SIP/1,CONNECT,20|9.2|5",
    ]
    events = events_of(lines, form="csv")
    assert [(e["type"], e["ts"]) for e in events] == [
        ("queue_entered", at(0)),
        ("agent_offered", at(15)),
        ("call_answered", at(20)),
    ]


def test_bad_csv_rows_are_skipped_with_their_line() -> None:
    mapper = QueueLogMapper("csv", source="export.csv")
    lines = [
        "time,callid,queuename,agent,event,data1,data2,data3,data4,data5",
        "not a time,9.1,sales,NONE,ENTERQUEUE,,555,1,,",
        "2026-03-02 10:00:00,9.1",
        "(3 rows)",
    ]
    assert feed(mapper, lines) == []
    assert [(s.line, s.reason) for s in mapper.skips] == [
        (2, "bad_time"),
        (3, "too_few_fields"),
        (4, "too_few_fields"),
    ]


# -- through the engine's own domain code ------------------------------------------------------

NOW_MS = (T + 86_400) * MS


def sa5(queue: str | None) -> int:
    return 5000


def outcome(state: CallState) -> dict[str, object]:
    record = state.outcome(sa5)
    assert record is not None
    return record


def engine(events: Iterable[Emitted]) -> dict[str, CallState]:
    """Each event as the worker receives it: JSON bytes, validated, applied to its call."""
    states: dict[str, CallState] = {}
    for key, event in events:
        parsed = parse_event(orjson.dumps(event), now_ms=NOW_MS)
        assert parsed.call_id == key
        states.setdefault(key, CallState.new(key)).apply(parsed)
    return states


def test_the_engine_counts_answered_abandoned_and_flowed_out_calls_as_asterisk_logged_them() -> (
    None
):
    lines = [
        # a: answered in sales after 15 s on the line, 12 s in queue before the ring.
        row(0, "a", "sales", "NONE", "ENTERQUEUE", "", "1", "1"),
        row(15, "a", "sales", "Agent/1", "CONNECT", "15", "a2", "3"),
        row(200, "a", "sales", "Agent/1", "COMPLETECALLER", "15", "185", "1"),
        # b: abandons sales after 48 s.
        row(10, "b", "sales", "NONE", "ENTERQUEUE", "", "2", "2"),
        row(58, "b", "sales", "NONE", "ABANDON", "1", "2", "48"),
        # c: short abandon (3 s).
        row(20, "c", "sales", "NONE", "ENTERQUEUE", "", "3", "2"),
        row(23, "c", "sales", "NONE", "ABANDON", "1", "2", "3"),
        # d: times out of sales, answered in support: speed from the first entry (40 s).
        row(100, "d", "sales", "NONE", "ENTERQUEUE", "", "4", "1"),
        row(130, "d", "sales", "NONE", "EXITWITHTIMEOUT", "1", "1", "30"),
        row(131, "d", "support", "NONE", "ENTERQUEUE", "", "4", "1"),
        row(140, "d", "support", "Agent/2", "CONNECT", "9", "d2", "2"),
        row(300, "d", "support", "Agent/2", "BLINDTRANSFER", "2000", "ctx", "9", "160", "1"),
        # e: leaves support by key and is never seen again: a flow-out, not an abandon.
        row(150, "e", "support", "NONE", "ENTERQUEUE", "", "5", "1"),
        row(170, "e", "support", "NONE", "EXITWITHKEY", "1", "1", "1", "20"),
        # f: waits in support when the PBX restarts: abandoned at the QUEUESTART.
        row(400, "f", "support", "NONE", "ENTERQUEUE", "", "6", "1"),
        row(500, "NONE", "NONE", "NONE", "QUEUESTART", ""),
    ]
    events = feed(QueueLogMapper(), lines)
    states = engine(events)
    base = (T) * MS
    assert states["a"].contributions() == {
        # handle time: the talk (no after-call work in queue_log), 15 s to 200 s
        "sales": Contribution(
            answered=(base + 15_000, 15_000, 12_000), handled=(base + 200_000, 185_000)
        )
    }
    assert states["b"].contributions() == {"sales": Contribution(abandoned=(base + 58_000, 48_000))}
    assert outcome(states["c"])["outcome"] == "short_abandoned"
    assert states["d"].contributions() == {
        "sales": Contribution(flowed_out=(base + 130_000,)),
        "support": Contribution(
            answered=(base + 140_000, 40_000, 7_000), handled=(base + 300_000, 160_000)
        ),
    }
    assert states["e"].contributions() == {"support": Contribution(flowed_out=(base + 170_000,))}
    assert states["f"].contributions() == {
        "support": Contribution(abandoned=(base + 500_000, 100_000))
    }
    # Replaying the same lines again adds nothing: every event is a duplicate.
    for key, event in feed(QueueLogMapper(), lines):
        parsed = parse_event(orjson.dumps(event), now_ms=NOW_MS)
        assert states[key].apply(parsed) is False


# -- the connector loop, with the broker replaced ----------------------------------------------


class FakeBroker:
    """Stands in for open_producer/deliver: records what was delivered, or fails on demand."""

    def __init__(self) -> None:
        self.received: list[Emitted] = []
        self.failures = 0
        self.on_failure: Callable[[], None] | None = None

    @asynccontextmanager
    async def open_producer(self, settings: Settings) -> AsyncIterator[object]:
        yield self

    async def deliver(
        self, producer: object, topics: Mapping[str, str], events: Iterable[Emitted]
    ) -> int:
        assert topics == {"call-events": "t-call-events", "agent-events": "t-agent-events"}
        if self.failures:
            self.failures -= 1
            if self.on_failure is not None:
                self.on_failure()
            raise KafkaConnectionError("the broker is down")
        batch = list(events)
        self.received.extend(batch)
        return len(batch)


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    fake = FakeBroker()
    monkeypatch.setattr(producer, "open_producer", fake.open_producer)
    monkeypatch.setattr(producer, "deliver", fake.deliver)
    monkeypatch.setattr(asterisk_cli, "RETRY_SECONDS", (0.01,))
    return fake


async def run_connect(tmp_path: Path, stop: asyncio.Event | None = None) -> int:
    return await asterisk_cli.connect(
        Settings(topic_prefix="t-"),
        str(tmp_path / "queue_log"),
        form="file",
        tz=UTC,
        state_file=tmp_path / "state.json",
        follow=False,
        stop=stop,
    )


async def test_the_connector_commits_what_it_delivered_and_keeps_open_calls_across_runs(
    tmp_path: Path, broker: FakeBroker
) -> None:
    log = write(
        tmp_path, [ENTER, CONNECT, row(20, "1.5", "support", "NONE", "ENTERQUEUE", "", "1", "1")]
    )
    assert await run_connect(tmp_path) == 0
    assert [(key, event["type"]) for key, event in broker.received] == [
        ("1.1", "queue_entered"),
        ("1.1", "agent_offered"),
        ("1.1", "call_answered"),
        ("1.5", "queue_entered"),
    ]
    state = json.loads((tmp_path / "state.json").read_text())
    assert (state["offset"], state["line"]) == (log.stat().st_size, 3)
    assert sorted(state["extra"]["open"]) == ["1.1", "1.5"]
    assert await run_connect(tmp_path) == 0  # nothing new: nothing sent again
    assert len(broker.received) == 4
    with log.open("a") as out:
        out.write(row(900, "NONE", "NONE", "NONE", "QUEUESTART", "") + "\n")
    assert await run_connect(tmp_path) == 0  # the calls opened two runs ago are ended
    assert [(key, event["type"], event["ts"]) for key, event in broker.received[4:]] == [
        ("1.1", "call_ended", at(900)),
        ("1.1", "wrapup_ended", at(900)),  # it was answered
        ("1.5", "call_ended", at(900)),
    ]


async def test_the_connector_sends_agent_lines_and_keeps_memberships_across_runs(
    tmp_path: Path, broker: FakeBroker
) -> None:
    log = write(tmp_path, [row(0, "MANAGER", "sales", "Local/2004@from-internal/n", "ADDMEMBER")])
    assert await run_connect(tmp_path) == 0
    with log.open("a") as out:
        out.write(row(5, "MANAGER", "support", "PJSIP/2004", "ADDMEMBER") + "\n")
    assert await run_connect(tmp_path) == 0  # a new run: the first queue is remembered
    assert [(key, event["type"], event["queues"]) for key, event in broker.received] == [
        ("2004", "agent_logged_in", ["sales"]),
        ("2004", "agent_queues", ["sales", "support"]),
    ]


async def test_a_failed_delivery_is_retried_before_the_position_moves(
    tmp_path: Path, broker: FakeBroker
) -> None:
    write(tmp_path, [ENTER, CONNECT])
    broker.failures = 2
    assert await run_connect(tmp_path) == 0
    assert types([event for _, event in broker.received]) == [
        "queue_entered",
        "agent_offered",
        "call_answered",
    ]
    assert json.loads((tmp_path / "state.json").read_text())["line"] == 2


async def test_lines_of_a_connector_stopped_before_delivery_are_read_again(
    tmp_path: Path, broker: FakeBroker
) -> None:
    write(tmp_path, [ENTER, CONNECT])
    stop = asyncio.Event()
    broker.failures = 1
    broker.on_failure = stop.set  # Ctrl-C while the broker is down
    assert await run_connect(tmp_path, stop) == 0
    assert broker.received == []
    assert not (tmp_path / "state.json").exists()  # nothing committed
    assert await run_connect(tmp_path) == 0
    assert len(broker.received) == 3
