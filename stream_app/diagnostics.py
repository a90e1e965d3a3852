"""Where a live worker's tasks wait, on SIGUSR2: the whole await chain of every task.

asyncio's own task stacks (and mode's SIGUSR1 dump built on them) show only a suspended task's
outermost frame, e.g. Faust's `_execute_actor`, never the line of the agent that waits; a
worker that still answers HTTP but stopped processing needs the innermost one.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from typing import Any, TextIO


def await_chain(task: asyncio.Task[Any]) -> list[str]:
    """`file:line function` of each coroutine in the chain the task waits in, outermost first."""
    lines: list[str] = []
    awaitable: Any = task.get_coro()
    while awaitable is not None:
        frame = frame_of(awaitable)
        if frame is not None:
            lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = (
            getattr(awaitable, "cr_await", None)
            or getattr(awaitable, "gi_yieldfrom", None)
            or getattr(awaitable, "ag_await", None)
            or _wrapped(awaitable)
        )
    return lines


def _wrapped(awaitable: Any) -> Any:
    """The coroutine or generator behind an object that exposes none (a coroutine's
    `__await__()` wrapper, an async generator's `asend`), or None (a future: the chain's end)."""
    if isinstance(awaitable, asyncio.Future) or frame_of(awaitable) is not None:
        return None
    for referent in gc.get_referents(awaitable):
        if frame_of(referent) is not None:
            return referent
    return None


def frame_of(awaitable: Any) -> Any:
    return (
        getattr(awaitable, "cr_frame", None)
        or getattr(awaitable, "gi_frame", None)
        or getattr(awaitable, "ag_frame", None)
    )


def dump_tasks(loops: dict[str, asyncio.AbstractEventLoop], out: TextIO) -> None:
    for name, loop in loops.items():
        tasks = sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name())
        out.write(f"--- {name} loop: {len(tasks)} tasks (await chains, outermost first)\n")
        for task in tasks:
            out.write(f"task {task.get_name()}\n")
            for line in await_chain(task):
                out.write(f"    {line}\n")
    out.write("--- end of tasks\n")
    out.flush()


def install(app: Any) -> None:
    """SIGUSR2 writes the dump of the worker's loop and of Faust's consumer thread's loop (read
    from another thread: a debugging view, not a consistent snapshot) to stderr, the log."""
    loop = asyncio.get_running_loop()

    def dump() -> None:
        loops = {"main": loop}
        thread_loop = getattr(getattr(app.consumer, "_thread", None), "thread_loop", None)
        if thread_loop is not None and thread_loop is not loop:
            loops["consumer thread"] = thread_loop
        dump_tasks(loops, sys.stderr)
        dump_consumer(app, sys.stderr)

    loop.add_signal_handler(signal.SIGUSR2, dump)


def dump_consumer(app: Any, out: TextIO) -> None:
    """What Faust's consumer and its Kafka client believe of each assigned partition: a worker
    whose agents wait for records that never come shows here which partition stopped why."""
    consumer = app.consumer
    out.write(
        f"--- consumer: flow_active={consumer.flow_active} "
        f"paused={sorted(map(tuple, consumer._paused_partitions))} "
        f"buffered={sorted(map(tuple, consumer._buffered_partitions))}\n"
    )
    active = consumer._active_partitions
    client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    assignment = None
    if client is not None and client._subscription.subscription is not None:
        assignment = client._subscription.subscription.assignment
    for tp in sorted(consumer.assignment()):
        line = (
            f"{tp.topic}[{tp.partition}] active={active is None or tp in active} "
            f"read={consumer._read_offset.get(tp)} committed={consumer._committed_offset.get(tp)}"
        )
        state = None if assignment is None else assignment.state_value(tp)
        if state is not None:
            position = state._position if state.has_valid_position else None
            line += (
                f" client: position={position} highwater={state.highwater} "
                f"paused={state.paused} status={state._status}"
            )
        out.write(line + "\n")
    out.flush()
