"""A worker killed with SIGKILL mid-stream and restarted ends with exactly the figures of a clean run."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.domain.agent_activity import AgentActivity, agent_calls, queue_state_time
from stream_app.domain.calls import CallState
from stream_app.domain.events import parse_event, parse_ts
from stream_app.sources.anonymous_bank import load
from tests.integration.engine import Calls, latest_by_key, send, wait_for
from tests.integration.test_workers import exported
from tests.support import (
    BOOTSTRAP,
    DATASET,
    OwnBroker,
    Worker,
    consume_all,
    make_worker,
    started,
    unique_prefix,
)

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


Outputs = tuple[dict[str, Any], dict[str, Any]]


def outputs(prefix: str, bootstrap: str = BOOTSTRAP) -> Outputs:
    metrics = {
        k: {f: v for f, v in r.items() if f != "revision"}
        for k, r in latest_by_key(
            consume_all(prefix + "queue-metrics", idle=2.0, timeout=60, bootstrap=bootstrap)
        ).items()
    }
    outcomes = latest_by_key(
        consume_all(prefix + "call-outcomes", idle=2.0, timeout=60, bootstrap=bootstrap)
    )
    return metrics, outcomes


def run_clean(tmp_path: Path, events: list[tuple[str, dict[str, Any]]]) -> Outputs:
    prefix = unique_prefix("clean")
    worker = make_worker(tmp_path, prefix, name="clean").start()
    try:
        worker.wait_ready()
        send(prefix, events)
        wait_for(
            lambda: processed(worker) >= len(events) and worker.backlog() == 0,
            timeout=600,
            every=2,
            message="clean run drained, both stages",
        )
        return settled_outputs(prefix)
    finally:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.stop(signal.SIGKILL)


def settled_outputs(prefix: str, bootstrap: str = BOOTSTRAP) -> Outputs:
    previous: list[Any] = [None]

    def settled() -> Outputs | None:
        current = outputs(prefix, bootstrap=bootstrap)
        stable = current == previous[0] and current[0]
        previous[0] = current
        return current if stable else None

    result: Outputs = wait_for(settled, timeout=300, every=5, message="clean outputs settle")
    return result


@pytest.fixture(scope="module")
def clean(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[tuple[str, dict[str, Any]]], Outputs]:
    """The workload and the outputs of one worker that took it all without a fault."""
    events = workload()
    result = run_clean(tmp_path_factory.mktemp("clean"), events)
    assert len(result[0]) > 300
    return events, result


def agents_derived_whole(events: list[tuple[str, dict[str, Any]]]) -> list[AgentActivity]:
    """Every agent's activity from every call of the workload at once, in the domain core: no
    stream, no hop, no checkpoint, no retention (the month names agents only through calls)."""
    calls: dict[str, CallState] = {}
    for _, value in events:
        event = parse_event(orjson.dumps(value), now_ms=UNTIL_MS * 2, max_bytes=1 << 20)
        calls.setdefault(event.call_id, CallState.new(event.call_id)).apply(event)
    agents: dict[str, AgentActivity] = {}
    for call_id, call in calls.items():
        for agent_id, meaning in agent_calls(call).items():
            agents.setdefault(agent_id, AgentActivity(agent_id)).set_call(call_id, meaning)
    return list(agents.values())


def test_a_clean_runs_agent_figures_are_those_of_the_agents_derived_whole(
    clean: tuple[list[tuple[str, dict[str, Any]]], Outputs],
) -> None:
    """Five days drained at full speed: calls partitions days apart, agents' facts crossing two
    hops, timelines cut by the retention while intervals still close. Each interval's
    `occupancy` and `agents_staffed_avg` are what the agents' whole activity gives (the crash
    runs are compared with this run, so it must be right itself)."""
    events, (metrics, _) = clean
    agents = agents_derived_whole(events)
    wrong = []
    for key, record in sorted(metrics.items()):
        queue = str(record["queue"])
        start, end = parse_ts(str(record["interval_start"])), parse_ts(str(record["interval_end"]))
        time = queue_state_time(agents, queue, start, end, end)
        want = (time.occupancy, time.staffed_ms / (end - start) if time.staffed_ms else None)
        got = (record["occupancy"], record["agents_staffed_avg"])
        if any(
            (a is None) != (b is None) or (b is not None and a != pytest.approx(b))
            for a, b in zip(got, want, strict=True)
        ):
            wrong.append(f"{key}: {record['occupancy']}, {record['agents_staffed_avg']}; {want}")
    assert any(record["agents_staffed_avg"] for record in metrics.values())
    assert not wrong, f"{len(wrong)} of {len(metrics)} intervals, e.g. {wrong[:5]}"


def assert_reaches(
    clean_outputs: Outputs, prefix: str, live: list[Worker], bootstrap: str = BOOTSTRAP
) -> None:
    """The run under test ends with exactly the clean run's records, key by key."""
    clean_metrics, clean_outcomes = clean_outputs

    def differences() -> list[str]:
        for worker in live:
            assert worker.proc is not None
            if worker.proc.poll() is not None:
                return [f"a worker exited ({worker.proc.returncode}):\n{worker.log()}"]
        metrics, outcomes = outputs(prefix, bootstrap=bootstrap)
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
        wait_for(identical, timeout=600, every=5, message="the run reaches the clean run's outputs")
    except AssertionError:
        shown = "\n".join(last[:10])
        raise AssertionError(
            f"{len(last)} differences from the clean run, e.g.:\n{shown}"
        ) from None


