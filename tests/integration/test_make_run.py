"""`make run` (scripts/run.sh, which make runs after install, tools and kafka-up): it starts a
worker, the simulator feeding it live, Prometheus scraping the worker on its WEB_PORT and
Alertmanager; Ctrl-C (SIGINT to its process group, as a terminal sends it) stops all of them.

Free ports and a unique TOPIC_PREFIX, so it runs beside a real `make run`. `SIMULATE_ARGS=--seed 2`
makes the simulator's first call arrive ~3 s after its start (its calls are random otherwise:
at the ~4 calls a minute of `make run`'s center the first can take a minute).
Without `prometheus` / `prometheus-alertmanager` installed, the checks of those are skipped (the
script then runs without them); under CI=true they must be present.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import BOOTSTRAP, ROOT, free_port, unique_prefix

RUN_SH = ROOT / "scripts" / "run.sh"
STOP_SECONDS = 30.0


def installed(name: str, package: str) -> bool:
    """Whether the binary is there; under CI=true its absence fails the test."""
    if shutil.which(name) is not None:
        return True
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} is not installed (Debian package {package}); CI=true requires it")
    return False


def get(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


def events_total(port: int) -> float:
    """The sum of callcenter_events_total on the worker's /metrics (0 while it does not answer)."""
    found = get(f"http://127.0.0.1:{port}/metrics")
    if found is None or found[0] != 200:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(found[1].decode())
        for sample in family.samples
        if sample.name == "callcenter_events_total"
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def group_members(pgid: int) -> list[str]:
    """`pid command` of every process still in the group (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(f"{entry.name} {cmdline}")
    return out


class Run:
    """scripts/run.sh as a subprocess in its own process group."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "data"
        self.out = tmp / "run.out"
        self.web_port, self.prometheus_port, self.alertmanager_port = (
            free_port(),
            free_port(),
            free_port(),
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        self.env.update(
            KAFKA_BOOTSTRAP=BOOTSTRAP,
            TOPIC_PREFIX=unique_prefix("run"),
            WEB_PORT=str(self.web_port),
            PROMETHEUS_PORT=str(self.prometheus_port),
            ALERTMANAGER_PORT=str(self.alertmanager_port),
            DATA_DIR=str(self.data),
            SIMULATE_ARGS="--seed 2",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(RUN_SH)],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
                # A shell cannot trap a signal it was started with ignored (as SIGINT is under
                # a non-interactive parent's background job): start as a terminal would.
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def logs(self) -> str:
        parts = [f"--- scripts/run.sh output:\n{self.out.read_text(errors='replace')[-4000:]}"]
        for log in sorted((self.data / "logs").glob("*.log")):
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            parts.append(f"--- {log}, last lines:\n{tail}")
        return "\n".join(parts)

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"run.sh exited ({self.proc.returncode}) while waiting for {what}\n{self.logs()}"
                )
            last = check()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout} s: {what} (last: {last!r})\n{self.logs()}")

    def kill(self) -> None:
        if self.proc is not None and group_alive(self.pgid):
            os.killpg(self.pgid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    started = Run(tmp_path)
    try:
        yield started
    finally:
        started.kill()


def test_run_starts_the_system_and_ctrl_c_stops_all_of_it(run: Run) -> None:
    with_prometheus = installed("prometheus", "prometheus")
    with_alertmanager = installed("prometheus-alertmanager", "prometheus-alertmanager")
    started = time.monotonic()
    run.start()

    # The worker counts the simulator's events.
    run.wait(lambda: events_total(run.web_port) > 0, 120, "callcenter_events_total > 0")
    health = get(f"http://127.0.0.1:{run.web_port}/health")
    assert health is not None and health[0] == 200, health

    prometheus = f"http://127.0.0.1:{run.prometheus_port}"
    if with_prometheus:
        run.wait(lambda: (get(f"{prometheus}/-/ready") or (0,))[0] == 200, 60, "Prometheus ready")

        def worker_target_up() -> bool:
            found = get(f"{prometheus}/api/v1/targets")
            if found is None or found[0] != 200:
                return False
            targets = json.loads(found[1])["data"]["activeTargets"]
            return any(
                t["labels"].get("job") == "callcenter"
                and t["scrapeUrl"] == f"http://127.0.0.1:{run.web_port}/metrics"
                and t["health"] == "up"
                for t in targets
            )

        run.wait(worker_target_up, 60, f"Prometheus scraping the worker on {run.web_port}")
        found = get(f"{prometheus}/api/v1/rules")
        assert found is not None and found[0] == 200
        groups = {g["name"] for g in json.loads(found[1])["data"]["groups"]}
        assert {"callcenter-sla-alerts", "callcenter-queue-records"} <= groups, groups
        alertmanagers = get(f"{prometheus}/api/v1/alertmanagers")
        assert alertmanagers is not None and f":{run.alertmanager_port}/" in (
            alertmanagers[1].decode()
        ), alertmanagers
    if with_alertmanager:
        alertmanager = f"http://127.0.0.1:{run.alertmanager_port}"
        run.wait(lambda: (get(f"{alertmanager}/-/ready") or (0,))[0] == 200, 60, "AM ready")

    # It said where to look.
    run.wait(lambda: "Ctrl-C stops" in run.out.read_text(), 30, "the banner")
    banner = run.out.read_text()
    urls = [word for word in banner.split() if word.startswith("http://")]
    assert urls[0] == f"http://127.0.0.1:{run.web_port}/wallboard", banner  # the first to open
    assert f"http://127.0.0.1:{run.web_port}/metrics" in banner, banner
    for name in ("worker", "simulator"):
        assert str(run.data / "logs" / f"{name}.log") in banner, banner
    if with_prometheus:
        assert f"{prometheus}/alerts" in banner, banner

    # Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
    ready = time.monotonic() - started
    os.killpg(run.pgid, signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    assert run.proc is not None
    while time.monotonic() < deadline:
        run.proc.poll()  # reap run.sh: a zombie would still count as a member
        if not group_members(run.pgid):
            break
        time.sleep(0.2)
    left = group_members(run.pgid)
    assert not left, f"still running {STOP_SECONDS} s after SIGINT: {left}\n{run.logs()}"
    assert run.proc.wait(5) == 130, run.logs()
    out = run.out.read_text()
    assert "run: stopped" in out, run.logs()
    assert "The simulator's summary" in out, run.logs()
    for port in (run.web_port, run.prometheus_port, run.alertmanager_port):
        assert get(f"http://127.0.0.1:{port}/") is None, f"port {port} still answers"
    print(f"\nrun.sh: everything up in {ready:.0f} s, all stopped after SIGINT")
