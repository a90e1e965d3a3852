from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import BOOTSTRAP, Worker, broker_available


@pytest.fixture(scope="session", autouse=True)
def kafka() -> None:
    if not broker_available():
        pytest.fail(f"no Kafka broker answers at {BOOTSTRAP}: start it with `make kafka-up`")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, Any]:
    """Keep each phase's report on the test, so a fixture can tell that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Worker]]:
    """Workers a test starts; every one still running is stopped (SIGKILL) at the end. When
    the test failed, where each live worker's tasks stood is printed first (a worker that
    answers HTTP but stopped processing shows its hang there)."""
    started: list[Worker] = []
    yield started
    report = getattr(request.node, "report_call", None)
    for worker in started:
        if worker.proc is not None and worker.proc.poll() is None:
            if report is not None and report.failed:
                print(f"{worker.log_path}\n{worker.stacks()}")
            worker.proc.kill()
            worker.proc.wait()
