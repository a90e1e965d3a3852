"""`stream-app simulate`: run the simulated call center into `call-events` and `agent-events`.

Also runnable on its own: `python -m stream_app.simulator.cli --duration 1h --fast`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from stream_app.domain.sla import SlaConfigError, load_sla_config
from stream_app.settings import Settings, SettingsError, load_settings
from stream_app.simulator.config import (
    SimConfig,
    SimConfigError,
    load_config,
    parse_breach,
    parse_duration,
)
from stream_app.simulator.model import Simulation
from stream_app.simulator.summary import Summary

HELP = (
    "run a simulated call center into call-events and agent-events "
    "(real time, N x faster, or as fast as possible)"
)
EPILOG = """\
examples:
  stream-app simulate                                   # live, real time, forever (Ctrl-C stops)
  stream-app simulate --start now-6h --speed 60         # 60x real time from 6 hours ago
  stream-app simulate --duration 1h --fast --faults --seed 7 --summary-json sim.json
  stream-app simulate --breach sales:30 --duration 2h   # sales unstaffed for 30 min, then recovers
  stream-app simulate --backfill 2h                     # the last 2 hours at once, then live

Ctrl-C or SIGTERM closes the center at the simulated time reached: every call in progress
ends then (callers in the IVR or waiting hang up, calls being talked end with their after-call
work cut short) and every agent logs out, so the pipeline is left with no call open.

The summary (stdout; stderr with --dry-run) gives the calls' outcomes and, per queue, the
figures the pipeline must report; --summary-json adds them per interval (INTERVAL_MINUTES),
counted with the SLA thresholds of SLA_CONFIG, like the worker, and the agents' figures per
queue and interval (queue_agent_intervals) and per agent and interval (agent_intervals).
"""
PAST_MARGIN_MS = 2 * 3_600_000  # calls in progress when arrivals stop finish within this
CATCH_UP_MS = 24 * 3_600_000  # a faster-than-real-time endless run starts this far back


def _fail(message: str) -> int:
    print(f"stream-app simulate: {message}", file=sys.stderr)
    return 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="simulation file, .yaml or .toml")
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed: the same seed, the same calls"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        metavar="N",
        help="N x real time (default 1); 0 means as fast as possible",
    )
    parser.add_argument(
        "--fast", action="store_true", help="as fast as possible (needs --duration)"
    )
    parser.add_argument(
        "--duration",
        metavar="SPAN",
        help="simulated time during which calls arrive, e.g. 90m, 2h, 1d (default: forever); "
        "calls still in the center then run to their end",
    )
    parser.add_argument(
        "--start",
        metavar="TIME",
        help="simulated start: ISO 8601 with an offset, 'now', or relative like now-6h "
        "(default: now in real time; faster runs start early enough to stay in the past)",
    )
    parser.add_argument(
        "--backfill",
        metavar="SPAN",
        help="start SPAN ago (e.g. 2h), send that past as fast as possible, then go on live in "
        "real time: a board is full from the first minute",
    )
    parser.add_argument(
        "--faults",
        action="store_true",
        help="behave like a real feed: duplicates, reordering, late and malformed records",
    )
    parser.add_argument(
        "--breach",
        action="append",
        default=[],
        metavar="QUEUE[:MINUTES[:AGENTS]]",
        help="from the start, QUEUE has AGENTS (default 0) on duty for MINUTES (default 30), "
        "then recovers; repeatable",
    )
    parser.add_argument(
        "--summary-json", metavar="PATH", help="also write the summary, with per-interval figures"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the records (key TAB value) instead of sending them",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration as YAML and exit",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `simulate` to the `stream-app` sub-commands."""
    parser = sub.add_parser(
        "simulate",
        help=HELP,
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_simulate)


@dataclass(frozen=True)
class Plan:
    config: SimConfig
    seed: int
    start_ms: int
    duration_ms: int | None
    speed: float | None  # None: as fast as possible


def plan(args: argparse.Namespace, now_ms: int) -> Plan:
    """The run the options ask for; raises SimConfigError naming the option."""
    config = load_config(args.config)
    config = config.with_breaches(tuple(parse_breach(text) for text in args.breach))
    duration = parse_duration(args.duration) if args.duration else None
    if args.speed is not None and not (math.isfinite(args.speed) and args.speed >= 0):
        raise SimConfigError(f"--speed must be a number >= 0, got {args.speed}")
    if args.fast and args.speed not in (None, 0):
        raise SimConfigError("--fast and --speed N contradict each other")
    if args.backfill is not None:
        if args.start is not None or args.speed is not None or args.fast:
            raise SimConfigError(
                "--backfill sets the start and the pace: no --start, --speed, --fast"
            )
        # As fast as possible never runs ahead of the wall clock (publish.run): once the past
        # is sent, the run goes on in real time, live.
        start = now_ms - parse_duration(args.backfill)
        seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
        return Plan(config, seed, start - start % 1000, duration, None)
    speed = None if args.fast or args.speed == 0 else (args.speed or 1.0)
    if speed is None and duration is None:
        raise SimConfigError("as fast as possible needs --duration (it would never end)")
    if args.start is not None:
        start = parse_start(args.start, now_ms)
    elif speed is not None and speed <= 1:
        start = now_ms
    elif duration is not None:
        start = now_ms - duration - PAST_MARGIN_MS
    else:
        start = now_ms - CATCH_UP_MS
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    return Plan(config, seed, start - start % 1000, duration, speed)


