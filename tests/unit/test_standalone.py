"""The repository stands alone: no committed file reads or links anything beside it.

Why: a clone with nothing next to it must install, test and run. tests/integration/
test_standalone.py proves it by running the unit tests in such a clone; this catches the
mistake at once, file by file. CI's own script (.ci/) is the exception: it runs on a machine
that may lay other material beside the clone.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SIBLING = "shared"
# The sibling folder named in any text as a relative path, or in Python built from `.parent`.
OUTSIDE = re.compile(r"\.\./" + SIBLING + r"\b|\.parent\s*/\s*['\"]" + SIBLING + r"['\"]")


def committed_files() -> list[str]:
    done = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    )
    return [name for name in done.stdout.decode().split("\0") if name]


def test_no_committed_file_reads_or_links_outside_the_repository() -> None:
    files = committed_files()
    assert "data/anonymous-bank-1999-02.tsv.xz" in files, "not the repository's file list"
    offenders = []
    for name in files:
        if name.startswith(".ci/"):
            continue
        raw = (ROOT / name).read_bytes()
        if b"\0" in raw:
            continue  # binary (the compressed month)
        text = raw.decode("utf-8", errors="replace")
        offenders += [
            f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()}"
            for match in OUTSIDE.finditer(text)
        ]
    assert offenders == []


def test_the_pattern_finds_both_forms() -> None:
    assert OUTSIDE.search("see [the contract](../" + SIBLING + "/design/contract.md)")
    assert OUTSIDE.search("DATA = ROOT.parent / '" + SIBLING + "' / 'datasets'")
    assert not OUTSIDE.search("the checks shared with the tests; ../" + SIBLING + "foo")


def test_markdown_links_point_at_files_that_exist() -> None:
    """Relative links in the README and docs/ resolve inside the repository."""
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    broken = []
    for name in committed_files():
        if not name.endswith(".md"):
            continue
        path = ROOT / name
        for target in link.findall(path.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{name}: {target}")
    assert broken == []
