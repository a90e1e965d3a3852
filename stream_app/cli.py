"""`stream-app`: the worker and the tools around it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import Sequence

from stream_app.settings import SettingsError, load_settings

# The cyclic collector's young generation, 14 times Python's default: a worker holds its state
# as long-lived objects that every full collection walks again, and at the default a month's
# replay spent 13 % of its CPU in collections (bench/RESULTS.md).
GC_THRESHOLDS = (10_000, 10, 10)


def _fail(message: str) -> int:
    print(f"stream-app: {message}", file=sys.stderr)
    return 2


def cmd_worker(args: argparse.Namespace) -> int:
    """Run one Faust worker: create missing topics, then consume until SIGTERM or Ctrl-C."""
    from stream_app.domain.sla import SlaConfigError, load_sla_config

    try:
        settings = load_settings()
        sla = load_sla_config(settings.sla_config or None)
    except (SettingsError, SlaConfigError) as exc:
        return _fail(f"bad setting: {exc}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )

    import faust

    from stream_app.app import create_app
    from stream_app.catalog import ensure_topics
    from stream_app.kafka_clients import preflight
    from stream_app.local_stores import keep_trusted_stores

    if problem := preflight(settings):
        return _fail(problem)
    try:
        partitions = asyncio.run(ensure_topics(settings))
    except Exception as exc:
        return _fail(f"cannot reach Kafka at {settings.kafka_bootstrap} to create topics: {exc!r}")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pipeline = create_app(settings, sla, partitions)
    # The local store never holds a write its changelog lacks (stream_app.tables.RocksDBStore):
    # Faust restores only the records after its persisted offsets, once the stores that were
    # written from another log are gone (stream_app.local_stores).
    try:
        keep_trusted_stores(settings, pipeline.app.tables.values())
    except Exception as exc:
        return _fail(
            f"cannot check the local table stores against Kafka at {settings.kafka_bootstrap}: {exc!r}"
        )
    worker = faust.Worker(pipeline.app, loglevel=settings.log_level, quiet=True)
    gc.freeze()  # what start-up built stays: no collection needs to walk it again
    gc.set_threshold(*GC_THRESHOLDS)
    worker.spinner = None  # with it, Faust turns the root logger to DEBUG: every debug line costs
    worker.execute_from_commandline()  # handles SIGTERM/SIGINT; exits the process when stopped
    return 0


def cmd_replay_anonymous_bank(args: argparse.Namespace) -> int:
    """Replay the Technion records as contract events, in event-time order."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from stream_app.kafka_clients import preflight
    from stream_app.sources.anonymous_bank import load
    from stream_app.sources.producer import produce_events

    try:
        settings = load_settings()
        zone = ZoneInfo(args.tz)
    except SettingsError as exc:
        return _fail(f"bad setting: {exc}")
    except (ZoneInfoNotFoundError, ValueError):
        return _fail(f"--tz must be an IANA time zone, got {args.tz!r}")
    try:
        plan = load(args.file, zone)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {args.file}: {exc}")
    reasons: dict[str, int] = {}
    for skip in plan.skipped:
        kind = skip.reason.split(":", 1)[0]
        reasons[kind] = reasons.get(kind, 0) + 1
        if kind != "phantom":
            print(f"{args.file}:{skip.line}: skipped: {skip.reason}", file=sys.stderr)
    if problem := preflight(settings):
        return _fail(problem)
    sent = asyncio.run(produce_events(settings, plan.events, speed=args.speed))
    skipped = ", ".join(f"{n} {kind}" for kind, n in sorted(reasons.items())) or "none"
    print(
        f"replayed {plan.calls} calls as {sent} events to {settings.topic('call-events')}; skipped rows: {skipped}"
    )
    return 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    """Create the catalog's missing topics under TOPIC_PREFIX (a worker does it too at start)."""
    from stream_app.catalog import ensure_topics
    from stream_app.kafka_clients import preflight

    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail(f"bad setting: {exc}")
    if problem := preflight(settings):
        return _fail(problem)
    try:
        partitions = asyncio.run(ensure_topics(settings))
    except Exception as exc:
        return _fail(f"cannot reach Kafka at {settings.kafka_bootstrap} to create topics: {exc!r}")
    for name, count in sorted(partitions.items()):
        print(f"{name}: {count} partitions")
    return 0


def cmd_wallboard(args: argparse.Namespace) -> int:
    """Serve the wallboard on WEB_HOST:WEB_PORT from the live topics, without being a worker."""
    import signal

    from stream_app.kafka_clients import client_options, preflight
    from stream_app.wallboard.server import live_topics, serve

    try:
        settings = load_settings()
        options = client_options(settings)
    except SettingsError as exc:
        return _fail(f"bad setting: {exc}")
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    if problem := preflight(settings):
        return _fail(problem)

    async def run() -> None:
        task = asyncio.ensure_future(
            serve(settings.web_host, settings.web_port, live_topics(settings.topic), options)
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        print(f"wallboard: http://{settings.web_host}:{settings.web_port}/wallboard", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(run())
    except OSError as exc:
        return _fail(f"cannot serve on {settings.web_host}:{settings.web_port}: {exc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser(
        "worker", help="run a worker (settings from the environment, see README)"
    )
    worker.set_defaults(func=cmd_worker)
    replay = sub.add_parser("replay", help="replay recorded calls into call-events")
    sources = replay.add_subparsers(dest="source", required=True)
    bank = sources.add_parser(
        "anonymous-bank", help="the Technion Anonymous Bank TSV (one row per call)"
    )
    bank.add_argument("file", help="path of the TSV file")
    bank.add_argument(
        "--tz", default="UTC", help="time zone of the wall-clock times in the file (default UTC)"
    )
    bank.add_argument(
        "--speed", type=float, default=None, help="Nx real time (default: as fast as possible)"
    )
    bank.set_defaults(func=cmd_replay_anonymous_bank)

    from stream_app.sources.asterisk_cli import register as register_asterisk

    connect = sub.add_parser("connect", help="connect a live source to call-events")
    connectors = connect.add_subparsers(dest="source", required=True)
    register_asterisk(sources, connectors)

    topics = sub.add_parser("topics", help="manage the topic catalog")
    topic_commands = topics.add_subparsers(dest="action", required=True)
    create = topic_commands.add_parser(
        "create", help="create missing topics under TOPIC_PREFIX (existing ones are left alone)"
    )
    create.set_defaults(func=cmd_topics_create)

    wallboard = sub.add_parser(
        "wallboard",
        help="serve the wallboard (GET /wallboard, /api/queues, /api/live) on WEB_PORT from the"
        " live topics, without being a worker",
    )
    wallboard.set_defaults(func=cmd_wallboard)

    from stream_app.simulator.cli import register as register_simulate

    register_simulate(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
