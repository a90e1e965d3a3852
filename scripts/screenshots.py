"""`make screenshots`: docs/wallboard.png, the wallboard of `make run` with its simulator running.

It runs scripts/run.sh on free ports, with its own topic prefix and data directory (a real
`make run` can go on beside it), waits until the board shows the replayed hours, takes the
picture in Debian's chromium (Playwright drives it) and stops everything with Ctrl-C's signal.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "wallboard.png"
READY_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("screenshots: chromium is not installed (Debian package chromium: make tools)")
        return 1
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="screenshots-"))
    env = {
        **os.environ,
        "WEB_PORT": str(port),
        "PROMETHEUS_PORT": str(free_port()),
        "ALERTMANAGER_PORT": str(free_port()),
        "TOPIC_PREFIX": f"screenshots-{uuid.uuid4().hex[:8]}-",
        "DATA_DIR": str(data),
        "RUN_BACKFILL": "2h",
        "SIMULATE_ARGS": "--seed 7",
    }
    log = (data / "run.out").open("wb")
    run = subprocess.Popen(
        [str(ROOT / "scripts" / "run.sh")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            deadline = time.monotonic() + READY_S
            while True:
                if run.poll() is not None or time.monotonic() > deadline:
                    print((data / "run.out").read_text(errors="replace")[-3000:])
                    print("screenshots: make run did not come up with a full board")
                    return 1
                try:
                    page.goto(f"http://127.0.0.1:{port}/wallboard?window=1h", timeout=5000)
                    # the three queues of make run's centre, with figures, none of them stale
                    page.wait_for_function(
                        "() => document.querySelectorAll('tr[data-queue]').length >= 3"
                        " && [...document.querySelectorAll('td[data-figure=\"service_level\"]')]"
                        ".every(td => td.dataset.value !== '')"
                        " && document.getElementById('stale').hidden",
                        timeout=30_000,
                    )
                    break
                except Exception:
                    time.sleep(2)
            page.wait_for_timeout(3000)  # a few live updates, and the clock ticking
            OUT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(OUT))
            browser.close()
        print(f"screenshots: wrote {OUT.relative_to(ROOT)}")
        return 0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGINT)
            try:
                run.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(run.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
