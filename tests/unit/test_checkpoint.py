"""A stage's checkpoint without a broker: the order of durability, a failure at every step, a
revocation in the middle of one, and a record that began before its partition moved."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.checkpoint import EXIT_STAGE_FAILED, Checkpoint, stop_on_failure
from stream_app.outputs import OutputLost


class Failure(Exception):
    pass


class World:
    """Records what each step did, in order; fails or revokes at a named step when told."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.fail_at: str | None = None
        self.revoke_at: str | None = None
        self.epochs: dict[int, int] = {}

    def step(self, name: str) -> None:
        if self.revoke_at == name:
            self.epochs[0] = self.epochs.get(0, 0) + 1
        if self.fail_at == name:
            raise Failure(name)
        self.steps.append(name)

    # the stage's outputs, state and positions
    def epoch(self, partition: int) -> int:
        return self.epochs.get(partition, 0)

    def save(self, partition: int) -> None:
        self.step(f"save position {partition}")

    async def send_held(self, partition: int) -> None:
        """The stage's outputs held back for the partition (combined contributions)."""
        await asyncio.sleep(0)
        self.step(f"send held {partition}")


class Step:
    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name

    async def flush(self) -> None:
        await asyncio.sleep(0)
        self.world.step(self.name)


class Record:
    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name

    def ack(self) -> bool:
        self.world.step(f"ack {self.name}")
        return True


def checkpoint(world: World, every: int = 3) -> Checkpoint:
    return Checkpoint(
        Step(world, "outputs"),
        Step(world, "state"),
        world,
        every=every,
        forget=lambda partition: world.step(f"forget {partition}"),
        before=world.send_held,
    )


def hold(
    cp: Checkpoint,
    world: World,
    name: str,
    *,
    partition: int = 0,
    now: bool = False,
    since: int | None = None,
) -> bool:
    """`since`: the partition's epoch when the record began (by default: now)."""
    began = cp.epoch(partition) if since is None else since
    return asyncio.run(cp.hold(partition, Record(world, name), since=began, now=now))


def test_every_nth_record_makes_outputs_then_state_then_position_durable_before_any_ack() -> None:
    world = World()
    cp = checkpoint(world)
    assert [hold(cp, world, name) for name in ("a", "b")] == [False, False]
    assert world.steps == []
    assert hold(cp, world, "c")
    assert world.steps == [
        "send held 0",
        "outputs",
        "save position 0",
        "state",
        "ack a",
        "ack b",
        "ack c",
    ]
    assert cp.held[0] == []


def test_a_tick_checkpoints_at_once_and_partitions_are_held_apart() -> None:
    world = World()
    cp = checkpoint(world)
    hold(cp, world, "p1-a", partition=1)
    assert hold(cp, world, "p0-tick", now=True)
    assert world.steps == ["send held 0", "outputs", "save position 0", "state", "ack p0-tick"]
    assert [r.name for r in cp.held[1]] == ["p1-a"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("failing", ["send held 0", "outputs", "save position 0", "state"])
def test_a_failure_at_any_step_acks_nothing_and_stops_the_later_steps(failing: str) -> None:
    world = World()
    cp = checkpoint(world, every=1)
    world.fail_at = failing
    with pytest.raises(Failure):
        hold(cp, world, "a")
    order = ["send held 0", "outputs", "save position 0", "state"]
    assert world.steps == order[: order.index(failing)]
    assert not any(step.startswith("ack") for step in world.steps)


def test_a_partition_revoked_during_the_outputs_flush_keeps_nothing_of_the_checkpoint() -> None:
    world = World()
    cp = checkpoint(world, every=2)
    hold(cp, world, "a")
    world.revoke_at = "outputs"
    assert not hold(cp, world, "b")
    assert world.steps == [
        "send held 0",
        "outputs",
        "forget 0",
    ]  # no position saved, no state written, nothing acked
    assert cp.held.get(0) is None
    world.revoke_at = None
    world.steps.clear()
    assert not hold(cp, world, "c")  # assigned again: the count starts afresh
    assert hold(cp, world, "d")
    assert world.steps == ["send held 0", "outputs", "save position 0", "state", "ack c", "ack d"]


def test_a_record_begun_before_its_partition_moved_is_not_held_and_the_partition_is_forgotten() -> (
    None
):
    """A record waited on the broker while the group rebalanced: its partition was revoked and
    assigned again meanwhile, its state dropped and being recovered. What the record wrote
    came from that state; kept, it would shadow the recovered one."""
    world = World()
    cp = checkpoint(world, every=2)
    hold(cp, world, "a")
    began = cp.epoch(0)
    world.epochs[0] = began + 2  # revoked, then assigned again
    assert not hold(cp, world, "b", since=began, now=True)
    assert world.steps == ["forget 0"]  # nothing sent, saved, written nor acked
    assert cp.held.get(0) is None
    assert not cp.moved(0, cp.epoch(0))  # a record begun after it is the partition's again
    assert hold(cp, world, "c", now=True)
    assert world.steps[1:] == ["send held 0", "outputs", "save position 0", "state", "ack c"]


def test_a_stage_that_raises_stops_the_worker_and_a_cancelled_one_does_not() -> None:
    exits: list[int] = []

    async def failing(stream: object) -> None:
        raise OutputLost("the broker did not take 1 of 1 records")

    async def cancelled(stream: object) -> None:
        raise asyncio.CancelledError  # a rebalance restarts the agent: not a failure

    with pytest.raises(OutputLost):
        asyncio.run(stop_on_failure("calls", exit=exits.append)(failing)(None))
    assert exits == [EXIT_STAGE_FAILED]
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(stop_on_failure("calls", exit=exits.append)(cancelled)(None))
    assert exits == [EXIT_STAGE_FAILED]
    assert stop_on_failure("queues")(failing).__name__ == "failing"  # Faust names agents by it
