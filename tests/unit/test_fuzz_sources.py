"""Fuzzing the sources: Asterisk queue_log lines (file and CSV forms) and Anonymous Bank rows,
arbitrary and mutated. Each line or row maps to contract events or is reported (a skip with a
reason, counted), never another exception; and every event a source emits is a JSON object the
engine's parser takes or rejects with a reason (a source must not crash a replay or a
connector, nor send what the engine cannot even classify).
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from tempfile import TemporaryDirectory
from zoneinfo import ZoneInfo

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stream_app.domain.agent_events import parse_agent_event
from stream_app.domain.events import REJECT_REASONS, Rejected, parse_event
from stream_app.sources import anonymous_bank, asterisk
from stream_app.sources.anonymous_bank import MalformedRow, row_events
from stream_app.sources.asterisk import SKIP_REASONS, QueueLogMapper
from tests.hostile import HOSTILE_CHARS, mutate_bytes, mutate_text

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_900_000_000_000  # 2030: every event of the fixtures lies in the past
ZONES = [ZoneInfo("UTC"), ZoneInfo("Europe/Paris"), ZoneInfo("Pacific/Kiritimati")]


def round_trip(emitted: list[tuple[str, dict[str, object]]]) -> None:
    """Each emitted (key, event) is keyed by its call (or agent) and serialises to a record the
    parser either takes or rejects with a reason."""
    for key, event in emitted:
        agent = "call_id" not in event
        assert key == event["agent_id" if agent else "call_id"]
        raw = orjson.dumps(event)  # as the producer sends it
        try:
            if agent:
                parse_agent_event(raw, now_ms=NOW, max_bytes=len(raw))
            else:
                parse_event(raw, now_ms=NOW, max_bytes=len(raw))
        except Rejected as rejected:
            assert rejected.reason in REJECT_REASONS - {"late"}, rejected


# Strings a field can hold: near-valid numbers and times, and hostile text.
field_texts = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1e5",
            "1.",
            ".5",
            "999999999999",
            "999999999999.999999999",
            "9999999999999",
            "\u0663\u0663",  # Arabic-Indic digits: \d matches them
            "\uff19",
            "NONE",
            "REALTIME",
            "9999-12-31 23:59:59",
            "0001-01-01 00:00:00",
            "2026-03-02 10:00:00+14:00",
            "2026-03-02T10:00:00-23:59",
            "2026-02-30 10:00:00",
            "x" * 200_000,
            '"',
            '"a,b"',
            "a\rb",
            "a\x00b",
        ]
    ),
    st.text(st.sampled_from(HOSTILE_CHARS), max_size=20),
    st.text(max_size=20),
)


# -- Asterisk ------------------------------------------------------------------------------------

T = 1_772_445_600  # 2026-03-02T10:00:00Z
FILE_LINES = [
    f"{T}|1.1|sales|NONE|ENTERQUEUE||5551234|1",
    f"{T + 15}|1.1|sales|Agent/1001|CONNECT|15|1.2|3",
    f"{T + 200}|1.1|sales|Agent/1001|COMPLETECALLER|15|185|1",
    f"{T + 20}|2.1|sales|NONE|ABANDON|1|1|6",
    f"{T + 30}|3.1|sales|NONE|EXITWITHTIMEOUT|1|1|30",
    f"{T + 40}|4.1|sales|SIP/1|ATTENDEDTRANSFER|LINK|Local/1@x;1|Local/1@x;2|10|170",
    f"{T + 41}|4.2|sales|SIP/1|BLINDTRANSFER|100@x|10|170|1",
    f"{T + 42}|5.1|sales|NONE|SYSCOMPAT",
    f"{T + 43}|5.2|sales|SIP/1|RINGNOANSWER|1000",
    f"{T + 44}|NONE|NONE|SIP/1|AGENTLOGIN|",
    f"{T + 44}|MANAGER|sales|Local/2004@from-internal/n|ADDMEMBER|",
    f"{T + 44}|REALTIME|support|PJSIP/2004|ADDMEMBER|",
    f"{T + 44}|NONE|sales|Alice|PAUSE|lunch",
    f"{T + 44}|NONE|sales|Alice|UNPAUSE|",
    f"{T + 44}|NONE|NONE|Agent/1001|PAUSEALL|break",
    f"{T + 44}|NONE|NONE|Agent/1001|UNPAUSEALL|",
    f"{T + 44}|MANAGER|sales|PJSIP/2004-0000001a|REMOVEMEMBER|",
    f"{T + 44}|NONE|NONE|Agent/1001|AGENTLOGOFF|SIP/8007-0001|3600",
    f"{T + 45}|NONE|NONE|NONE|QUEUESTART|",
    f"{T + 46}.250000|6.1|support|NONE|ENTERQUEUE||555|1",
]
CSV_HEADER = "time,callid,queuename,agent,event,data1,data2,data3,data4,data5"
CSV_LINES = [
    "2012-07-04 07:33:21.165823,1341401601.24,q1,NONE,ENTERQUEUE,,1000,1,,",
    "2012-07-04 07:33:23.085718,1341401601.24,q1,Agent/3001,CONNECT,2,1341401601.27,1,,",
    "2012-07-04 07:49:52.939802,1341402586.51,q1,NONE,ABANDON,1,1,6,,",
    '2026-03-02 10:03:00.000000,9.1,sales,SIP/1,ATTENDEDTRANSFER,LINK,a;1,a;2,10,"170|1"',
    "2012-07-04 07:33:21.165823 | 1341401601.24 | q1 | NONE | ENTERQUEUE | | 1000 | 1",
    "1341401601.5,7.1,q1,NONE,EXITEMPTY,1,1,3,,",
    "2012-07-04 07:30:00.000001,MANAGER,q1,Local/3001@from-queue/n,ADDMEMBER,,,,,",
    "2012-07-04 07:30:01.000001,NONE,q1,PJSIP/3001,PAUSE,Coffee break,,,,",
    "2012-07-04 07:30:02.000001,NONE,NONE,Agent/3001,UNPAUSEALL,,,,,",
    "2012-07-04 07:30:03.000001,MANAGER,q1,Local/3001@from-queue/n,REMOVEMEMBER,,,,,",
]


def mutate_line(line: str, sep: str, rng: random.Random) -> str:
    """A field replaced by hostile text, dropped or repeated, or characters broken."""
    fields = line.split(sep)
    op = rng.randrange(4)
    at = rng.randrange(len(fields))
    if op == 0:
        fields[at] = rng.choice(HOSTILE_VALUES)
    elif op == 1:
        del fields[at]
    elif op == 2:
        fields.insert(at, fields[at])
    else:
        return mutate_text(line, rng)
    return sep.join(fields)


HOSTILE_VALUES = [
    "",
    "-1",
    "999999999999",
    "999999999999.999",
    "\u0663\u0663\u0663",
    "9999-12-31 23:59:59",
    "0001-01-01 00:00:00",
    "x" * 200_000,
    '"',
    "\r",
    "\x00",
    "|",
    "NONE",
    "QUEUESTART",
    "CONNECT",
    "ENTERQUEUE",
    "ABANDON",
    "ADDMEMBER",
    "REMOVEMEMBER",
    "PAUSE",
    "AGENTLOGIN",
]


class Lines:
    """Lines fed one by one to a mapper, checking what each one did."""

    def __init__(self, form: str, tz: ZoneInfo) -> None:
        self.mapper = QueueLogMapper(form, tz, source="fuzz", max_open_hours=1)
        self.emitted = 0
        self.number = 0

    def feed(self, text: str) -> None:
        self.number += 1
        skips = len(self.mapper.skips)
        out = self.mapper.feed(text, self.number)
        round_trip(out)
        self.emitted += len(out)
        new = self.mapper.skips[skips:]
        assert len(new) <= 1
        for skip in new:
            assert skip.reason in SKIP_REASONS and skip.line == self.number and skip.detail
            assert not out

    def finish(self) -> None:
        stats = self.mapper.stats
        assert stats.lines == self.number
        assert stats.events == self.emitted
        assert sum(stats.skipped.values()) == len(self.mapper.skips)
        asterisk.summary(stats)
        # The state a connector saves with its read position survives its own JSON round trip.
        saved = json.loads(json.dumps(self.mapper.snapshot()))
        QueueLogMapper(self.mapper.form, self.mapper.tz).restore(saved)


@settings(FUZZ)
@given(st.randoms(use_true_random=False), st.integers(1, 12), st.sampled_from(ZONES))
@example(random.Random(0), 1, ZONES[0])
def test_asterisk_file_lines_mutated_map_or_are_skipped(
    rng: random.Random, count: int, tz: ZoneInfo
) -> None:
    lines = Lines("file", tz)
    for _ in range(count):
        line = rng.choice(FILE_LINES)
        lines.feed(mutate_line(line, "|", rng) if rng.random() < 0.8 else line)
    lines.finish()


@settings(FUZZ)
@given(st.randoms(use_true_random=False), st.integers(1, 12), st.sampled_from(ZONES))
@example(random.Random(0), 1, ZONES[0])
def test_asterisk_csv_rows_mutated_map_or_are_skipped(
    rng: random.Random, count: int, tz: ZoneInfo
) -> None:
    lines = Lines("csv", tz)
    if rng.random() < 0.5:
        header = CSV_HEADER if rng.random() < 0.5 else mutate_line(CSV_HEADER, ",", rng)
        lines.feed(header)
    for _ in range(count):
        line = rng.choice(CSV_LINES)
        lines.feed(mutate_line(line, ",", rng) if rng.random() < 0.8 else line)
    lines.finish()


@settings(FUZZ)
@given(
    st.sampled_from(asterisk.FORMS),
    st.lists(st.lists(field_texts, max_size=12), max_size=6),
    st.sampled_from(ZONES),
)
# Spans reaching before 1970: a rebuilt queue entry or an offer at ts - holdtime / ringtime.
@example("file", [[str(T), "1.1", "q", "A", "CONNECT", "999999999999", "x", "3"]], ZONES[0])
@example("file", [[str(T), "1.1", "q", "A", "CONNECT", "1", "x", "999999999999"]], ZONES[0])
@example("file", [[str(T), "1.1", "q", "A", "ABANDON", "1", "1", str(T + 1)]], ZONES[0])
# CSV fields the csv module refuses: longer than its field limit, a bare carriage return.
@example("csv", [["2026-03-02 10:00:00", "x" * 200_000, "q", "A", "ENTERQUEUE"]], ZONES[0])
@example("csv", [["2026-03-02 10:00:00", "a\rb", "q", "A", "ENTERQUEUE"]], ZONES[0])
def test_asterisk_lines_of_hostile_fields_map_or_are_skipped(
    form: str, rows: list[list[str]], tz: ZoneInfo
) -> None:
    lines = Lines(form, tz)
    for fields in rows:
        lines.feed(("|" if form == "file" else ",").join(fields))
    lines.finish()


agent_names = st.one_of(
    field_texts,
    st.sampled_from(["Local/2004@from-internal/n", "PJSIP/201", "SIP/201-0000001a", "Agent/7"]),
    st.builds(
        lambda tech, rest: f"{tech}/{rest}", st.sampled_from(["Local", "PJSIP", "x"]), field_texts
    ),
)


@settings(FUZZ)
@given(
    st.sampled_from(asterisk.FORMS),
    st.lists(
        st.tuples(
            st.sampled_from(sorted(asterisk.AGENT_VERBS)),
            field_texts,  # callid
            st.one_of(field_texts, st.sampled_from(["sales", "support"])),  # queue
            agent_names,
            st.lists(field_texts, max_size=3),  # data: a pause reason, a channel...
        ),
        max_size=10,
    ),
    st.sampled_from(ZONES),
)
@example("file", [("ADDMEMBER", "MANAGER", "q|x", "SIP/1", [])], ZONES[0])
@example("csv", [("PAUSE", "NONE", "q", "Local/a@b/n", ["a\x00b"])], ZONES[0])
def test_asterisk_agent_lines_map_or_are_skipped(
    form: str, rows: list[tuple[str, str, str, str, list[str]]], tz: ZoneInfo
) -> None:
    """The agent verbs with hostile fields: agent events keyed by a name the engine takes, or a
    skip with its reason; the memberships survive the connector's JSON round trip."""
    lines = Lines(form, tz)
    stamp = str(T) if form == "file" else "2026-03-02 10:00:00"
    for verb, callid, queue, agent, data in rows:
        fields = [stamp, callid, queue, agent, verb, *data]
        lines.feed(("|" if form == "file" else ",").join(fields))
    lines.finish()


