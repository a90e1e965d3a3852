"""The local broker's SASL_SSL listener (SCRAM, TLS with the certificate scripts/kafka.sh made):
a worker and its sources through it publish the figures of the plain listener, and every
command given a wrong password, an unknown CA or TLS against the plain listener stops at once,
naming the setting to check and printing no password."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.domain.events import format_ts
from stream_app.kafka_clients import KafkaAccessError, check_access
from stream_app.settings import load_settings
from tests.integration.engine import latest_by_key, past_interval, wait_for
from tests.integration.test_asterisk import queue_log
from tests.support import (
    BOOTSTRAP,
    BROKER_CA,
    ROOT,
    SASL_BOOTSTRAP,
    STREAM_APP,
    Worker,
    consume_all,
    make_worker,
    produce,
    unique_prefix,
)
from tests.unit.test_anonymous_bank import row, write


class ScramUser:
    def __init__(self) -> None:
        self.name = f"t-{secrets.token_hex(4)}"
        self.password = secrets.token_hex(16)

    def env(self, mechanism: str = "SCRAM-SHA-512", **overrides: str) -> dict[str, str]:
        """The settings of a client of the SASL_SSL listener as this user."""
        env = {
            "KAFKA_BOOTSTRAP": SASL_BOOTSTRAP,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": self.name,
            "KAFKA_SASL_PASSWORD": self.password,
            "KAFKA_SSL_CAFILE": str(BROKER_CA),
        }
        env.update(overrides)
        return env


def add_scram_credentials(user: ScramUser) -> None:
    """Through the broker's admin API (Kafka's own ConfigCommand), one mechanism a call (the
    broker refuses two changes of one user in a request)."""
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        done = subprocess.run(
            [
                "java",
                f"-Dlog4j2.configurationFile={ROOT / 'kafka' / 'log4j2.yaml'}",
                "-cp",
                str(ROOT / "kafka" / ".cache" / "libs" / "*"),
                "kafka.admin.ConfigCommand",
                "--bootstrap-server",
                BOOTSTRAP,
                "--alter",
                "--entity-type",
                "users",
                "--entity-name",
                user.name,
                "--add-config",
                f"{mechanism}=[password={user.password}]",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def user() -> Iterator[ScramUser]:
    if not BROKER_CA.is_file():
        pytest.fail(f"no CA at {BROKER_CA}: start the broker with `make kafka-up` (KAFKA_RUN_DIR)")
    user = ScramUser()
    add_scram_credentials(user)

    def accepted() -> bool:  # the credentials reach the listener through the metadata log
        try:
            asyncio.run(check_access(load_settings(user.env())))
            return True
        except KafkaAccessError as exc:
            if "KAFKA_SASL_PASSWORD" not in str(exc):
                pytest.fail(f"the SASL_SSL listener at {SASL_BOOTSTRAP}: {exc}")
            return False

    wait_for(accepted, timeout=30, message=f"SCRAM user {user.name} accepted")
    yield user


def run(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STREAM_APP), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def figures(prefix: str) -> dict[str, dict[str, Any]]:
    """The latest record per key of queue-metrics, without its revision (how many times an
    interval was published depends on when the worker's ticks ran, not on the connection)."""
    latest = latest_by_key(consume_all(prefix + "queue-metrics", idle=1.0, timeout=30))
    return {
        key: {k: v for k, v in record.items() if k != "revision"} for key, record in latest.items()
    }


def test_worker_and_sources_through_sasl_ssl_publish_the_figures_of_the_plain_listener(
    tmp_path: Path, workers: list[Worker], user: ScramUser
) -> None:
    busy = time.time_ns() // 1_000_000 - 3 * 3_600_000  # the last 09:00 UTC 3 h ago or more
    start = busy - (busy - 9 * 3_600_000) % 86_400_000
    log = tmp_path / "queue_log"
    log.write_text(queue_log(start - 2 * 3_600_000))
    plain = make_worker(tmp_path, unique_prefix("plain"), "plain")
    secure = make_worker(tmp_path, unique_prefix("sasl"), "sasl", **user.env("SCRAM-SHA-512"))
    for worker in (plain, secure):
        workers.append(worker.start())
    for worker in (plain, secure):
        worker.wait_ready()
    outputs = []
    for worker, mechanism in ((plain, None), (secure, "SCRAM-SHA-256")):
        env = worker.env if mechanism is None else {**worker.env, **user.env(mechanism)}
        for args in (
            ("replay", "asterisk", str(log)),
            ("simulate", "--start", format_ts(start), "--duration", "2h", "--fast", "--seed", "5"),
        ):
            done = run(env, *args)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout + done.stderr)

    state: dict[str, Any] = {}

    def settled() -> tuple[dict[str, Any], dict[str, Any]] | None:
        state["backlogs"] = plain.backlog(), secure.backlog()
        if any(state["backlogs"]):
            return None
        got = figures(plain.env["TOPIC_PREFIX"]), figures(secure.env["TOPIC_PREFIX"])
        state["published"] = len(got[0]), len(got[1])
        return got if got[0] and set(got[0]) == set(got[1]) else None

    try:
        want, got = wait_for(settled, timeout=180, every=3, message="both workers published")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; backlogs, intervals published: {state}") from None
    assert len(want) > 20, sorted(want)
    assert got == want
    secure.stop()
    assert user.password not in secure.log_path.read_text(errors="replace")
    assert all(user.password not in out for out in outputs)


