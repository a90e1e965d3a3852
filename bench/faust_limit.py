"""The ceiling of Faust's own consume path here: an agent that only counts and acks.

    .venv/bin/python bench/faust_limit.py --topic PREFIXcall-events --expect N --report FILE

One Faust app (same faust-streaming, same broker), one agent with concurrency 1 reading every
partition of the input from the beginning through `stream.noack().events()` and acking each
event: no table, no send, no parsing. Whatever runtime the project builds on Faust's agents pays
at least this per record. The time runs from the first record to the last; the JSON report
(rate, peak RSS, CPU time) goes to `--report` (Faust's worker takes over stdout).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faust
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import peak_rss_kib
from tests.support import BOOTSTRAP


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--report", required=True)
    parser.add_argument("--bootstrap", default=BOOTSTRAP)
    args = parser.parse_args()

    app = faust.App(
        f"bench-faust-limit-{time.time_ns()}",
        broker=f"kafka://{args.bootstrap}",
        web_enabled=False,
        store="memory://",
        datadir=tempfile.mkdtemp(prefix="ccm-bench-faust-"),
        stream_buffer_maxsize=32_768,  # as the project's workers
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(
        args.topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    seen = 0
    started: float | None = None

    def report() -> None:
        assert started is not None
        elapsed = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        Path(args.report).write_bytes(
            orjson.dumps(
                {
                    "events": seen,
                    "rate": seen / elapsed,
                    "peak_rss_kib": peak_rss_kib(os.getpid()),
                    "cpu_seconds": usage.ru_utime + usage.ru_stime,
                }
            )
        )
        os._exit(0)  # a Faust worker's orderly stop takes seconds and measures nothing

    @app.agent(topic, concurrency=1)  # type: ignore[untyped-decorator]
    async def count(stream: Any) -> None:
        nonlocal seen, started
        async for event in stream.noack().events():
            if started is None:
                started = time.monotonic()
            seen += 1
            event.ack()
            if seen >= args.expect:
                report()

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main()