@settings(FUZZ)
@given(st.sampled_from(asterisk.FORMS), st.lists(st.text(max_size=80), max_size=8))
def test_asterisk_arbitrary_text_maps_or_is_skipped(form: str, texts: list[str]) -> None:
    lines = Lines(form, ZoneInfo("UTC"))
    for text in texts:
        lines.feed(text)
    lines.finish()


@settings(FUZZ)
@given(
    st.sampled_from(asterisk.FORMS),
    st.randoms(use_true_random=False),
    st.lists(st.binary(max_size=60), max_size=4),
)
def test_asterisk_load_reads_any_file(form: str, rng: random.Random, garbage: list[bytes]) -> None:
    """A whole file of mutated lines (bytes, so invalid UTF-8 too), as `replay asterisk` reads
    it: a plan, every line counted, the events sorted by time."""
    valid = FILE_LINES if form == "file" else [CSV_HEADER, *CSV_LINES]
    data = b"".join(
        mutate_bytes(line.encode(), rng) + b"\n" if rng.random() < 0.7 else line.encode() + b"\n"
        for line in valid
    )
    data += b"\n".join(garbage)
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "queue_log"
        path.write_bytes(data)
        plan = asterisk.load([path], form)
    assert plan.stats.lines == len(io.BytesIO(data).readlines())
    assert plan.stats.events == len(plan.events)
    round_trip(plan.events)
    stamps = [parse_event(orjson.dumps(e), now_ms=NOW).ts for _, e in plan.events if _ok(e)]
    assert stamps == sorted(stamps)


