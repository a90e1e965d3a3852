"""Where each input partition really stands: the next offset a stage must apply.

Why: Faust's committed offset is not a safe restart point. Around a rebalance its fetch loop can
deliver records fetched before a seek, count the offsets it skipped as a "gap" and commit past
them, and its streams ack records of an older generation that they drop unprocessed (both seen
here: a worker killed after such a commit lost the first events of calls). So each stage keeps
its own position in its table, flushed with the state it vouches for, and applies a partition's
records strictly in offset order: a record behind the position is already applied, a record
ahead of it means records were skipped and the consumer must go back for them. A hole in the
log itself (a transaction marker, a compacted range) is told apart by asking the broker which
offset really comes first at the position.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

POSITION_KEY = "\x00position"  # NUL-led: no call_id or queue key looks like it


class Step(Enum):
    APPLY = "apply"  # the record at the position: apply it, then advance
    SKIP = "skip"  # behind the position: its effect is already in the state
    PROBE = "probe"  # ahead of the position: ask the broker which offset comes first there
    REWIND = "rewind"  # ahead, and earlier records exist: seek back to them, drop this one


@dataclass(slots=True)
class Position:
    """One input partition. A partition with no stored position starts at offset 0, which the
    broker answers with its first record: nothing before the first flush can be skipped."""

    next: int = 0
    first: int | None = None  # the broker's answer for `next`: the first offset at or after it
    first_for: int | None = None  # which `next` that answer is about

    def step(self, offset: int) -> Step:
        if offset == self.next:
            return Step.APPLY
        if offset < self.next:
            return Step.SKIP
        if self.first_for != self.next or self.first is None:
            return Step.PROBE
        if offset == self.first:
            return Step.APPLY  # nothing exists between the position and this record
        return Step.REWIND

    def probed(self, first: int, offset: int) -> None:
        """Record the broker's first offset at or after `next`. The broker always has one: the
        record in hand is in the log. No answer is never taken for one (the caller fails)."""
        self.first_for = self.next
        self.first = min(first, offset)

    def applied(self, offset: int) -> None:
        self.next = offset + 1
        self.first = self.first_for = None

    @property
    def rewinding(self) -> bool:
        """Waiting for records the consumer must fetch again."""
        return self.first_for is not None and self.first_for == self.next
