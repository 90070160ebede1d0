"""What every fake shares: a :class:`Controller`, a start/stop life cycle, and its endpoints as env lines."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from fakes.control import DEFAULT_RECORD_LIMIT, Controller, add_control_routes
from zerver.lib.masking import mask as mask  # the fakes record whole tokens, but log them only masked


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """Retry-After is whole seconds on the wire (clients such as urllib3 parse only integers)."""
    return {} if seconds is None else {"Retry-After": str(max(0, round(seconds)))}


class Fake:
    """A provider fake: serves on ``host:port`` in the running event loop until :meth:`stop`."""

    name = "fake"

    def __init__(self, record_limit: int = DEFAULT_RECORD_LIMIT) -> None:
        self.control = Controller(self.name, record_limit)
        self.host = "127.0.0.1"
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        """Base URL of the ``/_fake/`` control API."""
        return self.url

    def env(self) -> dict[str, str]:
        """The settings a client needs, as environment variables."""
        raise NotImplementedError


async def serve_app(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Run an aiohttp app on ``host:port`` (0: a free port); return its runner and the port bound."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, bound


class HttpFake(Fake):
    """A fake speaking HTTP/1.1 with aiohttp (keep-alive, fast enough for the benchmark)."""

    def __init__(self, record_limit: int = DEFAULT_RECORD_LIMIT) -> None:
        super().__init__(record_limit)
        self._runner: web.AppRunner | None = None

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        add_control_routes(app, self.control)
        self.add_routes(app)
        self.host = host
        self._runner, self.port = await serve_app(app, host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @staticmethod
    async def pause(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
