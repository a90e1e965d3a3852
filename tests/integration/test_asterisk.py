"""An Asterisk queue_log through `stream-app replay asterisk`, the real broker and a worker:
replayed twice, it gives the figures of one replay (hand-computed below), and its agent lines
the same agent events twice (the engine drops the second as duplicates)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from stream_app.domain.events import format_ts
from tests.integration.engine import latest_by_key, past_interval, queue_metrics, wait_for
from tests.support import Worker, consume_all, started, unique_prefix

S = 1000
MIN = 60 * S


def queue_log(t0: int) -> str:
    """A quarter hour of two queues, in the file form; t0 is in epoch ms, whole seconds."""

    def at(seconds: int) -> int:
        return t0 // S + seconds

    lines = [
        f"{at(0)}|NONE|NONE|NONE|QUEUESTART|",
        f"{at(1)}|MANAGER|sales|SIP/1|ADDMEMBER|",
        f"{at(1)}|MANAGER|support|SIP/2|ADDMEMBER|",
        # a: answered in sales after 15 s on the line, rang 3 s: queue wait 12 s.
        f"{at(10)}|a.1|sales|NONE|ENTERQUEUE||5550001|1",
        f"{at(25)}|a.1|sales|SIP/1|CONNECT|15|a.2|3",
        f"{at(200)}|a.1|sales|SIP/1|COMPLETECALLER|15|175|1",
        # b: hangs up after 3 s in sales: a short abandon.
        f"{at(30)}|b.1|sales|NONE|ENTERQUEUE||5550002|1",
        f"{at(32)}|b.1|sales|SIP/1|RINGNOANSWER|2000",
        f"{at(33)}|b.1|sales|NONE|RINGCANCELED|1000",
        f"{at(33)}|b.1|sales|NONE|ABANDON|1|1|3",
        # c: abandons sales after 48 s.
        f"{at(40)}|c.1|sales|NONE|ENTERQUEUE||5550003|1",
        f"{at(88)}|c.1|sales|NONE|ABANDON|1|1|48",
        # d: times out of sales, answered in support 40 s after joining sales, rang 2 s.
        f"{at(100)}|d.1|sales|NONE|ENTERQUEUE||5550004|1",
        f"{at(130)}|d.1|sales|NONE|EXITWITHTIMEOUT|1|1|30",
        f"{at(131)}|d.1|support|NONE|ENTERQUEUE||5550004|1",
        f"{at(140)}|d.1|support|SIP/2|CONNECT|9|d.2|2",
        f"{at(300)}|d.1|support|SIP/2|COMPLETEAGENT|9|160|1",
        f"{at(150)}|NONE|support|SIP/2|PAUSE|paperwork",
        f"{at(160)}|NONE|support|SIP/2|UNPAUSE|",
        # e: answered in support after 5 s, rang 1 s, then blind-transferred.
        f"{at(200)}|e.1|support|NONE|ENTERQUEUE||5550005|1",
        f"{at(205)}|e.1|support|SIP/2|CONNECT|5|e.2|1",
        f"{at(400)}|e.1|support|SIP/2|BLINDTRANSFER|2000|from-internal|5|195|1",
        # f: no member reachable in support: flows out.
        f"{at(310)}|f.1|support|NONE|ENTERQUEUE||5550006|1",
        f"{at(311)}|f.1|support|NONE|EXITEMPTY|1|1|1",
        # g: still waiting in sales when Asterisk restarts: abandoned at the QUEUESTART (100 s).
        f"{at(500)}|g.1|sales|NONE|ENTERQUEUE||5550007|1",
        f"{at(600)}|NONE|NONE|NONE|QUEUESTART|",
        "a line Asterisk never wrote",
        # h: 18 minutes on, in another queue: stream time passes the interval's end + grace.
        f"{at(18 * 60)}|h.1|late|NONE|ENTERQUEUE||5550008|1",
        f"{at(18 * 60 + 30)}|h.1|late|NONE|ABANDON|1|1|30",
    ]
    return "".join(f"{line}\n" for line in lines)


# Handle time is the talk (queue_log has no after-call work: it ends with the call): a 175 s;
# d 160 s and e 195 s in support.
def expected(t0: int) -> dict[str, dict[str, object]]:
    start, end = format_ts(t0), format_ts(t0 + 15 * MIN)
    return {
        f"sales|{start}": {
            "queue": "sales", "interval_start": start, "interval_end": end,
            "offered": 3, "answered": 1, "abandoned": 3, "short_abandoned": 1, "flowed_out": 1,
            "answered_within_threshold": 1, "service_level_seconds": 20,
            "asa_seconds": 15.0, "awt_seconds": 12.0, "aht_seconds": 175.0,
            "longest_wait_seconds": 100.0, "service_level": 1 / 3, "abandon_rate": 2 / 3,
        },
        f"support|{start}": {
            "queue": "support", "interval_start": start, "interval_end": end,
            "offered": 2, "answered": 2, "abandoned": 0, "short_abandoned": 0, "flowed_out": 1,
            "answered_within_threshold": 1, "service_level_seconds": 20,
            "asa_seconds": 22.5, "awt_seconds": 5.5, "aht_seconds": 177.5,
            "longest_wait_seconds": 40.0, "service_level": 0.5, "abandon_rate": 0.0,
        },
    }  # fmt: skip


def replay(worker: Worker, path: Path) -> subprocess.CompletedProcess[str]:
    return worker.run_command("replay", "asterisk", str(path))


def figures(record: dict[str, Any]) -> dict[str, Any]:
    """The call figures of contract §5 (the agent figures of §6 are tested on their own)."""
    return {k: v for k, v in record.items() if k not in AGENT_FIELDS}


AGENT_FIELDS = {"revision", "occupancy", "agents_staffed_avg"}


def test_an_asterisk_log_replayed_twice_gives_the_figures_of_one_replay(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("asterisk")
    worker = started(workers, tmp_path, prefix)
    t0 = past_interval()
    log = tmp_path / "queue_log"
    log.write_text(queue_log(t0))

    first = replay(worker, log)
    assert "replayed 29 lines: 8 calls and 2 agents as 31 events" in first.stdout, first.stdout
    assert f"{log}:27: skipped (too_few_fields)" in first.stderr
    assert "skipped lines: 1 too_few_fields" in first.stderr
    assert "calls ended by QUEUESTART: 1" in first.stderr
    want = expected(t0)
    got = queue_metrics(prefix, set(want))
    assert {k: figures(got[k]) for k in want} == want

    wait_for(lambda: worker.backlog() == 0, timeout=30, message="the first replay consumed")

    def settled() -> dict[str, dict[str, Any]] | None:
        """queue-metrics once a read two seconds later finds no new revision (the agents'
        figures cross one hop more than the calls', so they may revise an interval once)."""
        first = latest_by_key(consume_all(prefix + "queue-metrics", idle=1.0, timeout=10))
        time.sleep(2)
        again = latest_by_key(consume_all(prefix + "queue-metrics", idle=1.0, timeout=10))
        return again if again == first else None

    before = wait_for(settled, timeout=60, message="queue-metrics settled")
    second = replay(worker, log)
    assert "as 31 events" in second.stdout
    wait_for(lambda: worker.backlog() == 0, timeout=30, message="the second replay consumed")
    latest = latest_by_key(consume_all(prefix + "queue-metrics", idle=1.0, timeout=10))
    assert {k: figures(latest[k]) for k in want} == want
    assert latest == before  # nothing changed: no new revision
    # The second replay sent the very same events: same keys, same ids.
    sent = [(r.key, r.json()["event_id"]) for r in consume_all(prefix + "call-events", expect=54)]
    assert len(sent) == 54 and len(set(sent)) == 27
    agents = [r.json() for r in consume_all(prefix + "agent-events", expect=8)]
    assert len(agents) == 8 and len({a["event_id"] for a in agents}) == 4
    # Members named by their interface (SIP/1) become agents by their device's name (1).
    assert sorted((a["agent_id"], a["ts"], a["type"], a.get("reason")) for a in agents) == sorted(
        2
        * [
            ("1", format_ts(t0 + 1 * S), "agent_logged_in", None),
            ("2", format_ts(t0 + 1 * S), "agent_logged_in", None),
            ("2", format_ts(t0 + 150 * S), "agent_not_ready", "paperwork"),
            ("2", format_ts(t0 + 160 * S), "agent_ready", None),
        ]
    )
