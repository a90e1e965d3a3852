"""SLA alerting end to end on real components: the broker, a worker, the simulator breaching one
queue's SLA and recovering, Prometheus evaluating the project's real rules, Alertmanager routing
with the project's real routes to a webhook in this test.

What is scaled down, and how (nothing else differs from production):

- Prometheus scrapes and evaluates every second (a test-only copy of prometheus/prometheus.yml).
- The rule files are prometheus/rules/*.yml parsed and rewritten into a temp dir with every
  `for:` and `keep_firing_for:` divided by DURATION_SCALE (1m -> 6s, 2m -> 12s, 5m -> 30s);
  expressions and range windows are untouched.
- Alertmanager runs alertmanager/alertmanager.yml with every group_wait/group_interval at 1s and
  each receiver's webhook pointed at this test's HTTP server (path: the receiver's name).
- The SLA limits are tight (alerting_sla.yaml: a caller waiting over 10 s, more than 3 waiting)
  and the simulated center is busy and deterministic (alerting_simulator.yaml).

Time: the simulator runs in real time from now (`--speed 1`). It could not go faster: a source
never sends an event before the wall clock reaches its time, so a faster run must start in the
past, and then the feed is not live. Live is what the test needs: the worker's stream time then
follows the wall clock, and `callcenter_oldest_waiting_seconds` is stream time now minus the
oldest waiting call's queue entry, aged at each scrape, so a caller waits 10 s in 10 s whatever
the simulator's pace. The breach is therefore short (alerting_simulator.yaml: sales' ten agents
work the first minute, log out for the second, then log in again and answer everyone waiting),
and the scenario takes about 140 s: once sales' agents are out its next caller waits past 10 s,
the alert fires after its 6 s `for:`, the breach ends at 120 s, and the alert resolves 12 s
(`keep_firing_for`) later. With calls waiting and no agent of sales available or busy,
`CallcenterNoAgentsForWaitingCalls` fires for sales too (its agents were seen before the
breach, so the gauges say 0 rather than nothing), and resolves once they are back.

Once the alert has resolved, every query of every Grafana dashboard (grafana/dashboards/*.json)
runs against this Prometheus with the variables set to the breached queue, each evaluated over
the whole scenario as Grafana draws a panel: each must return a series with a value (the
dashboards are never seen with data otherwise: no Grafana runs here).

Without `prometheus` or `prometheus-alertmanager` installed the test is skipped (`make tools`
installs them where it may); under CI=true it fails instead.
"""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.common import WINDOWS
from grafana.queries import iter_targets, substitute, variable_query_expr
from tests.common import tool
from tests.support import (
    ROOT,
    STREAM_APP,
    Worker,
    free_port,
    make_worker,
    unique_prefix,
)

