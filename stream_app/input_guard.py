"""Each stage applies an input partition's records once and in offset order, whatever Faust's
fetch loop delivers or commits (why: `stream_app.domain.positions`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError
from faust.types import TP

from stream_app.domain.positions import POSITION_KEY, Position, Step
from stream_app.kafka_clients import client_options
from stream_app.settings import Settings
from stream_app.tables import BufferedStore

log = logging.getLogger(__name__)
RESEEK_AFTER_S = 2.0  # a rewind still waiting for its records after this is sought again
STALL_AFTER_S = 5.0  # records on the broker, none delivered for this long: fetched again
QUEUED_STALL_AFTER_S = 120.0  # the same, for records Faust says it handed to the streams
PROBE_TIMEOUT_S = 60.0  # a broker that cannot say what comes first in this long stops the worker


class ProbeFailed(RuntimeError):
    """The broker did not say which record comes first at a position: the worker stops rather
    than guess (a guess could skip records); its successor starts from the stored position."""


class LogProbe:
    """Asks the broker which offset really comes first at a position (a consumer of its own,
    outside the group, reading as Faust's consumer does: uncommitted records included)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer: AIOKafkaConsumer | None = None
        self.lock = asyncio.Lock()

    async def first_offset(self, topic: str, partition: int, start: int) -> int:
        """The first offset at or after `start`. The record in hand lies after it, so the log
        has one: an empty fetch is a slow broker, asked again, never read as "none"."""
        async with self.lock:
            if self.consumer is None:
                self.consumer = AIOKafkaConsumer(
                    **client_options(self.settings),
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",  # a position the retention deleted: what is left
                )
                await self.consumer.start()
            tp = TopicPartition(topic, partition)
            self.consumer.assign([tp])
            self.consumer.seek(tp, start)
            deadline = time.monotonic() + PROBE_TIMEOUT_S
            while True:
                batch = await self.consumer.getmany(tp, timeout_ms=5000, max_records=1)
                records = batch.get(tp, [])
                if records:
                    return int(records[0].offset)
                if time.monotonic() > deadline:
                    raise ProbeFailed(
                        f"{topic}[{partition}]: the broker returned no record at or after "
                        f"offset {start} in {PROBE_TIMEOUT_S:.0f} s"
                    )
                log.warning(
                    "%s[%d]: no answer yet for offset %d; asking again", topic, partition, start
                )

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None


def end_offset(consumer: Any, tp: TP) -> int | None:
    """The partition's end as the consumer knows it; None (not known: behind) when the
    consumer no longer holds it: a record of a partition revoked a moment ago can still be on
    its way to the stage, and aiokafka asserts on the end of a partition not assigned (a
    worker exited on it in test_crash's rebalance)."""
    try:
        end: int | None = consumer.highwater(tp)
    except AssertionError:  # aiokafka: "Partition is not assigned"
        return None
    return end


class InputGuard:
    """The positions of one stage's input partitions, kept in the stage's table (POSITION_KEY,
    one per partition) and written with every flush, after the state they vouch for."""

    def __init__(
        self,
        app: Any,
        store: BufferedStore,
        topic: str,
        probe: LogProbe,
        clock: Callable[[], float] = time.monotonic,
        position_key: str = POSITION_KEY,  # another for each input topic of one stage
    ) -> None:
        self.app = app
        self.position_key = position_key
        self.store = store
        self.topic = topic
        self.probe = probe
        self.clock = clock
        self.received_at: dict[int, float] = {}  # when a record of the partition last came
        self.unread_since: dict[int, tuple[int, float]] = {}  # (next to apply, first seen unread)
        self.positions: dict[int, Position] = {}
        self.saved: dict[int, int] = {}
        self.sought_at: dict[int, float] = {}
        self.sought_for: dict[int, int] = {}  # the position each partition was last sought for
        self.epochs: dict[int, int] = {}
        self.vouched: set[int] = set()  # partitions whose stored position Faust was told

    def _position(self, partition: int) -> Position:
        position = self.positions.get(partition)
        if position is None:  # first record since assignment: the table's word
            stored = self.store.get(self.position_key, partition)
            position = self.positions[partition] = Position(next=stored or 0)
            if stored is not None:
                self.saved[partition] = stored
        return position

    async def admit(self, message: Any) -> Step:
        """APPLY, SKIP (already applied), or REWIND (the consumer was sent back for the records
        before it, or the partition was revoked or assigned while the record waited here: the
        first record after an assignment commits, a commit can wait out the next rebalance,
        and the table may then be mid-recovery; nothing is read from it, nothing sought, and
        the record comes again)."""
        partition = message.partition
        epoch = self.epoch(partition)
        self.received_at[partition] = self.clock()
        position = self._position(partition)
        if partition not in self.vouched:
            await self._vouch(partition)
            if self.epoch(partition) != epoch:
                return Step.REWIND
        step = position.step(message.offset)
        if step is Step.PROBE:
            first = await self.probe.first_offset(self.topic, partition, position.next)
            if self.epoch(partition) != epoch:
                return Step.REWIND
            position.probed(first, message.offset)
            step = position.step(message.offset)
        if step is Step.REWIND and self.sought_for.get(partition) != position.next:
            await self._seek(partition, position)  # once; the stale rest is dropped
        return step

    async def _vouch(self, partition: int) -> None:
        """Commit the stored position for Faust: the offsets before it are done (an earlier
        owner applied them; the table says so). Delivered again they are skipped and acked, but one
        lost on the way (Faust clears its stream buffers at the end of a recovery) would hold
        Faust's commit back for good: it commits only past offsets acked one after another,
        and the guard, at the log's end already, sees nothing to fetch again (test_crash: a
        restarted worker whose group lag stayed at 160 with everything applied)."""
        self.vouched.add(partition)
        stored = self.saved.get(partition)
        consumer = self.app.consumer
        tp = TP(self.topic, partition)
        committed = consumer._committed_offset.get(tp)
        if stored and (committed is None or committed < stored):
            await consumer.maybe_wait_for_commit_to_finish()  # one commit at a time
            await consumer._commit_offsets({tp: stored})

    def next_offset(self, partition: int) -> int:
        """The offset of the partition's next record to apply (inside an agent, on a record of
        that partition)."""
        return self._position(partition).next

    def read_to_end(self, partition: int) -> bool:
        """Whether every record of the partition the consumer knows of was applied (not when
        its end is not known)."""
        end = end_offset(self.app.consumer, TP(self.topic, partition))
        return end is not None and self.next_offset(partition) >= end

    def epoch(self, partition: int) -> int:
        """Changes whenever the partition is revoked or assigned: a record whose processing
        spans a change had its buffered effects dropped, so it must neither count as applied
        nor be acked (it is delivered again)."""
        return self.epochs.get(partition, 0)

    async def process(self, message: Any, apply: Callable[[Any], Awaitable[None]]) -> bool:
        """Apply `message` if it is the next record of its partition; True when it is to be
        acked with the others (applied, or applied before), False when it is dropped unacked
        (fetched again after a rewind, or its partition was revoked or assigned meanwhile:
        the stage forgets what it wrote, `stream_app.checkpoint`)."""
        epoch = self.epoch(message.partition)
        step = await self.admit(message)
        if step is Step.REWIND:
            return False
        if step is Step.APPLY:
            await apply(message)
            if self.epoch(message.partition) != epoch:
                return False  # its buffered effects were dropped with the partition
            self._position(message.partition).applied(message.offset)
        return True

    async def watch(self, partition: int) -> None:
        """From a tick of the partition: fetch again what the consumer lost.

        A rewind whose records have not come is sought again (Faust's fetch loop can drop the
        records fetched again when a stale batch moved its read offset). And records the broker
        holds beyond the next one to apply, none of which came for STALL_AFTER_S (or for
        QUEUED_STALL_AFTER_S when Faust says it handed them to the streams: in a backlog they
        wait in the stream buffers), are fetched again from there. At the end of a recovery
        Faust resumes the input partitions, then clears its stream buffers (flow control's
        clear-on-resume) after records were fetched into them, and seeks back only partitions
        with a committed offset; its fetch loop also drops the rest of a batch when a rebalance
        begins. Without this such records would come only with the next rebalance (a worker
        idle with its input unread)."""
        now = self.clock()
        position = self.positions.get(partition)
        if position is not None and position.rewinding:
            if now - self.sought_at.get(partition, 0.0) >= RESEEK_AFTER_S:
                await self._seek(partition, position)
            return
        tp = TP(self.topic, partition)
        highwater = end_offset(self.app.consumer, tp)
        following = self.next_offset(partition)
        if highwater is None or highwater <= following:
            self.unread_since.pop(partition, None)
            return
        # Since when the broker is known to hold records past the next one to apply: a record
        # produced a moment ago is not overdue, however long the partition was quiet before.
        unread = self.unread_since.get(partition)
        if unread is None or unread[0] != following:
            unread = self.unread_since[partition] = (following, now)
        quiet = now - max(self.received_at.setdefault(partition, now), unread[1])
        if quiet < STALL_AFTER_S or now - self.sought_at.get(partition, -1e9) < STALL_AFTER_S:
            return
        # The last offset Faust's fetch loop handed to the streams (or sought to): past the
        # next one to apply, the records wait in the stream buffers behind others (a backlog),
        # so they are given far longer before they count as lost too.
        handed = self.app.consumer._read_offset.get(tp)
        if handed is not None and handed > following and quiet < QUEUED_STALL_AFTER_S:
            return
        log.warning(
            "%s[%d]: records from offset %d are on the broker (up to %d) but none came for "
            "%.0f s: fetching them again",
            self.topic,
            partition,
            following,
            highwater,
            quiet,
        )
        await self._fetch_from(partition, following)

    async def _seek(self, partition: int, position: Position) -> None:
        assert position.first is not None
        self.sought_for[partition] = position.next
        log.warning(
            "%s[%d]: records from offset %d were skipped by the consumer: fetching them again",
            self.topic,
            partition,
            position.first,
        )
        await self._fetch_from(partition, position.first)

    async def _fetch_from(self, partition: int, offset: int) -> None:
        self.sought_at[partition] = self.clock()
        # seek_wait runs on the consumer's own thread (Faust's plain seek does not: it races
        # the fetcher) and moves Faust's read offset back too.
        try:
            await self.app.consumer.seek_wait({TP(self.topic, partition): offset})
        except IllegalStateError:  # revoked meanwhile (on the consumer's thread)
            log.info(
                "%s[%d] was revoked before it could be fetched again: its owner reads it",
                self.topic,
                partition,
            )

    def save(self, partition: int) -> None:
        """Before a flush of this partition (inside an agent, on one of its records)."""
        position = self.positions.get(partition)
        if position is None or self.saved.get(partition) == position.next:
            return
        self.store.set(self.position_key, position.next)
        self.saved[partition] = position.next

    def forget(self, partition: int) -> None:
        """On revocation or assignment: the table says where to resume."""
        self.positions.pop(partition, None)
        self.saved.pop(partition, None)
        self.sought_at.pop(partition, None)
        self.sought_for.pop(partition, None)
        self.received_at[partition] = self.clock()  # a new owner's fetch gets its time
        self.unread_since.pop(partition, None)
        self.vouched.discard(partition)
        self.epochs[partition] = self.epoch(partition) + 1
