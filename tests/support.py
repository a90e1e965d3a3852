"""Helpers for integration tests: the real broker, and `stream-app worker` as a real subprocess."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from stream_app.kafka_clients import client_options
from stream_app.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
DATASET = ROOT / "data" / "anonymous-bank-1999-02.tsv.xz"  # the Technion month, data/README.md
BOOTSTRAP = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
# The local broker's SASL_SSL listener (scripts/kafka.sh) and the CA of its certificate.
SASL_BOOTSTRAP = os.environ.get("KAFKA_SASL_BOOTSTRAP", "127.0.0.1:9094")
BROKER_CA = Path(os.environ.get("KAFKA_RUN_DIR", ROOT / "kafka" / ".run")) / "tls" / "ca.pem"
STREAM_APP = ROOT / ".venv" / "bin" / "stream-app"


def kafka_options(bootstrap: str = BOOTSTRAP) -> dict[str, Any]:
    """The tests' own clients connect as the project's do (KAFKA_SECURITY_PROTOCOL… honoured)."""
    return client_options(load_settings({**os.environ, "KAFKA_BOOTSTRAP": bootstrap}))


def unique_prefix(tag: str) -> str:
    return f"t-{tag}-{uuid.uuid4().hex[:8]}-"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_available() -> bool:
    async def probe() -> bool:
        admin = AIOKafkaAdminClient(**kafka_options(), request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            await admin.close()

    return asyncio.run(probe())


@dataclass
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]  # the last value of each name
    partition: int
    offset: int
    header_list: list[tuple[str, bytes]] = field(default_factory=list)  # all, in order

    def json(self) -> Any:
        assert self.value is not None
        return orjson.loads(self.value)


Headers = list[tuple[str, bytes]]
Keyish = bytes | str | None
Valueish = bytes | str | dict[str, Any] | None


def produce(
    topic: str,
    records: Iterable[tuple[Keyish, Valueish] | tuple[Keyish, Valueish, Headers]],
    bootstrap: str = BOOTSTRAP,
) -> int:
    """Produce (key, value[, headers]) records; wait until the broker acknowledged every one."""

    async def run() -> int:
        producer = AIOKafkaProducer(**kafka_options(bootstrap), acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = []
            for key, value, *rest in records:
                k = key.encode() if isinstance(key, str) else key
                if isinstance(value, dict):
                    v: bytes | None = orjson.dumps(value)
                elif isinstance(value, str):
                    v = value.encode()
                else:
                    v = value
                headers = rest[0] if rest else None
                futures.append(await producer.send(topic, key=k, value=v, headers=headers))
            await asyncio.gather(*futures)
            return len(futures)
        finally:
            await producer.stop()

    return asyncio.run(run())


def consume_all(
    topic: str,
    *,
    expect: int | None = None,
    timeout: float = 30.0,
    idle: float = 2.0,
    bootstrap: str = BOOTSTRAP,
) -> list[Record]:
    """Read a topic from the beginning: until `expect` records arrived, or nothing new for `idle` s."""

    async def run() -> list[Record]:
        consumer = AIOKafkaConsumer(
            **kafka_options(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            deadline = time.monotonic() + 10
            while partitions is None and time.monotonic() < deadline:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                return []
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out: list[Record] = []
            end = time.monotonic() + timeout
            last_new = time.monotonic()
            while time.monotonic() < end:
                batch = await consumer.getmany(timeout_ms=250)
                for tp, msgs in batch.items():
                    for m in msgs:
                        out.append(
                            Record(
                                m.key,
                                m.value,
                                dict(m.headers),
                                tp.partition,
                                m.offset,
                                list(m.headers),
                            )
                        )
                        last_new = time.monotonic()
                if expect is not None and len(out) >= expect:
                    break
                if expect is None and time.monotonic() - last_new > idle:
                    break
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


def describe_topics(names: list[str]) -> dict[str, dict[str, Any]]:
    """Partition count and the non-default configs of each topic."""

    async def run() -> dict[str, dict[str, Any]]:
        from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

        admin = AIOKafkaAdminClient(**kafka_options())
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            present = [n for n in names if n in existing]
            out: dict[str, dict[str, Any]] = {}
            for d in await admin.describe_topics(present):
                out[d["topic"]] = {"partitions": len(d["partitions"]), "config": {}}
            resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in present]
            for response in await admin.describe_configs(resources):
                for resource in response.resources:
                    _err, _msg, _type, name, entries = resource
                    out[name]["config"] = {e[0]: e[1] for e in entries}
            return out
        finally:
            await admin.close()

    return asyncio.run(run())


class LagWatch:
    """Records of a topic that a consumer group has not committed yet, asked as often as
    wanted through one admin client and one consumer (new clients cost a connection each)."""

    def __init__(self, group: str, topic: str) -> None:
        self.group, self.topic = group, topic
        self.loop = asyncio.new_event_loop()
        self.admin, self.consumer = self.loop.run_until_complete(self._start())

    @staticmethod
    async def _start() -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        admin = AIOKafkaAdminClient(**kafka_options())  # made on the running loop
        consumer = AIOKafkaConsumer(**kafka_options())
        await admin.start()
        await consumer.start()
        return admin, consumer

    def lag(self) -> int:
        return self.loop.run_until_complete(self._lag())

    async def _lag(self) -> int:
        committed = await self.admin.list_consumer_group_offsets(self.group)
        partitions = self.consumer.partitions_for_topic(self.topic)
        if partitions is None:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = await self.consumer.end_offsets(tps)
        return sum(
            end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()
        )

    def close(self) -> None:
        async def stop() -> None:
            await self.consumer.stop()
            await self.admin.close()

        self.loop.run_until_complete(stop())
        self.loop.close()


def list_topics() -> list[str]:
    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(**kafka_options())
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(run())


def delete_topics(names: list[str], *, wait: bool = True) -> None:
    """Delete these topics; with `wait`, until the broker no longer lists them."""

    async def run() -> None:
        admin = AIOKafkaAdminClient(**kafka_options())
        await admin.start()
        try:
            await admin.delete_topics(names)
            deadline = time.monotonic() + 60
            while wait and set(names) & set(await admin.list_topics()):
                assert time.monotonic() < deadline, f"{names} still listed"
                await asyncio.sleep(0.5)
        finally:
            await admin.close()

    asyncio.run(run())


def drop_topics(marker: str) -> int:
    """Delete every topic whose name holds `marker` (a run's prefix); how many. A benchmark
    leaves the broker as it found it: each metadata answer lists every topic, and thousands
    of old runs' partitions slow every client's refresh."""
    names = [name for name in list_topics() if marker in name]
    if names:
        delete_topics(names, wait=False)
    return len(names)


def group_lag(group: str, topic: str) -> int:
    """Records of `topic` that consumer group `group` has not committed yet."""
    watch = LagWatch(group, topic)
    try:
        return watch.lag()
    finally:
        watch.close()


@dataclass
class Worker:
    """`stream-app worker` as a real subprocess with its own settings."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.env["WEB_PORT"])

    def start(self) -> Worker:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(STREAM_APP), "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        return self

    def run_command(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`stream-app ARGS` with this worker's settings (broker, topics); it must succeed."""
        done = subprocess.run(
            [str(STREAM_APP), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        return done

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout
            ) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 90.0, *, assigned: bool = True) -> None:
        """Until /health answers and (by default) the worker owns partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                status, body = self.get("/health", timeout=2)
                if status == 200 and (
                    not assigned or orjson.loads(body)["assigned_partitions"] > 0
                ):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"worker not ready within {timeout} s:\n{self.log()}")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = self.get("/metrics")
        assert status == 200, body
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def queue_figures(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The per-queue call figures it serves (its state, not its configuration)."""
        return {
            (name, labels): value
            for (name, labels), value in self.metrics().items()
            if name.startswith("callcenter_calls_") and any(k == "queue" for k, _ in labels)
        }

    def restarted(self, name: str) -> Worker:
        """The same worker (settings, DATA_DIR, ports) as a new process, not started yet."""
        return Worker(env=dict(self.env), log_path=self.log_path.with_name(f"{name}.log"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> float:
        """Send `sig` and wait for the exit; return how long it took."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"worker ignored signal {sig} for {timeout} s:\n{self.log()}"
                ) from None
        return time.monotonic() - started

    def backlog(self) -> int:
        """Input the worker has not committed yet: call-events and queue-updates."""
        group = self.env["TOPIC_PREFIX"] + self.env["APP_ID"]
        prefix = self.env["TOPIC_PREFIX"]
        return group_lag(group, prefix + "call-events") + group_lag(group, prefix + "queue-updates")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stacks(self, wait: float = 2.0) -> str:
        """Where every task of a live worker waits (`stream_app.diagnostics`, on SIGUSR2, in
        its log): why a worker that answers HTTP stopped processing."""
        if self.proc is None or self.proc.poll() is not None:
            return "(worker not running)"
        before = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc.send_signal(signal.SIGUSR2)
        time.sleep(wait)
        with self.log_path.open("rb") as log:
            log.seek(before)
            dump = log.read().decode(errors="replace")
        start = dump.find("--- main loop")
        return "--- worker tasks (SIGUSR2):\n" + (dump[start:] if start >= 0 else dump)[:30000]


class OwnBroker:
    """A broker of a test's own (scripts/kafka.sh with its own data directory and ports), for a
    test that kills it: the shared broker serves the other tests."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "KAFKA_RUN_DIR": str(run_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_SASL_PORT": str(free_port()),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
        }
        self.bootstrap = f"127.0.0.1:{self.port}"

    def up(self, timeout: float = 300.0) -> None:
        done = subprocess.run(
            ["bash", str(ROOT / "scripts" / "kafka.sh"), "up"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def kill(self) -> None:
        """SIGKILL, as a machine failure would stop it; its data stays for the next `up`."""
        pidfile = self.run_dir / "broker.pid"
        if not pidfile.exists():
            return
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def same(got: Any, want: Any) -> bool:
    """A published figure equals the expected one (a float to within 1e-9)."""
    if isinstance(want, float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == want)


def make_worker(tmp: Path, prefix: str, name: str = "w1", **overrides: str) -> Worker:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(
        KAFKA_BOOTSTRAP=BOOTSTRAP,
        APP_ID="ccm-test",
        TOPIC_PREFIX=prefix,
        WEB_PORT=str(free_port()),
        WEB_HOST="127.0.0.1",
        DATA_DIR=str(tmp / f"data-{name}"),
        LOG_LEVEL="info",
    )
    env.update(overrides)
    return Worker(env=env, log_path=tmp / f"{name}.log")


def started(
    workers: list[Worker], tmp: Path, prefix: str, name: str = "w1", **overrides: str
) -> Worker:
    """`make_worker`, started, kept in `workers` (stopped at the test's end) and ready."""
    worker = make_worker(tmp, prefix, name=name, **overrides)
    workers.append(worker.start())
    worker.wait_ready()
    return worker
