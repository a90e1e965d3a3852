"""GET /wallboard (the page), /api/queues (a JSON snapshot) and /api/live (server-sent events:
the snapshot, then each change, and a heartbeat every second), as plain aiohttp handlers: a
worker mounts them on Faust's web server, `stream-app wallboard` on its own.

The heartbeat carries the server's clock and its own view of staleness, so a page tells a
queue whose owner went quiet (stale by the server) from a server that went away (no heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from stream_app.wallboard.live_view import Change, LiveReader, LiveView

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEARTBEAT_S = 1.0
ASSETS = {  # path → (package file, content type)
    "/wallboard": ("index.html", "text/html; charset=utf-8"),
    "/wallboard/wallboard.js": ("wallboard.js", "text/javascript; charset=utf-8"),
    "/wallboard/wallboard.css": ("wallboard.css", "text/css; charset=utf-8"),
}


def asset(name: str) -> bytes:
    return resources.files("stream_app.wallboard").joinpath("static", name).read_bytes()


def sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Wallboard:
    """The handlers over one LiveView."""

    def __init__(self, view: LiveView) -> None:
        self.view = view

    async def page(self, request: web.Request) -> web.StreamResponse:
        name, content_type = ASSETS[request.path.rstrip("/") or request.path]
        return web.Response(
            body=asset(name), headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
        )

    async def queues(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=orjson.dumps(self.view.snapshot()),
            headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
        )

    async def live(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold the stream back
            }
        )
        await response.prepare(request)
        changes = self.view.subscribe()
        loop = asyncio.get_running_loop()
        try:
            await response.write(b"retry: 2000\n\n" + sse("snapshot", self.view.snapshot()))
            beat_at = loop.time() + HEARTBEAT_S
            while not self.view.closed.is_set():
                change: Change | None
                try:
                    change = await asyncio.wait_for(
                        changes.get(), timeout=max(0.0, beat_at - loop.time())
                    )
                except TimeoutError:
                    await response.write(sse("heartbeat", self.view.heartbeat()))
                    beat_at = loop.time() + HEARTBEAT_S
                    continue
                if change is None:
                    break  # cut off, or the server stops
                await response.write(sse(*change))
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        finally:
            self.view.unsubscribe(changes)
        with contextlib.suppress(Exception):
            await response.write_eof()
        return response

    def routes(self) -> list[tuple[str, Handler]]:
        """(path, handler) of every endpoint."""
        return [
            *((path, self.page) for path in ASSETS),
            ("/wallboard/", self.page),
            ("/api/queues", self.queues),
            ("/api/live", self.live),
        ]


def live_topics(topic: Any) -> dict[str, str]:
    """kind → topic name under TOPIC_PREFIX (`topic` is Settings.topic)."""
    return {"queue": topic("queue-live"), "agent": topic("agent-status")}


async def serve(host: str, port: int, topics: dict[str, str], options: dict[str, Any]) -> None:
    """`stream-app wallboard`: the endpoints without a worker, until cancelled."""
    view = LiveView()
    board = Wallboard(view)
    app = web.Application()
    for path, handler in board.routes():
        app.router.add_get(path, handler)

    async def health(request: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok", "loaded": view.loaded})

    app.router.add_get("/health", health)
    reader = asyncio.create_task(LiveReader(view, topics, options).run())
    runner = web.AppRunner(app, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("wallboard: http://%s:%d/wallboard", host, port)
    try:
        await asyncio.Event().wait()
    finally:
        view.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await runner.cleanup()