def test_the_wallboard_reads_the_live_topic_through_sasl_ssl(
    tmp_path: Path, workers: list[Worker], user: ScramUser
) -> None:
    board = make_worker(tmp_path, unique_prefix("board-sasl"), "board", **user.env())
    prefix = board.env["TOPIC_PREFIX"]
    assert run(board.env, "topics", "create").returncode == 0
    record = {"queue": "secure", "calls_waiting": 4, "as_of": format_ts(time.time_ns() // 10**6)}
    produce(prefix + "queue-live", [("secure", record)])  # through the plain listener
    board.proc = subprocess.Popen(
        [str(STREAM_APP), "wallboard"],
        env=board.env,
        stdout=board.log_path.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    workers.append(board)

    def shown() -> list[Any] | None:
        try:
            status, body = board.get("/api/queues")
        except OSError:
            return None
        queues: list[Any] = orjson.loads(body)["queues"] if status == 200 else []
        return queues or None

    assert wait_for(shown, message="the record on /api/queues") == [record]
    board.stop()
    assert user.password not in board.log_path.read_text(errors="replace")


def other_ca(tmp: Path) -> Path:
    """A CA that did not sign the broker's certificate."""
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=not the broker's CA",
            "-keyout", str(tmp / "other-ca.key"), "-out", str(tmp / "other-ca.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return tmp / "other-ca.pem"


COMMANDS = {
    "worker": lambda tmp: ["worker"],
    "topics create": lambda tmp: ["topics", "create"],
    "replay asterisk": lambda tmp: ["replay", "asterisk", str(tmp / "queue_log")],
    "replay anonymous-bank": lambda tmp: ["replay", "anonymous-bank", str(tmp / "calls.tsv")],
    "connect asterisk": lambda tmp: ["connect", "asterisk", str(tmp / "queue_log"), "--follow"],
    "simulate": lambda tmp: ["simulate", "--duration", "10m", "--fast"],
    "wallboard": lambda tmp: ["wallboard"],
}
FAULTS = {
    "wrong password": ("KAFKA_SASL_PASSWORD", "refused the SASL credentials"),
    "unknown CA": ("KAFKA_SSL_CAFILE", "not signed by"),
    "TLS against the plain listener": ("KAFKA_SECURITY_PROTOCOL", "no TLS answer"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_refused_connection_stops_every_command_naming_the_setting(
    tmp_path: Path, user: ScramUser, command: str, fault: str
) -> None:
    (tmp_path / "queue_log").write_text(queue_log(past_interval(hours_ago=4)))
    write(tmp_path, row())
    wrong = f"wrong-{secrets.token_hex(8)}"
    if fault == "wrong password":
        overrides = {"KAFKA_SASL_PASSWORD": wrong}
    elif fault == "unknown CA":
        overrides = {"KAFKA_SSL_CAFILE": str(other_ca(tmp_path))}
    else:
        overrides = {"KAFKA_BOOTSTRAP": BOOTSTRAP}
    env = make_worker(tmp_path, unique_prefix("refused")).env
    env.update(user.env(**overrides))
    done = run(env, *COMMANDS[command](tmp_path), timeout=60)
    output = done.stdout + done.stderr
    setting, says = FAULTS[fault]
    assert done.returncode != 0, output
    assert setting in done.stderr and says in done.stderr, output
    assert user.password not in output and wrong not in output, output
