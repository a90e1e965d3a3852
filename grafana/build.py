"""Write the dashboards' JSON (grafana/dashboards/*.json) from their builders.

    python -m grafana.build            # or: python grafana/build.py
    python -m grafana.build --check    # exit 1, naming the files, when the committed JSON is stale

Output is stable (sorted keys, fixed panel ids): regenerating unchanged builders is diff-free.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

if not __package__:  # run as a script: import the package from the repository root
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from grafana import operations, supervisor, wallboard

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
BUILDERS: dict[str, Callable[[], model.Dashboard]] = {
    "wallboard": wallboard.build,
    "supervisor": supervisor.build,
    "operations": operations.build,
}


def to_json(board: model.Dashboard) -> str:
    return json.dumps(board, cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """File name → JSON text, for every dashboard."""
    return {f"{name}.json": to_json(build()) for name, build in BUILDERS.items()}


def stale(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """The dashboard files whose committed JSON differs from what the builders make now."""
    out = []
    for name, text in render().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grafana.build", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check, write nothing")
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="output directory")
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.out)
        for name in names:
            print(f"grafana/build: {args.out / name} is stale: regenerate it", file=sys.stderr)
        return 1 if names else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