def _ok(event: dict[str, object]) -> bool:
    try:
        parse_event(orjson.dumps(event), now_ms=NOW)
    except Rejected:
        return False
    return True


# -- the Technion "Anonymous Bank" rows --------------------------------------------------------

AB_COLUMNS = anonymous_bank.COLUMNS
AB_ROWS: list[dict[str, str]] = [
    dict(
        zip(
            AB_COLUMNS,
            values.split("\t"),
            strict=True,
        )
    )
    for values in (
        "AA0101\t34536\t0\t0\tPS\t990201\t7:02:47\t7:02:56\t9\t0:00:00\t0:00:00\t0\tAGENT\t"
        "7:02:57\t7:05:41\t164\tDORIT",
        "AA0102\t34537\t0\t2\tNW\t990201\t23:59:00\t23:59:10\t10\t23:59:10\t0:00:30\t80\tAGENT\t"
        "0:00:30\t0:03:00\t150\tYIFAT",
        "AA0103\t34538\t0\t0\tPS\t990228\t7:02:47\t7:02:56\t9\t7:02:56\t7:03:01\t5\tHANG\t"
        "0:00:00\t0:00:00\t0\tNO_SERVER",
        "AA0104\t34539\t0\t0\tPS\t990201\t7:02:47\t7:02:56\t9\t0:00:00\t0:00:00\t0\tHANG\t"
        "0:00:00\t0:00:00\t0\tNO_SERVER",
        "AA0105\t34540\t0\t0\tPS\t990201\t7:02:47\t7:02:56\t9\t0:00:00\t0:00:00\t0\tPHANTOM\t"
        "0:00:00\t0:00:00\t0\tNO_SERVER",
    )
]
AB_HOSTILE = [
    "",
    " ",
    "0:00:00",
    "24:00:00",
    "23:59:60",
    "99:99:99",
    "-1:00:00",
    "\u0667:02:47",  # an Arabic-Indic 7
    "7:02:47 ",
    "990229",  # 1999 has no 29 February
    "000000",
    "991332",
    "\u0669\u0669\u0660\u0662\u0660\u0661",
    "AGENT",
    "HANG",
    "PHANTOM",
    "x" * 100_000,
    "\t",
    "\r",
    "\x00",
]


