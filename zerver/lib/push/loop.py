"""An asyncio event loop on a daemon thread, for the async provider clients of a synchronous worker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """Runs coroutines on one loop that lives as long as the process.

    Async clients (aioapns, httpx) keep the loop they were made in, so a
    backend makes its client on this loop once and sends every batch there.
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name=name, daemon=True).start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout)
