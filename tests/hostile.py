"""Hostile input for the fuzz tests: valid records and the ways a feed breaks them.

Every mutation is driven by a `random.Random`, so the unit tests (through hypothesis's
`st.randoms()`, which shrinks) and the integration test (a seeded generator, reproducible)
break records the same ways. Imports no Kafka client: unit tests use it too.
"""

from __future__ import annotations

import json
import random

import orjson

from stream_app.domain.events import format_ts
from stream_app.domain.model import EVENT_TYPES

# Characters that break parsers, labels, keys and terminals: every C0 control, DEL, C1 NEL,
# line and paragraph separators, bidi override, zero width, BOM, the replacement character,
# separators of the formats around (|, CSV, TSV, JSON), digits that are not ASCII, a combining
# mark, an astral character.
HOSTILE_CHARS = (
    "".join(chr(code) for code in range(0x20))
    + "\x7f\x85\xa0\u2028\u2029\u200b\u202e\ufeff\ufffd"
    + "|,;\"'\\/ :.-+TZz0123456789\u0663\uff19\u00e9\u0301\U0001f600"
)

# JSON values (raw tokens, some beyond what `orjson.dumps` writes) that no field expects:
# nulls, booleans, numbers past every integer range or not finite (not JSON, but seen in the
# wild), lone surrogates, empty and blank strings, containers, nesting near the parser's limit.
HOSTILE_TOKENS: tuple[bytes, ...] = (
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"-1",
    b"1.5",
    b"-1e-7",
    b"1e400",
    b"-1e400",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551616",
    b"123456789012345678901234567890",
    b"253402300800000",
    b'""',
    b'" "',
    b'"\\u0000"',
    b'"\\ud800"',
    b'"\\udfff\\ud800"',
    b'"\\ud83d\\ude00"',
    b'"\\u202e\\u0007|\\n"',
    b"[]",
    b"{}",
    b'["call_started"]',
    b'{"a":1}',
    b"[" * 100 + b"]" * 100,
    b"[" * 1000 + b"]" * 1000,  # under orjson's depth limit (1024), over Python's recursion limit
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 600 + b"1" + b"}" * 600,
)

# Timestamps around every edge of contract §1 and RFC 3339.
HOSTILE_TIMESTAMPS: tuple[bytes, ...] = tuple(
    orjson.dumps(value)
    for value in (
        0,
        -1,
        253_402_300_799_999,
        253_402_300_800_000,
        2**63 - 1,
        -(2**63),
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999Z",
        "9999-12-31T23:59:59.999-23:59",
        "0001-01-01T00:00:00+23:59",
        "2026-03-02T10:00:00",
        "2026-03-02T10:00:00.Z",
        "2026-03-02t10:00:00z",
        "2026-03-02 10:00:00+01:00",
        "2026-02-30T10:00:00Z",
        "2026-03-02T24:00:00Z",
        "2026-03-02T10:00:60Z",
        "2026-03-02T10:00:00+24:00",
        "2026-03-02T10:00:00.123456789012345678901234567890Z",
        "2026-W10-1T10:00:00Z",
        "+2026-03-02T10:00:00Z",
        "2026-03-02T10:00:00\u0663Z",
        "",
        "yesterday",
    )
)

KNOWN_FIELDS = ("event_id", "call_id", "type", "ts", "queue", "agent_id", "tenant", "reason")


def valid_events(call_id: str, ts: int) -> list[dict[str, object]]:
    """One well-formed event of every type of contract §1 for one call, `ts` onwards."""
    fields: dict[str, dict[str, object]] = {
        "call_started": {"queue": "sales"},
        "queue_entered": {"queue": "sales"},
        "agent_offered": {"queue": "sales", "agent_id": "a1"},
        "call_answered": {"queue": "sales", "agent_id": "a1", "tenant": "acme"},
        "queue_left": {"queue": "sales", "reason": "timeout"},
    }
    return [
        {
            "event_id": f"{call_id}:{kind}",
            "call_id": call_id,
            "type": kind,
            "ts": format_ts(ts + rank * 1000) if rank % 2 else ts + rank * 1000,
            **fields.get(kind, {}),
        }
        for rank, kind in enumerate(EVENT_TYPES)
    ]


