import asyncio
import io

from stream_app.diagnostics import await_chain, dump_tasks


async def _inner(event: asyncio.Event) -> None:
    await event.wait()


async def _outer(event: asyncio.Event) -> None:
    await _inner(event)


def test_the_chain_reaches_the_innermost_wait() -> None:
    async def main() -> tuple[list[str], str]:
        event = asyncio.Event()
        task = asyncio.create_task(_outer(event), name="waiter")
        await asyncio.sleep(0)
        chain = await_chain(task)
        out = io.StringIO()
        dump_tasks({"main": asyncio.get_running_loop()}, out)
        event.set()
        await task
        return chain, out.getvalue()

    chain, dump = asyncio.run(main())
    assert [line.rsplit(" ", 1)[-1] for line in chain] == ["_outer", "_inner", "wait"]
    assert "task waiter\n" in dump and "_inner" in dump


class _Actor:
    """Like Faust's actor: awaited through a coroutine's `__await__()` wrapper."""

    def __init__(self, event: asyncio.Event) -> None:
        self.coro = _outer(event)

    def __await__(self):  # type: ignore[no-untyped-def]
        return self.coro.__await__()


async def _stream(event: asyncio.Event):  # type: ignore[no-untyped-def]
    await event.wait()
    yield 1


async def _consume(event: asyncio.Event) -> None:
    async for _ in _stream(event):
        pass


def test_the_chain_goes_through_await_wrappers_and_async_generators() -> None:
    async def chain_of(make) -> list[str]:  # type: ignore[no-untyped-def]
        event = asyncio.Event()
        task = asyncio.ensure_future(make(event))
        await asyncio.sleep(0)
        chain = await_chain(task)
        event.set()
        await task
        return [line.rsplit(" ", 1)[-1] for line in chain]

    async def wrapped(event: asyncio.Event) -> None:
        await _Actor(event)

    assert asyncio.run(chain_of(wrapped)) == ["wrapped", "_outer", "_inner", "wait"]
    assert asyncio.run(chain_of(_consume)) == ["_consume", "_stream", "wait"]


def test_the_consumer_dump_names_each_partition_with_faust_and_the_clients_view() -> None:
    from types import SimpleNamespace

    from faust.types import TP

    from stream_app.diagnostics import dump_consumer

    stuck, flowing = TP("call-events", 0), TP("call-events", 1)
    state = SimpleNamespace(
        has_valid_position=True, _position=18, highwater=18, paused=False, _status="CONSUMING"
    )
    assignment = SimpleNamespace(state_value=lambda tp: state if tp == stuck else None)
    client = SimpleNamespace(
        _subscription=SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
    )
    consumer = SimpleNamespace(
        flow_active=True,
        _paused_partitions=set(),
        _buffered_partitions=set(),
        _active_partitions={stuck, flowing},
        _read_offset={flowing: 5},
        _committed_offset={flowing: 6},
        _thread=SimpleNamespace(_consumer=client),
        assignment=lambda: {stuck, flowing},
    )
    out = io.StringIO()
    dump_consumer(SimpleNamespace(consumer=consumer), out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("--- consumer: flow_active=True")
    assert lines[1] == (
        "call-events[0] active=True read=None committed=None "
        "client: position=18 highwater=18 paused=False status=CONSUMING"
    )
    assert lines[2] == "call-events[1] active=True read=5 committed=6"