HERE = Path(__file__).resolve().parent
SIMULATOR_CONFIG = HERE / "alerting_simulator.yaml"
SLA_CONFIG = HERE / "alerting_sla.yaml"
PROMETHEUS_CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULES = sorted((ROOT / "prometheus" / "rules").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"

DURATION_SCALE = 10  # `for: 1m` becomes 6s
BREACHED = "sales"
OTHERS = ("support", "vip")
ALERT = "CallcenterOldestWaitingAboveLimit"
AGENTS_ALERT = "CallcenterNoAgentsForWaitingCalls"  # sales' agents are out during the breach
DASHBOARDS = ROOT / "grafana" / "dashboards"


# -- durations --------------------------------------------------------------------------------

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def duration_ms(text: str) -> int:
    """Milliseconds of a Prometheus duration such as `5m`, `1h30m` or `90s`."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNITS_MS[u] for n, u in parts)


def scaled(text: str) -> str:
    """`text` divided by DURATION_SCALE, in whole seconds (at least 1s)."""
    return f"{max(1, round(duration_ms(text) / DURATION_SCALE / 1000))}s"


def test_scaled_durations() -> None:
    assert [scaled(d) for d in ("1m", "2m", "5m", "10m", "1h30m", "5s")] == [
        "6s",
        "12s",
        "30s",
        "60s",
        "540s",
        "1s",
    ]


def write_rules(target: Path) -> list[tuple[str, str, str]]:
    """The project's rule files with shortened `for:` / `keep_firing_for:`; returns the changes."""
    target.mkdir(parents=True, exist_ok=True)
    changes: list[tuple[str, str, str]] = []
    for path in RULES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in data["groups"]:
            for rule in group["rules"]:
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        new = scaled(rule[key])
                        changes.append((rule.get("alert", rule.get("record", "?")), key, new))
                        rule[key] = new
        (target / path.name).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return changes


def write_prometheus_config(path: Path, rules: Path, worker_port: int, am_port: int) -> None:
    """prometheus/prometheus.yml with 1 s intervals, the rewritten rules and the test's ports."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(rules / "*.yml")]
    config["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}
    ]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "callcenter"]
    assert len(jobs) == 1, "prometheus.yml must scrape the workers as job `callcenter`"
    jobs[0]["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def write_alertmanager_config(path: Path, webhook_port: int) -> None:
    """alertmanager/alertmanager.yml: the same routes, groups and inhibitions, with 1 s waits and
    every webhook receiver posting to this test (at /<receiver name>)."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(config["route"])
    hooked = 0
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"http://127.0.0.1:{webhook_port}/{receiver['name']}"
            hooked += 1
    assert hooked, "alertmanager.yml has no webhook receiver to point at the test"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


# -- processes and HTTP -----------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    log: Path
    proc: subprocess.Popen[bytes]

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}), last lines:\n" + "\n".join(
            text.splitlines()[-lines:]
        )


