"""A worker killed with SIGKILL mid-stream and restarted ends with exactly the figures of a clean run."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from stream_app.domain.events import parse_ts
from stream_app.sources.anonymous_bank import load
from tests.integration.engine import Calls, latest_by_key, send, wait_for
from tests.support import DATASET, Worker, consume_all, make_worker, unique_prefix

UNTIL_MS = 918_259_200_000  # 1999-02-06T00:00:00Z: five days of the real month


def workload() -> list[tuple[str, dict[str, Any]]]:
    events = [(k, v) for k, v in load(DATASET).events if parse_ts(v["ts"]) < UNTIL_MS]
    end = Calls()
    end.add("end-of-workload", "call_started", UNTIL_MS + 86_400_000)
    return events + end.events


def processed(worker: Worker) -> float:
    return sum(
        v
        for (name, _), v in worker.metrics().items()
        if name in ("callcenter_events_total", "callcenter_events_rejected_total")
    )


def wait_processed(worker: Worker, target: float) -> None:
    wait_for(
        lambda: processed(worker) >= target,
        timeout=600,
        every=0.2,
        message=f"{target:.0f} processed",
    )


def outputs(prefix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    metrics = {
        k: {f: v for f, v in r.items() if f != "revision"}
        for k, r in latest_by_key(
            consume_all(prefix + "queue-metrics", idle=2.0, timeout=60)
        ).items()
    }
    outcomes = latest_by_key(consume_all(prefix + "call-outcomes", idle=2.0, timeout=60))
    return metrics, outcomes


def run_clean(
    tmp_path: Path, workers: list[Worker], events: list[tuple[str, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    prefix = unique_prefix("clean")
    worker = make_worker(tmp_path, prefix, name="clean")
    workers.append(worker.start())
    worker.wait_ready()
    send(prefix, events)
    wait_for(
        lambda: processed(worker) >= len(events) and worker.backlog() == 0,
        timeout=600,
        every=2,
        message="clean run drained, both stages",
    )
    previous: list[Any] = [None]

    def settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
        current = outputs(prefix)
        stable = current == previous[0] and current[0]
        previous[0] = current
        return current if stable else None

    result: tuple[dict[str, Any], dict[str, Any]] = wait_for(
        settled, timeout=300, every=5, message="clean outputs settle"
    )
    return result


def test_sigkill_mid_stream_and_restart_gives_the_figures_of_a_clean_run(
    tmp_path: Path, workers: list[Worker]
) -> None:
    events = workload()
    clean_metrics, clean_outcomes = run_clean(tmp_path, workers, events)
    assert len(clean_metrics) > 300

    prefix = unique_prefix("crash")
    worker = make_worker(tmp_path, prefix, name="crash")
    workers.append(worker.start())
    worker.wait_ready()
    send(prefix, events)
    for fraction in (0.3, 0.7):
        wait_processed(worker, fraction * len(events))
        worker.stop(signal.SIGKILL)
        worker = Worker(env=worker.env, log_path=worker.log_path)  # same DATA_DIR, same group
        workers.append(worker.start())
        worker.wait_ready()

    def differences() -> list[str]:
        assert worker.proc is not None
        if worker.proc.poll() is not None:
            return [f"the restarted worker exited ({worker.proc.returncode}):\n{worker.log()}"]
        metrics, outcomes = outputs(prefix)
        out = []
        for name, got, want in (
            ("queue-metrics", metrics, clean_metrics),
            ("call-outcomes", outcomes, clean_outcomes),
        ):
            for key in sorted(set(got) | set(want)):
                if got.get(key) != want.get(key):
                    out.append(f"{name} {key}: {got.get(key)!r}, clean run: {want.get(key)!r}")
        return out

    last: list[str] = []

    def identical() -> bool:
        last[:] = differences()
        return not last

    try:
        wait_for(
            identical, timeout=600, every=5, message="crash run reaches the clean run's outputs"
        )
    except AssertionError:
        shown = "\n".join(last[:10])
        raise AssertionError(
            f"{len(last)} differences from the clean run, e.g.:\n{shown}"
        ) from None
