"""`stream-app replay asterisk` and `stream-app connect asterisk`: queue_log to `call-events`
(and its agent lines to `agent-events`).

Why two commands: a replay backfills history as fast as the broker takes it (or paced with
``--speed``) and exits once everything is acknowledged; a connector delivers what the log
gained since its last run (and, with ``--follow``, keeps tailing it), committing its read
position only after the broker acknowledged the lines' events, so a crash or restart neither
loses nor repeats lines. Per-line problems go to stderr with file and line; the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stream_app.kafka_clients import preflight
from stream_app.settings import Settings, SettingsError, load_settings
from stream_app.sources.asterisk import FORMS, Emitted, QueueLogMapper, load, summary

log = logging.getLogger("stream_app.asterisk")

# What `add_subparsers()` returns (typeshed's name for it).
SubParsers = argparse._SubParsersAction
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # waits between delivery attempts, the last repeats


def register(
    sources: SubParsers[argparse.ArgumentParser], connectors: SubParsers[argparse.ArgumentParser]
) -> None:
    """Add ``asterisk`` under ``replay`` (its sub-parsers: ``sources``) and under ``connect``."""
    register_replay(sources)
    register_connect(connectors)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMS,
        default="file",
        help="file: Asterisk's queue_log file (epoch|callid|queue|agent|EVENT|data...); "
        "csv: the realtime queue_log table exported as CSV (default file)",
    )
    parser.add_argument(
        "--tz",
        default="UTC",
        help="time zone of the csv form's local times (default UTC; the file form is epoch time)",
    )


def register_replay(sources: SubParsers[argparse.ArgumentParser]) -> None:
    parser = sources.add_parser(
        "asterisk", help="an Asterisk queue_log (file form, or the realtime table as CSV)"
    )
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="queue_log files, oldest first (a call spanning a rotation stays whole)",
    )
    _format_options(parser)
    parser.add_argument(
        "--speed", type=_positive, default=None, help="Nx real time (default: as fast as possible)"
    )
    parser.set_defaults(func=cmd_replay_asterisk)


def register_connect(connectors: SubParsers[argparse.ArgumentParser]) -> None:
    parser = connectors.add_parser(
        "asterisk",
        help="deliver the lines a live queue_log gained since the last run; --follow keeps tailing",
    )
    parser.add_argument("file", metavar="FILE", help="the queue_log file (its name, not a copy)")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep tailing the file like tail -F (rotation, truncation); stop with Ctrl-C",
    )
    parser.add_argument(
        "--state-file",
        default=None,
        help="where the read position is kept (default: DATA_DIR/asterisk-<name>-<hash>.json)",
    )
    parser.add_argument(
        "--poll", type=_positive, default=1.0, help="seconds between looks at the file (default 1)"
    )
    _format_options(parser)
    parser.set_defaults(func=cmd_connect_asterisk)


def _fail(message: str) -> int:
    print(f"stream-app: {message}", file=sys.stderr)
    return 2


def _setup(args: argparse.Namespace) -> tuple[Settings, tzinfo] | str:
    try:
        settings = load_settings()
    except SettingsError as exc:
        return f"bad setting: {exc}"
    try:
        return settings, ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        return f"--tz must be an IANA time zone, got {args.tz!r}"


def cmd_replay_asterisk(args: argparse.Namespace) -> int:
    """Map the files, produce their events in event-time order, and say what was sent."""
    from aiokafka.errors import KafkaError

    from stream_app.sources.producer import produce_events

    setup = _setup(args)
    if isinstance(setup, str):
        return _fail(setup)
    settings, zone = setup
    try:
        plan = load(args.files, args.format, zone)
    except OSError as exc:
        return _fail(f"cannot read {exc.filename or args.files}: {exc.strerror or exc}")
    for skip in plan.skips:
        print(skip, file=sys.stderr)
    if problem := preflight(settings):
        return _fail(problem)
    try:
        sent = asyncio.run(produce_events(settings, plan.events, speed=args.speed))
    except KafkaError as exc:
        return _fail(f"cannot deliver to Kafka at {settings.kafka_bootstrap}: {exc!r}")
    stats = plan.stats
    print(
        f"replayed {stats.lines} lines: {plan.calls} calls and {plan.agents} agents as {sent}"
        f" events to {settings.topic('call-events')} and {settings.topic('agent-events')}"
    )
    print(summary(stats), file=sys.stderr)
    if stats.lines and stats.lines == sum(stats.skipped.values()) + stats.blank:
        print(
            f"stream-app: no line could be read: is --format {args.format} right?", file=sys.stderr
        )
        return 1
    return 0


def default_state_file(settings: Settings, file: str) -> Path:
    """One state file per followed path, under DATA_DIR."""
    path = os.path.abspath(file)
    digest = hashlib.sha256(path.encode()).hexdigest()[:10]
    return settings.data_dir / f"asterisk-{os.path.basename(path)}-{digest}.json"


def cmd_connect_asterisk(args: argparse.Namespace) -> int:
    """Deliver new lines (and with --follow keep going), committing after each acknowledgement."""
    from aiokafka.errors import KafkaError

    setup = _setup(args)
    if isinstance(setup, str):
        return _fail(setup)
    settings, zone = setup
    logging.basicConfig(
        level=settings.log_level.upper(), format="[%(asctime)s] %(levelname)s %(name)s: %(message)s"
    )
    state_file = args.state_file or default_state_file(settings, args.file)
    if problem := preflight(settings):
        return _fail(problem)
    try:
        return asyncio.run(
            connect(
                settings,
                args.file,
                form=args.format,
                tz=zone,
                state_file=state_file,
                follow=args.follow,
                poll=args.poll,
            )
        )
    except ValueError as exc:  # a state file that is not ours, or damaged
        return _fail(f"{exc} (remove it to start the file over)")
    except KafkaError as exc:
        return _fail(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc!r}")


async def connect(
    settings: Settings,
    file: str,
    *,
    form: str,
    tz: tzinfo,
    state_file: str | os.PathLike[str] | None,
    follow: bool,
    poll: float = 1.0,
    stop: asyncio.Event | None = None,
) -> int:
    """The connector loop; returns an exit code. ``stop`` (or SIGINT/SIGTERM) ends it after
    the batch in hand is delivered and committed."""
    from stream_app.sources.follow import Follower
    from stream_app.sources.producer import deliver, open_producer

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    follower = Follower(file, state_file)
    mapper = QueueLogMapper(form, tz, source=follower.path)
    if follower.saved is not None:
        mapper.restore(follower.saved)
    topics = {name: settings.topic(name) for name in ("call-events", "agent-events")}
    delivered = 0
    try:
        async with open_producer(settings) as producer:
            while not stop.is_set():
                batch = follower.poll_once()
                if batch is None:
                    if not follow:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), poll)
                    continue
                mapper.source = batch.source
                events: list[Emitted] = []
                for line in batch.lines:
                    events.extend(mapper.feed(line.text, line.number))
                for skip in mapper.skips:
                    print(skip, file=sys.stderr)
                mapper.skips.clear()
                if not await _deliver_until_done(deliver, producer, topics, events, stop):
                    break  # stopped before the broker had them: the lines are read again next time
                follower.commit(batch.position, mapper.snapshot())
                delivered += len(events)
    finally:
        follower.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
    stats = mapper.stats
    print(
        f"read {stats.lines} lines of {follower.path}: {delivered} events to"
        f" {topics['call-events']} and {topics['agent-events']};"
        f" {mapper.open_calls} calls still open",
        file=sys.stderr,
    )
    print(summary(stats), file=sys.stderr)
    return 0


async def _deliver_until_done(
    deliver: Callable[[Any, Mapping[str, str], list[Emitted]], Awaitable[int]],
    producer: Any,
    topics: Mapping[str, str],
    events: list[Emitted],
    stop: asyncio.Event,
) -> bool:
    """Send until the broker acknowledged all (event ids are stable: a resend is a duplicate
    the engine drops); False when stopped first."""
    from aiokafka.errors import KafkaError

    attempt = 0
    while True:
        try:
            await deliver(producer, topics, events)
            return True
        except KafkaError as exc:
            wait = RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)]
            attempt += 1
            log.warning("delivery failed (%r); retrying in %.0f s", exc, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if stop.is_set():
                return False