@dataclass
class Webhook:
    """Alertmanager's notifications, as received: (receiver path, payload)."""

    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.received)

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver, alert) for every alert of every notification."""
        return [(path, alert) for path, body in self.snapshot() for alert in body["alerts"]]


def serve_webhook(port: int) -> tuple[ThreadingHTTPServer, Webhook]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hook.lock:
                hook.received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hook


def get_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return json.loads(resp.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class Scene:
    tmp: Path
    worker: Worker
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.tmp / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        proc = Proc(name, log, popen)
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        worker = f"--- worker ({self.worker.log_path}), last lines:\n" + "\n".join(
            self.worker.log().splitlines()[-25:]
        )
        return "\n".join([worker, *(p.tail() for p in self.procs)])

    def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll `check` every 0.5 s until it returns something truthy; fail with the logs."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.proc.poll() is not None:
                    raise AssertionError(
                        f"{proc.name} exited ({proc.proc.returncode}) while waiting for {what}\n"
                        + self.logs()
                    )
            last = check()
            if last:
                return last
            time.sleep(0.5)
        raise AssertionError(
            f"timed out after {timeout} s: {what} (last: {last!r})\n{self.worker.stacks()}\n"
            + self.logs()
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.proc.poll() is None:
                proc.proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.proc.kill()
                proc.proc.wait()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    worker = make_worker(tmp_path, unique_prefix("alerting"), SLA_CONFIG=str(SLA_CONFIG))
    scene = Scene(tmp_path, worker)
    try:
        yield scene
    finally:
        scene.stop()
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()


# -- the dashboards' queries ------------------------------------------------------------------

# Queries that may return nothing in this scenario, and why (dashboard, panel title, refId).
# Empty: every query of every dashboard has data here.
EXPECTED_EMPTY: dict[tuple[str, str, str], str] = {}

# Tiles coloured by a pair of queries (`ok`, `breach`) of which one returns the figure: the
# scenario shows both colours on these (the breach, and before and after it); on the other
# pairs one colour is enough (e.g. sales' service level today never recovers its target).
BOTH_COLOURS = {
    ("wallboard", "Calls waiting (all queues)"),
    ("wallboard", "Oldest waiting call"),
    ("wallboard", "Calls waiting"),
    ("wallboard", "Oldest waiting"),
}
STEP_S = 2


def has_value(found: Any) -> bool:
    """A query_range answer holding at least one series with a finite value."""
    if not found or found.get("status") != "success":
        return False
    return any(
        math.isfinite(float(value))
        for series in found["data"]["result"]
        for _, value in series["values"]
    )


def dashboard_gaps(prom_url: str, start: float, end: float) -> tuple[list[str], int]:
    """Every dashboard query, run as Grafana would with the variables set to the breached queue
    (each value of `$window`) and evaluated over [start, end]: the ones without data, and how
    many queries ran.

    Grafana's built-ins get what it would compute for this range at this scrape interval:
    `$__interval` the step, `$__rate_interval` a few scrapes more, `$__range` the range.
    An instant query (a tile) is evaluated at every step too: it had data at some moment.
    """
    values = {
        "queue": BREACHED,
        "job": "callcenter",
        "__interval": f"{STEP_S}s",
        "__rate_interval": "15s",
        "__range": f"{math.ceil(end - start)}s",
    }
    gaps: list[str] = []
    ran = 0

    def answers(expr: str) -> bool:
        nonlocal ran
        ran += 1
        params = {"query": expr, "start": start, "end": end, "step": STEP_S}
        return has_value(
            get_json(f"{prom_url}/api/v1/query_range?{urllib.parse.urlencode(params)}")
        )

    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        name = path.stem
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                expr = variable_query_expr(str(variable["query"]))
                if not answers(expr):
                    gaps.append(f"{name}: variable ${variable['name']}: {expr}")
        windows = [{**values, "window": window} for window in WINDOWS]
        # (panel title, window) -> refId -> had data, for the colour pairs.
        pairs: dict[tuple[str, str], dict[str, bool]] = {}
        for panel, target in iter_targets(board):
            title, ref = str(panel["title"]), str(target["refId"])
            if (name, title, ref) in EXPECTED_EMPTY:
                continue
            for variant in windows if "$window" in target["expr"] else [values]:
                window = variant.get("window", "-")
                outcome = answers(substitute(target["expr"], variant))
                if ref in ("ok", "breach"):
                    pairs.setdefault((title, window), {})[ref] = outcome
                elif not outcome:
                    gaps.append(f"{name}: {title} [{window}] {ref}: {target['expr']}")
        for (title, window), shown in pairs.items():
            colours = sorted(ref for ref, outcome in shown.items() if outcome)
            if len(colours) < (2 if (name, title) in BOTH_COLOURS else 1):
                gaps.append(f"{name}: {title} [{window}]: colours shown: {colours}")
    return gaps, ran


# -- the test ---------------------------------------------------------------------------------


def labels(alert: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = alert["labels"]
    return found


def test_a_breached_queue_alerts_for_that_queue_only_and_resolves(scene: Scene) -> None:
    prometheus = tool("prometheus")
    alertmanager = tool("prometheus-alertmanager")
    tmp = scene.tmp
    started = time.monotonic()

    # The worker first: Prometheus' first scrape then finds it up.
    scene.worker.start()
    scene.worker.wait_ready()

    webhook_port, am_port, prom_port = free_port(), free_port(), free_port()
    server, hook = serve_webhook(webhook_port)
    try:
        changes = write_rules(tmp / "rules")
        assert ("CallcenterOldestWaitingAboveLimit", "for", "6s") in changes
        write_prometheus_config(tmp / "prometheus.yml", tmp / "rules", scene.worker.port, am_port)
        write_alertmanager_config(tmp / "alertmanager.yml", webhook_port)
        am_url = f"http://127.0.0.1:{am_port}"
        prom_url = f"http://127.0.0.1:{prom_port}"
        scene.start(
            "alertmanager",
            [
                alertmanager,
                f"--config.file={tmp / 'alertmanager.yml'}",
                f"--storage.path={tmp / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
        )
        scene.start(
            "prometheus",
            [
                prometheus,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
        )
        scene.wait(lambda: answers(f"{am_url}/-/ready"), 30, "Alertmanager ready")
        scene.wait(lambda: answers(f"{prom_url}/-/ready"), 30, "Prometheus ready")
        prom_started = time.time()

        def worker_up() -> bool:
            found = get_json(f"{prom_url}/api/v1/query?query=up%7Bjob%3D%22callcenter%22%7D")
            results = found["data"]["result"] if found else []
            return any(r["value"][1] == "1" for r in results)

        scene.wait(worker_up, 30, "Prometheus scraping the worker (up == 1)")

        sim_env = dict(scene.worker.env, SLA_CONFIG=str(SLA_CONFIG))
        scene.start(
            "simulator",
            [
                str(STREAM_APP),
                "simulate",
                "--config",
                str(SIMULATOR_CONFIG),
                "--speed=1",
                "--duration=4m",
                "--seed=7",
                f"--summary-json={tmp / 'simulator-summary.json'}",
            ],
            env=sim_env,
        )
        breach_started = time.monotonic()

        # Every alert seen anywhere, to check that no other queue ever alerted.
        seen: dict[tuple[tuple[str, str], ...], str] = {}

        def am_alerts() -> list[dict[str, Any]]:
            found = get_json(f"{am_url}/api/v2/alerts")
            alerts: list[dict[str, Any]] = found if isinstance(found, list) else []
            for alert in alerts:
                seen[tuple(sorted(labels(alert).items()))] = "alertmanager"
            for path, alert in hook.alerts():
                seen[tuple(sorted(labels(alert).items()))] = f"webhook {path}"
            return alerts

        def is_breach_alert(alert: dict[str, Any], name: str = ALERT) -> bool:
            found = labels(alert)
            return found.get("alertname") == name and found.get("queue") == BREACHED

        def fired(name: str = ALERT) -> bool:
            in_am = any(is_breach_alert(a, name) for a in am_alerts())
            notified = any(
                is_breach_alert(a, name) and a["status"] == "firing" for _, a in hook.alerts()
            )
            return in_am and notified

        scene.wait(fired, 150, f"{ALERT} for {BREACHED} in Alertmanager and notified")
        fired_after = time.monotonic() - breach_started
        # No agent logged in on sales while its callers wait: the critical agents alert too.
        scene.wait(lambda: fired(AGENTS_ALERT), 30, f"{AGENTS_ALERT} for {BREACHED} notified")

        def resolved(name: str = ALERT) -> bool:
            gone = not any(is_breach_alert(a, name) for a in am_alerts())
            notified = any(
                is_breach_alert(a, name) and a["status"] == "resolved" for _, a in hook.alerts()
            )
            return gone and notified

        scene.wait(resolved, 100, f"{ALERT} for {BREACHED} resolved in Alertmanager and notified")
        resolved_after = time.monotonic() - breach_started
        assert resolved_after > 120, f"resolved at {resolved_after:.0f} s, before the breach ended"
        scene.wait(lambda: resolved(AGENTS_ALERT), 30, f"{AGENTS_ALERT} for {BREACHED} resolved")

        # The other queues were live all along (so "no alert for them" means something):
        # Prometheus' recording rules hold answered calls for each of them.
        query = "queue_window:callcenter_calls_answered:max%7Bwindow%3D%2215m%22%7D"
        found = get_json(f"{prom_url}/api/v1/query?query={query}")
        answered = {
            r["metric"]["queue"]: float(r["value"][1])
            for r in (found or {"data": {}})["data"].get("result", [])
        }
        assert all(answered.get(q, 0) > 0 for q in (BREACHED, *OTHERS)), (
            f"answered calls per queue: {answered}\n{scene.logs()}"
        )
        am_alerts()
        strays = {k: v for k, v in seen.items() if dict(k).get("queue", BREACHED) != BREACHED}
        assert not strays, f"alerts for queues other than {BREACHED}: {strays}"
        assert any(dict(k).get("alertname") == ALERT for k in seen)

        checking = time.monotonic()
        gaps, ran = dashboard_gaps(prom_url, prom_started, time.time())
        checked_in = time.monotonic() - checking
        assert not gaps, "dashboard queries without data:\n" + "\n".join(gaps)
        print(
            f"\n{ALERT} for {BREACHED}: fired {fired_after:.0f} s after the simulator started, "
            f"resolved at {resolved_after:.0f} s; {ran} dashboard queries with data (checked in {checked_in:.1f} s); whole test {time.monotonic() - started:.0f} s; "
            f"alerts seen: {sorted({dict(k)['alertname'] + '/' + dict(k).get('queue', '-') for k in seen})}"
        )
    finally:
        server.shutdown()
        server.server_close()
