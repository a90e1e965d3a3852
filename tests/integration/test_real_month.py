"""A real month of a real call center through the real broker and worker, checked interval by
interval against figures computed independently from the TSV (tests/oracle_anonymous_bank.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.engine import Calls, latest_by_key, send, wait_for
from tests.oracle_anonymous_bank import expected_intervals
from tests.support import DATASET, Worker, consume_all, same, started, unique_prefix

END_OF_MONTH_MS = 920_332_800_000  # 1999-03-02T00:00:00Z: moves stream time past the last interval


def replay(worker: Worker) -> str:
    done = worker.run_command("replay", "anonymous-bank", str(DATASET), timeout=600)
    calls = Calls()
    calls.add("end-of-replay", "call_started", END_OF_MONTH_MS)
    calls.add("end-of-replay", "call_ended", END_OF_MONTH_MS + 1000)
    send(worker.env["TOPIC_PREFIX"], calls.events)
    return done.stdout


def differences(
    got: dict[str, dict[str, Any]], want: dict[tuple[str, str], dict[str, Any]]
) -> list[str]:
    out = []
    for (queue, start), fields in want.items():
        record = got.get(f"{queue}|{start}")
        if record is None:
            out.append(f"{queue}|{start}: not published")
            continue
        for name, value in fields.items():
            if not same(record.get(name), value):
                out.append(f"{queue}|{start}: {name} = {record.get(name)!r}, expected {value!r}")
    extra = set(got) - {f"{q}|{s}" for q, s in want}
    out.extend(f"{key}: published but not expected" for key in sorted(extra))
    return out


def test_the_real_month_matches_independent_figures(tmp_path: Path, workers: list[Worker]) -> None:
    want = expected_intervals(DATASET)
    prefix = unique_prefix("month")
    worker = started(workers, tmp_path, prefix)
    summary = replay(worker)
    assert "as 175443 events" in summary, summary

    def all_published() -> dict[str, dict[str, Any]] | None:
        if worker.backlog() > 0:  # both stages drained first: no revision still on its way
            return None
        latest = latest_by_key(consume_all(prefix + "queue-metrics", idle=2.0, timeout=60))
        return latest if len(latest) >= len(want) else None

    got = wait_for(all_published, timeout=600, every=5, message=f"{len(want)} intervals")
    problems = differences(got, want)
    assert not problems, f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:30])
    dlq = consume_all(prefix + "call-events-dlq", idle=1.0, timeout=10)
    assert dlq == [], [(r.headers, r.value) for r in dlq[:5]]
