"""Benchmark: this tree against another revision, drained side by side at the same time.

    .venv/bin/python bench/ab.py --base REV [--days N] [--runs N]

A change's cost in worker CPU is what a criterion such as "within 10 % of before" asks, and on a
shared machine two drains run one after the other differ by up to 30 % with the same code. Run
at the same time on the same broker, the two workers share whatever the machine does meanwhile,
so their ratio is steadier. Each run: `bench/drain.py` of each tree at once (each its own
TOPIC_PREFIX, the base's code on PYTHONPATH), then their worker CPU seconds and the ratio. REV
is checked out into a temporary git worktree (removed at the end); both workers run from this
tree's .venv, each with its own tree's code first on its path. The broker must be up
(`scripts/kafka.sh up`).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CPU = re.compile(r"worker CPU ([0-9.]+) s")


def drain(tree: Path, days: int) -> subprocess.Popen[str]:
    argv = [str(ROOT / ".venv/bin/python"), str(tree / "bench/drain.py"), "--days", str(days)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.Popen(
        argv, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def cpu_seconds(proc: subprocess.Popen[str]) -> float:
    out, _ = proc.communicate()
    found = CPU.search(out)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"drain failed ({proc.returncode}):\n{out}")
    return float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="the revision to compare with")
    parser.add_argument("--days", type=int, default=7, help="days of the month (default 7)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="ccm-ab-")) / "base"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base), args.base],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        (base / ".venv").symlink_to(ROOT / ".venv")  # its drain starts the worker from there
        ratios = []
        for run in range(1, args.runs + 1):
            here, there = drain(ROOT, args.days), drain(base, args.days)
            mine, theirs = cpu_seconds(here), cpu_seconds(there)
            ratios.append(mine / theirs)
            print(
                f"run {run}: this tree {mine:.1f} s, {args.base} {theirs:.1f} s of worker CPU: "
                f"{mine / theirs:.2f}x",
                flush=True,
            )
        print(f"median: {statistics.median(ratios):.2f}x the CPU of {args.base}")
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
