"""The wallboard's endpoints on a worker's web server (Faust's), and the reader behind them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from faust.web import Request, Response, View

from stream_app.kafka_clients import client_options
from stream_app.wallboard.live_view import LiveReader, LiveView
from stream_app.wallboard.server import Handler, Wallboard, live_topics

if TYPE_CHECKING:
    from stream_app.app import Pipeline


def mount(pipeline: Pipeline) -> None:
    """The endpoints on the worker's web server, and the reader they show, run by the worker."""
    app, settings = pipeline.app, pipeline.settings
    view = LiveView()
    for path, handler in Wallboard(view).routes():
        app.page(path, name=f"wallboard{path.replace('/', '_')}")(_page(handler))
    reader = LiveReader(view, live_topics(settings.topic), client_options(settings))

    @app.task  # type: ignore[untyped-decorator]
    async def read_live_topics() -> None:
        await reader.run()

    async def close_streams(_: web.Application) -> None:
        view.close()  # open pages must not hold the worker's shutdown for a minute

    web_app: web.Application = app.web.web_app  # type: ignore[attr-defined]
    web_app.on_shutdown.append(close_streams)


def _page(handler: Handler) -> type[View]:
    class Page(View):  # type: ignore[misc]
        async def get(self, request: Request) -> Response:
            response: Any = await handler(request)  # type: ignore[arg-type]
            return response  # type: ignore[no-any-return]

    return Page