def test_sigkill_mid_stream_and_restart_gives_the_figures_of_a_clean_run(
    tmp_path: Path, workers: list[Worker], clean: tuple[list[tuple[str, dict[str, Any]]], Outputs]
) -> None:
    events, clean_outputs = clean
    prefix = unique_prefix("crash")
    worker = started(workers, tmp_path, prefix, name="crash")
    send(prefix, events)
    for fraction in (0.3, 0.7):
        wait_processed(worker, fraction * len(events))
        worker.stop(signal.SIGKILL)
        worker = Worker(env=worker.env, log_path=worker.log_path)  # same DATA_DIR, same group
        workers.append(worker.start())
        worker.wait_ready()
    assert_reaches(clean_outputs, prefix, [worker])


def test_a_worker_joining_mid_stream_then_the_first_killed_gives_the_figures_of_a_clean_run(
    tmp_path: Path, workers: list[Worker], clean: tuple[list[tuple[str, dict[str, Any]]], Outputs]
) -> None:
    """A second worker takes half the partitions in the middle of the month; then the first is
    killed and the second takes them all. While both run, no queue is exported by both."""
    events, clean_outputs = clean
    prefix = unique_prefix("join")
    first = started(workers, tmp_path, prefix, name="first")
    send(prefix, events)
    wait_processed(first, 0.3 * len(events))
    second = started(workers, tmp_path, prefix, name="second")  # given partitions: a rebalance

    def both_export() -> tuple[set[str], set[str]] | None:
        a, b = exported(first), exported(second)
        return (a, b) if a and b else None

    a, b = wait_for(both_export, timeout=120, message="both workers export queues")
    assert not a & b, f"exported by both workers: {sorted(a & b)}"
    wait_for(
        lambda: processed(first) + processed(second) >= 0.6 * len(events),
        timeout=600,
        every=0.5,
        message="60 % processed by the two",
    )
    first.stop(signal.SIGKILL)
    assert_reaches(clean_outputs, prefix, [second])
    assert exported(second)  # it took the dead worker's queues as well


def test_two_workers_joining_back_to_back_then_the_first_killed_give_the_figures_of_a_clean_run(
    tmp_path: Path, workers: list[Worker], clean: tuple[list[tuple[str, dict[str, Any]]], Outputs]
) -> None:
    """Scaling out by two in the middle of the month: rebalances follow each other while
    partitions are still being recovered, and move back and forth between workers. Then the
    first worker is killed. No worker exits on its own, and no queue is exported by two."""
    events, clean_outputs = clean
    prefix = unique_prefix("join2")
    first = started(workers, tmp_path, prefix, name="first")
    send(prefix, events)
    wait_processed(first, 0.3 * len(events))
    second = started(workers, tmp_path, prefix, name="second")
    third = started(workers, tmp_path, prefix, name="third")
    trio = [first, second, third]

    def progress() -> float:
        for worker in trio:
            assert worker.proc is not None
            assert worker.proc.poll() is None, f"a worker exited:\n{worker.log()[-3000:]}"
        exports = [exported(worker) for worker in trio]
        for n, a in enumerate(exports):
            for b in exports[n + 1 :]:
                assert not a & b, f"exported by two workers: {sorted(a & b)}"
        return sum(processed(worker) for worker in trio)

    wait_for(
        lambda: progress() >= 0.6 * len(events),
        timeout=600,
        every=0.5,
        message="60 % processed by the three",
    )
    first.stop(signal.SIGKILL)
    assert_reaches(clean_outputs, prefix, [second, third])


def test_workers_killed_while_others_recover_give_the_figures_of_a_clean_run(
    tmp_path: Path, workers: list[Worker], clean: tuple[list[tuple[str, dict[str, Any]]], Outputs]
) -> None:
    """Failover during failover: a worker joins, and seconds later, while it is still
    restoring the partitions it was given, the first is killed; a third joins and the second
    is killed in its turn while the third restores. The two left end with the clean run's
    records."""
    events, clean_outputs = clean
    prefix = unique_prefix("storm")
    first = started(workers, tmp_path, prefix, name="first")
    send(prefix, events)
    wait_processed(first, 0.25 * len(events))

    def joining(name: str) -> Worker:
        """Started, not waited for: the group rebalances and it restores its partitions."""
        worker = make_worker(tmp_path, prefix, name=name).start()
        workers.append(worker)
        time.sleep(4)
        return worker

    second = joining("second")
    first.stop(signal.SIGKILL)
    third = joining("third")
    second.stop(signal.SIGKILL)
    fourth = joining("fourth")
    third.wait_ready()
    fourth.wait_ready()
    assert_reaches(clean_outputs, prefix, [third, fourth])


def test_the_broker_killed_mid_stream_and_restarted_gives_the_figures_of_a_clean_run(
    tmp_path: Path, workers: list[Worker], clean: tuple[list[tuple[str, dict[str, Any]]], Outputs]
) -> None:
    """A broker of the test's own (its data and ports; the shared one serves other tests) is
    killed with SIGKILL in the middle of the month, then started again on the same data."""
    events, clean_outputs = clean
    broker = OwnBroker(tmp_path / "kafka")
    broker.up()
    try:
        prefix = unique_prefix("broker")
        worker = started(workers, tmp_path, prefix, name="w", KAFKA_BOOTSTRAP=broker.bootstrap)
        send(prefix, events, bootstrap=broker.bootstrap)
        wait_processed(worker, 0.4 * len(events))
        broker.kill()
        time.sleep(5)
        broker.up()
        assert_reaches(clean_outputs, prefix, [worker], bootstrap=broker.bootstrap)
    finally:
        broker.kill()
