"""The end of an input partition as the stages ask it of the consumer (stream_app.input_guard)."""

from __future__ import annotations

from faust.types import TP

from stream_app.input_guard import end_offset

TOPIC_PARTITION = TP("call-events", 3)


class Consumer:
    """As aiokafka's: the end of an assigned partition, an assertion for any other."""

    def __init__(self, ends: dict[TP, int | None]) -> None:
        self.ends = ends

    def highwater(self, tp: TP) -> int | None:
        assert tp in self.ends, "Partition is not assigned"
        return self.ends[tp]


def test_the_end_of_an_assigned_partition_is_the_consumers() -> None:
    assert end_offset(Consumer({TOPIC_PARTITION: 120}), TOPIC_PARTITION) == 120
    assert end_offset(Consumer({TOPIC_PARTITION: None}), TOPIC_PARTITION) is None


def test_a_partition_revoked_a_moment_ago_has_no_known_end_rather_than_failing_the_stage() -> None:
    """A record of a revoked partition still on its way to the calls stage asked its end: the
    assertion stopped the worker (exit 70) in test_crash's rebalance; now it is only behind."""
    assert end_offset(Consumer({}), TOPIC_PARTITION) is None
