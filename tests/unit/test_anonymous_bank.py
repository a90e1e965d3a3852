"""The Anonymous Bank adapter applies every rule and wart of data/README.md.

Fixtures are tiny TSV files written here, CRLF-terminated like the real file, so each
mapping rule is pinned by a row built for it; one test reads the real month (committed).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.sources.anonymous_bank import (
    MalformedRow,
    ReplayPlan,
    Skip,
    load,
    row_events,
)

REAL_FILE = Path(__file__).resolve().parents[2] / "data" / "anonymous-bank-1999-02.tsv.xz"
HEADER = (
    "vru+line\tcall_id\tcustomer_id\tpriority\ttype\tdate\tvru_entry\tvru_exit\tvru_time\t"
    "q_start\tq_exit\tq_time\toutcome\tser_start\tser_exit\tser_time\tserver"
)
COLUMNS = HEADER.split("\t")
Z = "0:00:00"


def row(**fields: str) -> dict[str, str]:
    """A well-formed AGENT row answered straight from the IVR; ``vru`` sets ``vru+line``."""
    values = {
        "vru+line": fields.pop("vru", "AA0101"),
        "call_id": "34536",
        "customer_id": "0",
        "priority": "0",
        "type": "PS",
        "date": "990201",
        "vru_entry": "7:02:47",
        "vru_exit": "7:02:56",
        "vru_time": "9",
        "q_start": Z,
        "q_exit": Z,
        "q_time": "0",
        "outcome": "AGENT",
        "ser_start": "7:02:57",
        "ser_exit": "7:05:41",
        "ser_time": "164",
        "server": "DORIT",
    }
    values.update(fields)
    return values


def line_of(values: dict[str, str]) -> str:
    return "\t".join(values[column] for column in COLUMNS)


def write(tmp_path: Path, *lines: dict[str, str] | str) -> Path:
    """A TSV with the real header; dict entries are rows, strings are raw lines."""
    path = tmp_path / "calls.tsv"
    body = [HEADER, *(item if isinstance(item, str) else line_of(item) for item in lines)]
    path.write_bytes(("\r\n".join(body) + "\r\n").encode())
    return path


def by_type(events: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(event["type"]): event for event in events}


def types(events: list[dict[str, object]]) -> list[str]:
    return [str(event["type"]) for event in events]


# --- the mapping, rule by rule -------------------------------------------------------------


def test_served_call_from_the_ivr_maps_to_contract_events() -> None:
    events = row_events(row(), 2, ZoneInfo("UTC"))
    assert types(events) == [
        "call_started",
        "ivr_ended",
        "call_answered",
        "call_ended",
        "wrapup_ended",
    ]
    assert events[0] == {
        "event_id": "AA0101-34536-990201:call_started",
        "call_id": "AA0101-34536-990201",
        "type": "call_started",
        "ts": "1999-02-01T07:02:47Z",
        "queue": "PS",  # an unqueued call stays attributable to its service type
    }
    assert events[1] == {
        "event_id": "AA0101-34536-990201:ivr_ended",
        "call_id": "AA0101-34536-990201",
        "type": "ivr_ended",
        "ts": "1999-02-01T07:02:56Z",
    }
    answered = events[2]
    assert answered["ts"] == "1999-02-01T07:02:57Z"
    assert answered["queue"] == "PS"
    assert answered["agent_id"] == "DORIT"
    assert answered["event_id"] == "AA0101-34536-990201:call_answered"
    # No after-call work in the data: the call ends and wraps up at ser_exit.
    assert events[3]["ts"] == events[4]["ts"] == "1999-02-01T07:05:41Z"
    for event in events[3:]:
        assert "queue" not in event
        assert "agent_id" not in event


def test_queued_served_call_enters_the_queue_named_by_type() -> None:
    values = row(
        type="NW",
        q_start="7:02:56",
        q_exit="7:03:30",
        ser_start="7:03:30",
        ser_exit="7:04:00",
    )
    events = row_events(values, 2, ZoneInfo("UTC"))
    assert types(events) == [
        "call_started",
        "ivr_ended",
        "queue_entered",
        "call_answered",
        "call_ended",
        "wrapup_ended",
    ]
    entered = by_type(events)["queue_entered"]
    assert entered["ts"] == "1999-02-01T07:02:56Z"
    assert entered["queue"] == "NW"
    assert "agent_id" not in entered
    assert by_type(events)["call_answered"]["ts"] == "1999-02-01T07:03:30Z"
    assert by_type(events)["call_answered"]["queue"] == "NW"


def test_agent_with_no_server_keeps_the_name_as_agent_id() -> None:
    events = row_events(row(server="NO_SERVER"), 2, ZoneInfo("UTC"))
    assert by_type(events)["call_answered"]["agent_id"] == "NO_SERVER"


def test_agent_without_service_times_after_queueing_is_answered_at_queue_exit() -> None:
    values = row(q_start="7:02:56", q_exit="7:03:09", ser_start=Z, ser_exit=Z, server="YIFAT")
    events = row_events(values, 2, ZoneInfo("UTC"))
    assert types(events) == ["call_started", "ivr_ended", "queue_entered", "call_answered"]
    assert by_type(events)["call_answered"]["ts"] == "1999-02-01T07:03:09Z"
    assert by_type(events)["call_answered"]["agent_id"] == "YIFAT"


def test_agent_without_service_times_or_queue_is_answered_at_ivr_exit() -> None:
    events = row_events(row(ser_start=Z, ser_exit=Z), 2, ZoneInfo("UTC"))
    assert types(events) == ["call_started", "ivr_ended", "call_answered"]
    assert by_type(events)["call_answered"]["ts"] == "1999-02-01T07:02:56Z"


def test_hang_up_in_the_queue_is_an_abandon_at_queue_exit() -> None:
    values = row(
        outcome="HANG",
        q_start="7:02:56",
        q_exit="7:03:01",
        ser_start=Z,
        ser_exit=Z,
        server="NO_SERVER",
    )
    events = row_events(values, 2, ZoneInfo("UTC"))
    assert types(events) == [
        "call_started",
        "ivr_ended",
        "queue_entered",
        "call_abandoned",
        "call_ended",
    ]
    assert by_type(events)["call_abandoned"]["ts"] == "1999-02-01T07:03:01Z"
    assert by_type(events)["call_ended"]["ts"] == "1999-02-01T07:03:01Z"


def test_service_times_on_a_hang_row_are_ignored() -> None:
    values = row(outcome="HANG", q_start="7:02:56", q_exit="7:03:20", ser_start="7:03:20")
    events = row_events(values, 2, ZoneInfo("UTC"))
    assert "call_answered" not in types(events)
    assert "wrapup_ended" not in types(events)
    assert by_type(events)["call_ended"]["ts"] == "1999-02-01T07:03:20Z"


def test_hang_up_in_the_ivr_is_ivr_only() -> None:
    values = row(outcome="HANG", ser_start=Z, ser_exit=Z, server="NO_SERVER")
    events = row_events(values, 2, ZoneInfo("UTC"))
    assert types(events) == ["call_started", "ivr_ended", "call_ended"]
    assert by_type(events)["call_ended"]["ts"] == "1999-02-01T07:02:56Z"


def test_phantom_rows_give_no_events_and_are_counted(tmp_path: Path) -> None:
    phantom = row(call_id="2", outcome="PHANTOM", q_start="7:02:56", q_exit="7:03:00")
    assert row_events(phantom, 2, ZoneInfo("UTC")) == []
    plan = load(write(tmp_path, row(), phantom))
    assert plan.calls == 1
    assert plan.skipped == [Skip(3, "phantom")]
    assert {key for key, _ in plan.events} == {"AA0101-34536-990201"}


def test_call_key_joins_vru_line_call_id_and_date(tmp_path: Path) -> None:
    # call_id is unique only within a VRU: the same number on two VRUs is two calls.
    plan = load(write(tmp_path, row(vru="AA0101"), row(vru="AA0205"), row(date="990202")))
    assert plan.calls == 3
    keys = {key for key, _ in plan.events}
    assert keys == {"AA0101-34536-990201", "AA0205-34536-990201", "AA0101-34536-990202"}
    for key, event in plan.events:
        assert event["call_id"] == key
        assert event["event_id"] == f"{key}:{event['type']}"


# --- dates and times --------------------------------------------------------------------------


def test_times_after_midnight_are_on_the_next_day() -> None:
    values = row(
        date="990210",
        vru_entry="23:59:56",
        vru_exit="23:59:56",
        q_start="0:00:02",
        q_exit="0:00:29",
        ser_start="0:00:29",
        ser_exit="0:00:58",
    )
    events = by_type(row_events(values, 2, ZoneInfo("UTC")))
    assert events["call_started"]["ts"] == "1999-02-10T23:59:56Z"
    assert events["ivr_ended"]["ts"] == "1999-02-10T23:59:56Z"
    assert events["queue_entered"]["ts"] == "1999-02-11T00:00:02Z"
    assert events["call_answered"]["ts"] == "1999-02-11T00:00:29Z"
    assert events["wrapup_ended"]["ts"] == "1999-02-11T00:00:58Z"
    # The call keeps the date of its IVR entry.
    assert events["wrapup_ended"]["call_id"] == "AA0101-34536-990210"


def test_abandon_after_midnight_is_on_the_next_day() -> None:
    values = row(
        outcome="HANG",
        date="990210",
        vru_entry="23:59:19",
        vru_exit="23:59:19",
        q_start="23:59:29",
        q_exit="0:00:26",
        ser_start=Z,
        ser_exit=Z,
    )
    events = by_type(row_events(values, 2, ZoneInfo("UTC")))
    assert events["queue_entered"]["ts"] == "1999-02-10T23:59:29Z"
    assert events["call_abandoned"]["ts"] == "1999-02-11T00:00:26Z"


def test_negative_ivr_time_is_a_clock_glitch_on_the_same_day(tmp_path: Path) -> None:
    # vru_time -57: the IVR exit reads a minute before the entry; that is not midnight.
    values = row(
        vru_entry="9:48:14",
        vru_exit="9:47:17",
        vru_time="-57",
        q_start="9:47:17",
        q_exit="9:50:11",
        ser_start="9:50:11",
        ser_exit="9:51:28",
    )
    events = by_type(row_events(values, 2, ZoneInfo("UTC")))
    assert events["ivr_ended"]["ts"] == "1999-02-01T09:47:17Z"
    plan = load(write(tmp_path, values))
    assert [event["type"] for _, event in plan.events][:3] == [
        "ivr_ended",
        "queue_entered",
        "call_started",
    ]


def test_next_day_needs_more_than_twelve_hours() -> None:
    same_day = row(vru_entry="19:00:00", vru_exit="19:00:05", ser_start="7:00:00")
    assert by_type(row_events(same_day, 2, ZoneInfo("UTC")))["call_answered"]["ts"] == (
        "1999-02-01T07:00:00Z"
    )
    next_day = row(vru_entry="19:00:00", vru_exit="19:00:05", ser_start="6:59:59")
    assert by_type(row_events(next_day, 2, ZoneInfo("UTC")))["call_answered"]["ts"] == (
        "1999-02-02T06:59:59Z"
    )


def test_q_start_of_midnight_reads_as_never_queued() -> None:
    # Real row (line 2639): q_start 0:00:00 with q_exit 0:00:27 and q_time 27. The README's
    # convention is applied as written: 0:00:00 means absent, so the call never queued.
    values = row(
        date="990215",
        vru_entry="23:59:54",
        vru_exit="23:59:54",
        q_start=Z,
        q_exit="0:00:27",
        q_time="27",
        ser_start="0:00:26",
        ser_exit="0:01:33",
    )
    events = row_events(values, 2, ZoneInfo("UTC"))
    assert "queue_entered" not in types(events)
    assert by_type(events)["call_answered"]["ts"] == "1999-02-16T00:00:26Z"
    assert by_type(events)["call_answered"]["queue"] == "PS"


def test_service_start_before_ivr_exit_is_kept_and_sorted_by_time(tmp_path: Path) -> None:
    values = row(vru_exit="7:02:56", ser_start="7:02:55")
    assert by_type(row_events(values, 2, ZoneInfo("UTC")))["call_answered"]["ts"] == (
        "1999-02-01T07:02:55Z"
    )
    plan = load(write(tmp_path, values))
    assert [event["type"] for _, event in plan.events][:3] == [
        "call_started",
        "call_answered",
        "ivr_ended",
    ]


def test_a_time_zone_converts_wall_clock_to_utc(tmp_path: Path) -> None:
    jerusalem = ZoneInfo("Asia/Jerusalem")  # UTC+2 in February 1999
    events = by_type(row_events(row(), 2, jerusalem))
    assert events["call_started"]["ts"] == "1999-02-01T05:02:47Z"
    early = row(vru_entry="1:00:00", vru_exit="1:00:10", ser_start="1:00:11", ser_exit="1:01:00")
    plan = load(write(tmp_path, early), tz=jerusalem)
    assert plan.events[0][1]["ts"] == "1999-01-31T23:00:00Z"
    assert plan.events[0][0] == "AA0101-34536-990201"


def test_events_are_sorted_by_time_with_stable_ties(tmp_path: Path) -> None:
    later = row(
        call_id="1",
        vru_entry="8:00:00",
        vru_exit="8:00:05",
        ser_start="8:00:06",
        ser_exit="8:01:00",
    )
    first = row(
        call_id="2",
        outcome="HANG",
        vru_entry="7:00:00",
        vru_exit="7:00:05",
        q_start="7:00:05",
        q_exit="7:00:09",
        ser_start=Z,
        ser_exit=Z,
    )
    twin = row(
        call_id="3",
        outcome="HANG",
        vru_entry="7:00:00",
        vru_exit="7:00:05",
        q_start="7:00:05",
        q_exit="7:00:09",
        ser_start=Z,
        ser_exit=Z,
    )
    plan = load(write(tmp_path, later, first, twin))
    order = [(key.split("-")[1], str(event["type"])) for key, event in plan.events]
    assert order[:10] == [
        ("2", "call_started"),
        ("3", "call_started"),
        ("2", "ivr_ended"),
        ("2", "queue_entered"),
        ("3", "ivr_ended"),
        ("3", "queue_entered"),
        ("2", "call_abandoned"),
        ("2", "call_ended"),
        ("3", "call_abandoned"),
        ("3", "call_ended"),
    ]
    assert order[10:] == [
        ("1", "call_started"),
        ("1", "ivr_ended"),
        ("1", "call_answered"),
        ("1", "call_ended"),
        ("1", "wrapup_ended"),
    ]
    stamps = [str(event["ts"]) for _, event in plan.events]
    assert stamps == sorted(stamps)


# --- malformed input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "what"),
    [
        ("AA0101\t1\t0", "17 columns expected, got 3"),
        (line_of(row()) + "\textra", "17 columns expected, got 18"),
        ("", "17 columns expected, got 1"),
        (line_of(row(vru_exit="7:0x:56")), "vru_exit: not a time"),
        (line_of(row(ser_exit="25:00:00")), "ser_exit: no such time of day"),
        (line_of(row(q_start="")), "q_start: not a time"),
        (line_of(row(date="990230")), "date: not a YYMMDD date"),
        (line_of(row(date="19990201")), "date: not a YYMMDD date"),
        (line_of(row(outcome="BUSY")), "unknown outcome 'BUSY'"),
        (line_of(row(type="")), "type: empty"),
        (line_of(row(server="")), "server: empty"),
        (line_of(row(call_id=" ")), "call_id: empty"),
    ],
)
def test_a_malformed_row_is_skipped_with_its_line(tmp_path: Path, bad: str, what: str) -> None:
    plan = load(write(tmp_path, row(call_id="1"), bad, row(call_id="3")))
    assert plan.calls == 2
    assert len(plan.skipped) == 1
    skip = plan.skipped[0]
    assert skip.line == 3
    assert skip.reason.startswith("malformed: ")
    assert what in skip.reason
    assert {key for key, _ in plan.events} == {"AA0101-1-990201", "AA0101-3-990201"}


def test_row_events_raises_a_value_error_naming_line_and_field() -> None:
    with pytest.raises(ValueError, match=r"line 7: ser_start: not a time H:MM:SS: '7\.03'"):
        row_events(row(ser_start="7.03"), 7, ZoneInfo("UTC"))
    with pytest.raises(MalformedRow, match="line 8: no column 'server'"):
        values = row()
        del values["server"]
        row_events(values, 8, ZoneInfo("UTC"))


def test_a_duplicate_call_key_is_skipped(tmp_path: Path) -> None:
    plan = load(write(tmp_path, row(), row(ser_exit="7:06:00")))
    assert plan.calls == 1
    assert plan.skipped == [Skip(3, "duplicate: AA0101-34536-990201 first on line 2")]
    assert len(plan.events) == 5


def test_a_file_without_the_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.tsv"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="not the Anonymous Bank layout"):
        load(path)


def test_lf_line_ends_and_a_byte_order_mark_are_read_too(tmp_path: Path) -> None:
    path = tmp_path / "lf.tsv"
    path.write_text("\ufeff" + HEADER + "\n" + line_of(row()) + "\n", encoding="utf-8")
    plan = load(path)
    assert plan.calls == 1
    assert plan.skipped == []
    assert plan.events[-1][1]["ts"] == "1999-02-01T07:05:41Z"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.sampled_from("\t:0179AGENTHANG ,x-"), max_size=60)))
def test_load_never_raises_on_garbage_rows(tmp_path: Path, lines: list[str]) -> None:
    plan = load(write(tmp_path, row(), *lines))
    assert isinstance(plan, ReplayPlan)
    assert plan.calls + len(plan.skipped) == 1 + len(lines)


@pytest.mark.parametrize(
    ("suffix", "compress"), [(".xz", lzma.compress), (".gz", gzip.compress), (".bz2", bz2.compress)]
)
def test_a_compressed_file_loads_like_the_plain_one(
    tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]
) -> None:
    plain = write(tmp_path, row(), row(call_id="2", outcome="PHANTOM"))
    packed = tmp_path / f"calls.tsv{suffix}"
    packed.write_bytes(compress(plain.read_bytes()))
    assert load(packed) == load(plain)
    assert load(packed).calls == 1


def test_a_damaged_compressed_file_is_a_value_error(tmp_path: Path) -> None:
    packed = tmp_path / "calls.tsv.xz"
    packed.write_bytes(lzma.compress(write(tmp_path, row()).read_bytes())[:-20])
    with pytest.raises(ValueError, match=r"calls\.tsv\.xz: cannot decompress"):
        load(packed)


# --- the real month -------------------------------------------------------------------------


def test_the_real_month_loads_completely() -> None:
    plan = load(REAL_FILE)
    with lzma.open(REAL_FILE, "rt", newline="") as handle:
        rows = sum(1 for _ in handle) - 1
    reasons = Counter(skip.reason for skip in plan.skipped)
    assert rows == 33_344
    assert reasons == {"phantom": 278}
    assert plan.calls == 33_066 == rows - 278
    assert len(plan.events) == 175_443
    assert Counter(str(event["type"]) for _, event in plan.events) == {
        "call_started": 33_066,
        "ivr_ended": 33_066,
        "queue_entered": 18_058,
        "call_answered": 27_162,
        "call_abandoned": 3_963,
        "call_ended": 33_016,
        "wrapup_ended": 27_112,
    }
    stamps = [str(event["ts"]) for _, event in plan.events]
    assert stamps == sorted(stamps)
    assert stamps[0].startswith("1999-02-01T") and stamps[-1].startswith("1999-0")
    assert len({str(event["event_id"]) for _, event in plan.events}) == len(plan.events)
    assert all(event["call_id"] == key for key, event in plan.events)
