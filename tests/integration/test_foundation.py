"""The foundation on the real broker: produce/consume, topic creation, endpoints, clean stop, restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from stream_app.catalog import load_catalog
from tests.support import (
    ROOT,
    STREAM_APP,
    Worker,
    consume_all,
    describe_topics,
    produce,
    started,
    unique_prefix,
)


def test_produce_and_consume_a_record() -> None:
    topic = unique_prefix("pc") + "roundtrip"
    produce(topic, [("call-1", {"hello": "kafka"})])
    records = consume_all(topic, expect=1)
    assert [(r.key, r.json()) for r in records] == [(b"call-1", {"hello": "kafka"})]


def test_worker_creates_topics_serves_endpoints_and_stops_on_sigterm(
    tmp_path: Path, workers: list[Worker]
) -> None:
    prefix = unique_prefix("found")
    worker = started(workers, tmp_path, prefix, TOPIC_PARTITIONS="4")

    catalog = load_catalog(default_partitions=4)
    described = describe_topics([prefix + name for name in catalog])
    assert set(described) == {prefix + name for name in catalog}
    for name, spec in catalog.items():
        got = described[prefix + name]
        want_partitions = 4 if isinstance(spec.partitions, str) else spec.partitions
        assert got["partitions"] == want_partitions, name
        for key, value in spec.config.items():
            assert got["config"][key] == value, (name, key)
    assert described[prefix + "queue-metrics"]["config"]["cleanup.policy"] == "compact"

    status, body = worker.get("/health")
    assert status == 200 and b'"status":"ok"' in body.replace(b" ", b"")
    status, body = worker.get("/metrics")
    assert status == 200
    text = body.decode()
    assert "callcenter_events_rejected_total" in text
    assert "faust_" in text  # Faust's own sensor, under its prefix, on the same registry

    took = worker.stop(signal.SIGTERM, timeout=30)
    assert worker.proc is not None and worker.proc.returncode == 0, worker.log()
    assert took < 15, f"SIGTERM took {took:.1f} s"

    # Topic creation is idempotent: a second start on the same prefix is fine.
    again = started(workers, tmp_path, prefix, name="w2", TOPIC_PARTITIONS="4")
    assert again.stop(signal.SIGINT, timeout=30) < 15


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEB_PORT", "not-a-port"),
        ("INTERVAL_MINUTES", "7"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("KAFKA_BOOTSTRAP", "nohost"),
    ],
)
def test_a_bad_setting_stops_the_worker_naming_it(tmp_path: Path, name: str, value: str) -> None:
    env = dict(
        os.environ, TOPIC_PREFIX=unique_prefix("bad"), DATA_DIR=str(tmp_path), **{name: value}
    )
    done = subprocess.run(
        [str(STREAM_APP), "worker"], env=env, capture_output=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 2
    assert name in done.stderr.decode()


def test_a_bad_sla_config_stops_the_worker_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "sla.yaml"
    config.write_text("queues:\n  sales:\n    service_level_seconds: -3\n")
    env = dict(
        os.environ,
        TOPIC_PREFIX=unique_prefix("bad"),
        DATA_DIR=str(tmp_path),
        SLA_CONFIG=str(config),
    )
    done = subprocess.run(
        [str(STREAM_APP), "worker"], env=env, capture_output=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 2
    assert "queues.sales.service_level_seconds" in done.stderr.decode()


def test_kafka_up_is_idempotent_and_data_survives_a_restart() -> None:
    if not (ROOT / "kafka" / ".run" / "broker.pid").exists():
        pytest.skip("the broker was not started by scripts/kafka.sh (an external cluster)")
    topic = unique_prefix("durable") + "survives"
    produce(topic, [("k", {"n": i}) for i in range(10)])
    script = str(ROOT / "scripts" / "kafka.sh")
    up = subprocess.run([script, "up"], capture_output=True, text=True, timeout=180)
    assert up.returncode == 0 and "already running" in up.stdout, up.stdout + up.stderr
    down = subprocess.run([script, "down"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    started = time.monotonic()
    up = subprocess.run([script, "up"], capture_output=True, text=True, timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    assert time.monotonic() - started < 120
    records = consume_all(topic, expect=10, timeout=60)
    assert [r.json()["n"] for r in records] == list(range(10))
