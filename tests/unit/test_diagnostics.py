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