def any_char(rng: random.Random) -> str:
    """Any printable-range code point but a lone surrogate: text read from a file (decoded
    with errors="replace") never holds one; raw JSON tokens test those."""
    code = rng.randrange(0x20, 0x30000 - 0x800)
    return chr(code + 0x800 if code >= 0xD800 else code)


def mutate_text(text: str, rng: random.Random) -> str:
    """A few characters inserted, deleted, replaced or repeated."""
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(chars))
        op = rng.randrange(5)
        if op == 0 or not chars:
            chars.insert(at, rng.choice(HOSTILE_CHARS))
        elif op == 1:
            del chars[min(at, len(chars) - 1)]
        elif op == 2:
            chars[min(at, len(chars) - 1)] = rng.choice(HOSTILE_CHARS)
        elif op == 3:
            chars.insert(at, any_char(rng))
        else:
            chars[at:at] = chars[at : at + rng.randint(1, 8)] * rng.randint(1, 3)
    return "".join(chars)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """A few bits flipped, bytes inserted, deleted or repeated, or the end cut off."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(buf))
        op = rng.randrange(5)
        if op == 0 or not buf:
            buf.insert(at, rng.randrange(256))
        elif op == 1:
            del buf[min(at, len(buf) - 1)]
        elif op == 2:
            buf[min(at, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 3:
            buf[at:at] = buf[at : at + rng.randint(1, 16)]
        else:
            del buf[at:]
    return bytes(buf)


def _string_token(text: str) -> bytes:
    """A JSON string; lone surrogates (mutations insert them) as \\u escapes."""
    return json.dumps(text).encode()


def encode_fields(fields: list[tuple[str, bytes]]) -> bytes:
    """A JSON object from (name, raw JSON token) pairs, in order (a name may repeat)."""
    return b"{" + b",".join(_string_token(name) + b":" + token for name, token in fields) + b"}"


def mutate_event(event: dict[str, object], rng: random.Random) -> bytes:
    """The event as JSON with one to three faults: a field dropped, renamed, repeated or added;
    a value of the wrong type or beyond every range; a string or timestamp subtly broken."""
    fields = [(name, orjson.dumps(value)) for name, value in event.items()]
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(8)
        at = rng.randrange(len(fields)) if fields else 0
        if op == 0 and fields:
            del fields[at]
        elif op == 1 and fields:
            fields[at] = (fields[at][0], rng.choice(HOSTILE_TOKENS))
        elif op == 2 and fields:
            token = fields[at][1]
            text = json.loads(token) if token.startswith(b'"') else token.decode()
            fields[at] = (fields[at][0], _string_token(mutate_text(text, rng)))
        elif op == 3:
            fields = [(n, v) for n, v in fields if n != "ts"]
            fields.append(("ts", rng.choice(HOSTILE_TIMESTAMPS)))
        elif op == 4:
            fields = [(n, v) for n, v in fields if n != "type"]
            kind = rng.choice([*EVENT_TYPES, "call_transferred", "CALL_STARTED", ""])
            fields.append(("type", _string_token(kind)))
        elif op == 5 and fields:
            name, value = fields[at]
            fields[at] = (mutate_text(name, rng) if rng.random() < 0.5 else name.upper(), value)
        elif op == 6 and fields:
            fields.append((fields[at][0], rng.choice(HOSTILE_TOKENS)))  # a repeated name
        else:
            name = rng.choice([*KNOWN_FIELDS, "note", ""])
            fields.append((name, rng.choice(HOSTILE_TOKENS)))
    return encode_fields(fields)


def hostile_value(rng: random.Random, base: list[dict[str, object]]) -> bytes | None:
    """One record value: mostly mutations of the valid events in `base`, else garbage."""
    op = rng.randrange(10)
    if op < 5:
        return mutate_event(rng.choice(base), rng)
    if op == 5:
        return mutate_bytes(orjson.dumps(rng.choice(base)), rng)
    if op == 6:
        return rng.randbytes(rng.randrange(64))
    if op == 7:
        return rng.choice(HOSTILE_TOKENS)
    if op == 8:
        return rng.choice([None, b"", b" ", b"\x00", b"{}", b"[]", b"null"])
    return orjson.dumps(rng.choice(base))  # a valid one (a duplicate, maybe)
