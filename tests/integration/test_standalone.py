"""A clone of the repository with nothing beside it passes the unit tests.

Why: the project must stand alone (no schema, data set or document read from beside the
repository). The clone is made from the committed HEAD into an empty folder, and its unit
tests run with this environment's Python (the installed dependencies) but the clone's code:
PYTHONPATH and the working directory are the clone, and the test first proves that imports
resolve there, not to this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


def test_a_clone_with_nothing_beside_it_passes_the_unit_tests(tmp_path: Path) -> None:
    alone = tmp_path / "empty"
    alone.mkdir()
    clone = alone / "callcenter-metrics"
    head = git("rev-parse", "HEAD")
    git("clone", "--quiet", "--no-checkout", str(ROOT), str(clone))
    git("checkout", "--quiet", "--detach", head, cwd=clone)
    assert sorted(p.name for p in alone.iterdir()) == ["callcenter-metrics"]
    assert (clone / "data" / "anonymous-bank-1999-02.tsv.xz").is_file()

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(clone)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import grafana, stream_app, tests; print(stream_app.__file__,"
            " grafana.__file__, tests.__file__)",
        ],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for path in where.stdout.split():
        assert Path(path).is_relative_to(clone), where.stdout

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in summary, summary