def mutate_row(row: dict[str, str], rng: random.Random) -> dict[str, str]:
    out = dict(row)
    for _ in range(rng.randint(1, 3)):
        column = rng.choice(AB_COLUMNS)
        op = rng.randrange(3)
        if op == 0:
            out[column] = rng.choice(AB_HOSTILE)
        elif op == 1:
            out.pop(column, None)
        else:
            out[column] = mutate_text(out.get(column, ""), rng)
    return out


def check_row(row: dict[str, str], tz: ZoneInfo) -> None:
    try:
        events = row_events(row, 7, tz)
    except MalformedRow as exc:
        assert exc.line == 7 and exc.what
        return
    if row.get("outcome", "").strip() == "PHANTOM":
        assert events == []
    round_trip([(str(event["call_id"]), event) for event in events])


@settings(FUZZ)
@given(st.randoms(use_true_random=False), st.sampled_from(ZONES))
@example(random.Random(0), ZONES[0])
def test_anonymous_bank_rows_mutated_map_or_are_malformed(rng: random.Random, tz: ZoneInfo) -> None:
    check_row(mutate_row(rng.choice(AB_ROWS), rng), tz)


@settings(FUZZ)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            column: st.one_of(field_texts, st.sampled_from(AB_HOSTILE)) for column in AB_COLUMNS
        },
    ),
    st.sampled_from(ZONES),
)
def test_anonymous_bank_rows_of_hostile_fields_map_or_are_malformed(
    row: dict[str, str], tz: ZoneInfo
) -> None:
    check_row({**AB_ROWS[0], **row}, tz)
    check_row(row, tz)