def parse_start(text: str, now_ms: int) -> int:
    raw = text.strip()
    if raw == "now":
        return now_ms
    if raw.startswith(("-", "now-")):  # `--start=-6h` or `--start now-6h`
        return now_ms - parse_duration(raw.split("-", 1)[1])
    try:
        instant = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise SimConfigError(
            f"--start must be ISO 8601 with an offset (2026-03-02T08:00:00Z), 'now' or now-6h, got {text!r}"
        ) from None
    if instant.tzinfo is None:
        raise SimConfigError(f"--start needs an offset (Z or +01:00), got {text!r}")
    return int(instant.timestamp() * 1000)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate, send, and print the summary (also after Ctrl-C or SIGTERM, which close the
    center: the calls in progress end at the simulated time reached)."""
    try:
        settings = load_settings()
        sla = load_sla_config(settings.sla_config or None)
        run = plan(args, time.time_ns() // 1_000_000)
    except (SettingsError, SlaConfigError, SimConfigError) as exc:
        return _fail(str(exc))
    if args.print_config:
        import yaml

        print(
            yaml.safe_dump(
                run.config.to_data(), sort_keys=False, default_flow_style=None, width=120
            ),
            end="",
        )
        return 0
    sim = Simulation(
        run.config,
        seed=run.seed,
        start_ms=run.start_ms,
        duration_ms=run.duration_ms,
        faults=args.faults,
    )
    summary = Summary(interval_ms=settings.interval_ms, sla=sla, seed=run.seed)
    report = sys.stderr if args.dry_run else sys.stdout
    pace = "as fast as possible" if run.speed is None else f"at {run.speed:g}x real time"
    if args.backfill is not None:
        pace = f"the last {args.backfill} as fast as possible, then live"
    span = "forever" if run.duration_ms is None else f"for {args.duration}"
    print(
        f"simulating from {datetime.fromtimestamp(run.start_ms / 1000).astimezone().isoformat()} "
        f"{span} {pace}, seed {run.seed}"
        + (", with faults" if args.faults else "")
        + (
            ""
            if args.dry_run
            else f", to {settings.topic('call-events')} and {settings.topic('agent-events')}"
        ),
        file=sys.stderr,
    )
    if not args.dry_run:
        from stream_app.kafka_clients import preflight

        if problem := preflight(settings):
            return _fail(problem)
    try:
        stopped = asyncio.run(_send(settings, sim, summary, run.speed, dry_run=args.dry_run))
    except Exception as exc:
        print(summary.render(), file=report)
        where = "stdout" if args.dry_run else f"Kafka at {settings.kafka_bootstrap}"
        return _fail(f"sending to {where} failed: {exc!r}")
    if stopped and sim.closed_at is not None:
        closed = datetime.fromtimestamp(sim.closed_at / 1000).astimezone()
        print(
            f"stopped: the center closed at {closed.isoformat(timespec='milliseconds')} "
            "(simulated time), the calls in progress ended then; "
            "the summary covers what was sent",
            file=sys.stderr,
        )
    print(summary.render(), file=report)
    if args.summary_json:
        data = {
            "start_ms": run.start_ms,
            "duration_ms": run.duration_ms,
            "faults_on": args.faults,
            "stopped": stopped,
            "stopped_at_ms": sim.closed_at,
            **summary.to_json(),
        }
        Path(args.summary_json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


async def _send(
    settings: Settings, sim: Simulation, summary: Summary, speed: float | None, *, dry_run: bool
) -> bool:
    from stream_app.simulator.publish import KafkaSink, StreamSink, run

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if dry_run:
        return await run(sim, summary, StreamSink(), speed=speed, stop=stop)
    from stream_app.catalog import ensure_topics

    await ensure_topics(settings)  # a simulator started before any worker gets the right topics
    sink = KafkaSink(settings)
    await sink.start()
    try:
        return await run(sim, summary, sink, speed=speed, stop=stop)
    finally:
        await sink.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stream-app simulate",
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return cmd_simulate(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
