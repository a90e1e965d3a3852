"""The wallboard as a supervisor uses it: Debian's chromium (driven by Playwright) on the page a
real worker serves, fed by the real broker."""

from __future__ import annotations

import math
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from stream_app.domain.events import format_ts
from tests.common import tool
from tests.integration.engine import Calls, gauge, wait_for
from tests.integration.engine import send as send_events
from tests.support import STREAM_APP, Worker, free_port, produce, started, unique_prefix

S = 1000
MIN = 60 * S
BOARD_TIMEOUT_MS = 60_000  # a tile's value or colour, awaited on a shared, busy machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = tool("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1600, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def send(prefix: str, events: list[tuple[str, dict[str, Any]]]) -> None:
    """Produce from another thread: Playwright's sync API holds this thread's event loop."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(send_events, prefix, events).result()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def tile(page: Page, queue: str, figure: str) -> Any:
    return page.locator(f'tr[data-queue="{queue}"] td[data-figure="{figure}"]')


def tile_value(page: Page, queue: str, figure: str) -> float | None:
    text = tile(page, queue, figure).get_attribute("data-value")
    return float(text) if text else None


def open_board(page: Page, worker: Worker, query: str = "") -> None:
    page.goto(f"http://127.0.0.1:{worker.port}/wallboard{query}")


# Tiles and the /metrics gauge (window-labelled or not) that holds the same figure.
WINDOWED = {
    "service_level": "callcenter_service_level_ratio",
    "asa_seconds": "callcenter_asa_seconds",
    "abandon_rate": "callcenter_abandon_ratio",
}


def scenario(now: int) -> Calls:
    """Three queues, each with its own figures in the last minutes, one with a call waiting."""
    calls = Calls()
    calls.answered("a1", "alpha", now - 4 * MIN, 5 * S)
    calls.answered("a2", "alpha", now - 3 * MIN, 45 * S)
    calls.answered("b1", "beta", now - 5 * MIN, 2 * S)
    calls.add("b2", "call_started", now - 4 * MIN, queue="beta")
    calls.add("b2", "queue_entered", now - 4 * MIN, queue="beta")
    calls.add("b2", "call_abandoned", now - 4 * MIN + 30 * S)
    calls.answered("g1", "gamma", now - 2 * MIN, 12 * S)
    calls.add("g2", "call_started", now - 1 * MIN, queue="gamma")
    calls.add("g2", "queue_entered", now - 1 * MIN, queue="gamma")  # still waiting
    return calls


def test_the_board_shows_every_queue_with_the_figures_of_metrics(
    tmp_path: Path, workers: list[Worker], page: Page
) -> None:
    prefix = unique_prefix("board")
    worker = started(workers, tmp_path, prefix)
    send(prefix, scenario(now_ms()).events)
    queues = ["alpha", "beta", "gamma"]
    wait_for(
        lambda: (
            all(gauge(worker, "callcenter_calls_offered", queue=q, window="15m") for q in queues)
            and gauge(worker, "callcenter_calls_waiting", queue="gamma") == 1
        ),
        message="every queue's figures on /metrics",
    )
    open_board(page, worker)
    page.wait_for_selector('tr[data-queue="gamma"]', timeout=BOARD_TIMEOUT_MS)
    assert (
        page.locator("tr[data-queue]").evaluate_all("rows => rows.map(r => r.dataset.queue)")
        == queues
    )

    for window, button in (("15m", "15 min"), ("1h", "1 hour"), ("today", "Today")):
        page.get_by_role("button", name=button).click()
        assert f"window={window}" in page.url
        for queue in queues:
            for figure, metric in WINDOWED.items():
                want = gauge(worker, metric, queue=queue, window=window)
                assert want is not None, (metric, queue, window)
                got = tile_value(page, queue, figure)
                assert got is not None and math.isclose(got, want, rel_tol=1e-9), (
                    queue,
                    window,
                    figure,
                    got,
                    want,
                )
    for queue in queues:
        assert tile_value(page, queue, "calls_waiting") == gauge(
            worker, "callcenter_calls_waiting", queue=queue
        )
    # alpha: ASA (5 + 45) / 2 = 25 s against 30 s is near its target; SL 1/2 is past 80 %
    assert tile(page, "alpha", "asa_seconds").get_attribute("data-level") == "amber"
    assert tile(page, "alpha", "service_level").get_attribute("data-level") == "red"
    assert tile(page, "beta", "asa_seconds").get_attribute("data-level") == "green"
    # Agents known through the calls alone: "a" answered every call and is still talking
    # (available / busy / not ready); the agent list shows its agent-status record.
    wait_for(
        lambda: tile(page, "alpha", "agents").inner_text() == "0 / 1 / 0",
        message="alpha's agents tile",
    )
    page.wait_for_selector('#agents tbody tr[data-agent="a"]', timeout=BOARD_TIMEOUT_MS)
    assert not page.locator("#no-agents").is_visible()
    # Its only agent busy all the time: occupancy 100 % is past the queue's 90 % at most.
    occupancy = tile(page, "alpha", "occupancy")
    assert occupancy.get_attribute("data-level") == "red"
    assert "max 90%" in occupancy.inner_text()

    open_board(page, worker, "?queue=gamma,alpha&kiosk=1")
    page.wait_for_selector('tr[data-queue="alpha"]', timeout=BOARD_TIMEOUT_MS)
    shown = page.locator("tr[data-queue]").evaluate_all("rows => rows.map(r => r.dataset.queue)")
    assert shown == ["gamma", "alpha"]
    assert not page.locator("#windows").is_visible()


def test_an_event_changes_its_tile_and_a_breach_turns_it_red(
    tmp_path: Path, workers: list[Worker], page: Page
) -> None:
    prefix = unique_prefix("push")
    worker = started(workers, tmp_path, prefix)
    now = now_ms()
    calls = Calls()
    calls.answered("c1", "calm", now - 3 * MIN, 4 * S)
    calls.answered("o1", "other", now - 3 * MIN, 6 * S)
    send(prefix, calls.events)
    open_board(page, worker)
    asa = tile(page, "calm", "asa_seconds")
    asa.wait_for(timeout=BOARD_TIMEOUT_MS)
    page.wait_for_function(
        '() => document.querySelector(\'tr[data-queue="calm"] td[data-figure="asa_seconds"]\')'
        "?.dataset.level === 'green'",
        timeout=BOARD_TIMEOUT_MS,
    )
    other_before = tile(page, "other", "asa_seconds").get_attribute("data-value")

    # A call answered now after 3 minutes in the queue: calm's ASA becomes (4 + 180) / 2 s.
    late = Calls()
    late.answered("c2", "calm", now_ms() - 180 * S, 180 * S)
    sent_at = time.monotonic()
    send(prefix, late.events)
    page.wait_for_function(
        '() => document.querySelector(\'tr[data-queue="calm"] td[data-figure="asa_seconds"]\')'
        "?.dataset.value === '92'",
        timeout=BOARD_TIMEOUT_MS,
    )
    print(f"the tile changed {time.monotonic() - sent_at:.2f} s after the event was produced")
    assert asa.get_attribute("data-level") == "red"
    assert tile(page, "calm", "service_level").get_attribute("data-level") == "red"
    assert tile(page, "other", "asa_seconds").get_attribute("data-value") == other_before
    assert tile(page, "other", "asa_seconds").get_attribute("data-level") == "green"


def test_a_killed_worker_shows_stale_and_a_restart_clears_it(
    tmp_path: Path, workers: list[Worker], page: Page
) -> None:
    prefix = unique_prefix("stale")
    worker = started(workers, tmp_path, prefix)
    calls = Calls()
    calls.answered("s1", "steady", now_ms() - 2 * MIN, 3 * S)
    send(prefix, calls.events)
    open_board(page, worker)
    page.wait_for_selector('tr[data-queue="steady"]', timeout=BOARD_TIMEOUT_MS)
    page.locator("#stale").wait_for(state="hidden", timeout=BOARD_TIMEOUT_MS)

    worker.stop(signal.SIGKILL)
    page.locator("#stale").wait_for(state="visible", timeout=BOARD_TIMEOUT_MS)
    assert "stale-row" in (page.locator('tr[data-queue="steady"]').get_attribute("class") or "")

    again = worker.restarted("w1-again")
    workers.append(again.start())
    again.wait_ready()
    # The page reconnects by itself; the new owner publishes the queue again.
    page.locator("#stale").wait_for(state="hidden", timeout=BOARD_TIMEOUT_MS)
    assert page.locator('tr[data-queue="steady"]').get_attribute("class") == ""
    assert tile_value(page, "steady", "asa_seconds") == 3.0


def test_stream_app_wallboard_serves_the_same_board_without_being_a_worker(
    tmp_path: Path, workers: list[Worker], page: Page
) -> None:
    prefix = unique_prefix("apart")
    worker = started(workers, tmp_path, prefix)
    calls = Calls()
    # Answered by a1, whose status the worker publishes too (on the call since 113 s ago):
    # the same state and queue as the record sent below, whichever comes last.
    calls.answered("x1", "apart", now_ms() - 2 * MIN, 7 * S, agent_id="a1")
    send(prefix, calls.events)
    board = worker.restarted("board")
    board.env["WEB_PORT"] = str(free_port())
    board.proc = subprocess.Popen(
        [str(STREAM_APP), "wallboard"],
        env=board.env,
        stdout=board.log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )
    workers.append(board)

    def snapshot() -> dict[str, Any] | None:
        try:
            status, body = board.get("/api/queues")
        except OSError:
            return None
        data: dict[str, Any] = orjson.loads(body)
        return data if status == 200 and data["queues"] else None

    # Agent states, as agent activity will publish them: the board lists them.
    now = now_ms()
    agents: list[dict[str, Any]] = [
        {
            "agent_id": "a1",
            "state": "on_call",
            "since": format_ts(now - 65 * S),
            "reason": None,
            "queues": ["apart"],
            "queue": "apart",
            "as_of": format_ts(now),
        },
        {
            "agent_id": "a2",
            "state": "not_ready",
            "since": format_ts(now - 300 * S),
            "reason": "break",
            "queues": ["apart"],
            "queue": None,
            "as_of": format_ts(now),
        },
    ]
    with ThreadPoolExecutor(1) as thread:
        thread.submit(
            produce, prefix + "agent-status", [(a["agent_id"], a) for a in agents]
        ).result()
    data = wait_for(snapshot, message="the queue on the standalone board's /api/queues")
    assert [q["queue"] for q in data["queues"]] == ["apart"]
    assert data["queues"][0]["windows"]["15m"]["asa_seconds"] == 7.0
    open_board(page, board)
    page.wait_for_function(
        '() => document.querySelector(\'tr[data-queue="apart"] td[data-figure="asa_seconds"]\')'
        "?.dataset.value === '7'",
        timeout=BOARD_TIMEOUT_MS,
    )
    rows = page.locator("#agents tbody tr")
    rows.nth(1).wait_for(timeout=BOARD_TIMEOUT_MS)
    assert not page.locator("#no-agents").is_visible()
    listed = rows.evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert listed[0][:2] == ["a2", "not_ready (break)"] and listed[0][3] == "—"  # by state
    assert listed[1][:2] == ["a1", "on_call"] and listed[1][3] == "apart"
    minutes, seconds = listed[1][2].split(":")
    assert 65 <= int(minutes) * 60 + int(seconds) < 300  # since 65 s before the records were sent
    page.locator("#agents th[data-sort=agent_id]").click()
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.agent)") == ["a1", "a2"]
    page.locator("#agents th[data-sort=agent_id]").click()
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.agent)") == ["a2", "a1"]
    board.stop(timeout=20)  # an open page must not hold the shutdown (aiohttp would wait 60 s)
    assert board.proc is not None and board.proc.returncode == 0, board.log()
