from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BOOTSTRAP, Worker, broker_available


@pytest.fixture(scope="session", autouse=True)
def kafka() -> None:
    if not broker_available():
        pytest.fail(f"no Kafka broker answers at {BOOTSTRAP}: start it with `make kafka-up`")


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    """Workers a test starts; every one still running is stopped (SIGKILL) at the end."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