@settings(FUZZ)
@given(
    st.randoms(use_true_random=False),
    st.lists(st.binary(max_size=80), max_size=3),
    st.sampled_from(ZONES),
)
@example(random.Random(0), [b"\xff\xfe\tAGENT"], ZONES[0])  # not UTF-8
def test_anonymous_bank_load_reads_any_rows(
    rng: random.Random, garbage: list[bytes], tz: ZoneInfo
) -> None:
    """A file of mutated rows (bytes, so invalid UTF-8 too) under the real header, as `replay
    anonymous-bank` reads it: a plan, every row a call or a skip, the events sorted by time."""
    header = "\t".join(AB_COLUMNS).encode()
    rows = [
        mutate_bytes(line, rng) if rng.random() < 0.7 else line
        for line in ("\t".join(row[c] for c in AB_COLUMNS).encode() for row in AB_ROWS * 2)
    ]
    data = b"\r\n".join([header, *rows, *garbage]) + b"\r\n"
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "calls.tsv"
        path.write_bytes(data)
        plan = anonymous_bank.load(path, tz)
        with path.open(encoding="utf-8-sig", errors="replace", newline=None) as handle:
            rows_read = sum(1 for _ in handle) - 1
    assert plan.calls + len(plan.skipped) == rows_read
    assert all(skip.reason for skip in plan.skipped)
    round_trip(plan.events)
