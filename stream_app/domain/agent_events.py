"""Parse and validate one `agent-events` record (contract §6).

The same rules as call events, with the same checks and reject reasons (`events.py`): a record
becomes an `AgentEvent` or raises `Rejected`, checked in a fixed order (size, JSON, shape,
required fields, type, timestamp, optional fields, per-type requirements) so a record with
several faults always counts under one reason. The agent_id is the key of the agent's state
and part of `agent-metrics` keys, so it is a name like a queue: at most MAX_NAME_CHARS, no
control characters, no '|'. A record keyed by something else is not rejected here: like a
call event, the stage sends it back to the input under its agent_id.
"""

from __future__ import annotations

from stream_app.domain.events import (
    Rejected,
    check_name,
    decode_record,
    event_time,
    optional_name,
    quote,
    required_str,
)
from stream_app.domain.model import AGENT_TYPE_RANK, AgentEvent

# The types whose `queues` field is required: the whole list of queues the agent serves.
QUEUE_LIST_TYPES = frozenset({"agent_logged_in", "agent_queues"})


def parse_agent_event(
    raw: bytes | None,
    *,
    now_ms: int,
    max_bytes: int = 65536,
    max_future_ms: int = 300_000,
) -> AgentEvent:
    """Validate one record value; `now_ms` is the wall clock, to reject events from the future.

    Fields that belong to another type (`queues` on `agent_ready`, `reason` on a login) are
    ignored, as unknown fields are: they could not change what the event means.
    """
    obj = decode_record(raw, max_bytes)
    event_id = required_str(obj, "event_id")
    agent_id = check_name(required_str(obj, "agent_id"), "agent_id")
    type_ = required_str(obj, "type")
    if type_ not in AGENT_TYPE_RANK:
        raise Rejected("unknown_type", f"type {quote(type_)}")
    ts = event_time(obj, now_ms, max_future_ms)
    tenant = optional_name(obj, "tenant", separator_ok=True)
    queues: tuple[str, ...] | None = None
    reason: str | None = None
    if type_ in QUEUE_LIST_TYPES:
        queues = _queue_list(obj.get("queues"), type_)
    elif type_ == "agent_not_ready":
        # A reason becomes a key of `not_ready_reasons` in agent-metrics: bounded, printable.
        reason = optional_name(obj, "reason", separator_ok=True)
    return AgentEvent(event_id, agent_id, type_, ts, queues, reason, tenant)


def _queue_list(value: object, type_: str) -> tuple[str, ...]:
    """The distinct queues, sorted: one set, however the source ordered or repeated it. An
    empty list is an agent serving no queue (staffed, but counted in none)."""
    if value is None:
        raise Rejected("missing_queue", f"{type_} needs queues (a list of queue names)")
    if type(value) is not list:
        raise Rejected("invalid_field", f"queues must be a list of strings, got {quote(value)}")
    names = set()
    for item in value:
        if type(item) is not str or not item:
            raise Rejected(
                "invalid_field", f"queues must hold non-empty strings, got {quote(item)}"
            )
        names.add(check_name(item, "queue"))
    return tuple(sorted(names))
