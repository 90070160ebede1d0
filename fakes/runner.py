"""Start every fake together: in a background thread (tests, benchmarks) or in the foreground.

::

    fakes = start_fakes()            # free ports on 127.0.0.1, own event loop thread
    fakes.expo.url, fakes.apns.ca_file, fakes.fcm.service_account, fakes.env()
    fakes.expo.control.add_rule(match=token, error="DeviceNotRegistered")
    fakes.stop()

``./manage.py fakes`` runs them in the foreground instead (``Fakes.start`` in its own loop).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from fakes.apns import ApnsFake
from fakes.base import Fake
from fakes.control import DEFAULT_RECORD_LIMIT
from fakes.expo import ExpoFake
from fakes.fcm import FcmFake
from fakes.sms import SmsFake
from fakes.smtp import SmtpFake

# Names of the ports that may be fixed; 0 (the default) takes a free one.
PORT_NAMES = ("apns", "apns_control", "fcm", "expo", "smtp", "smtp_control", "sms")


@dataclass
class Fakes:
    """The five fakes; when started by :func:`start_fakes`, also the thread running them."""

    record_limit: int = DEFAULT_RECORD_LIMIT
    apns: ApnsFake = field(init=False)
    fcm: FcmFake = field(init=False)
    expo: ExpoFake = field(init=False)
    smtp: SmtpFake = field(init=False)
    sms: SmsFake = field(init=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, init=False, repr=False)
    thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.apns = ApnsFake(self.record_limit)
        self.fcm = FcmFake(self.record_limit)
        self.expo = ExpoFake(self.record_limit)
        self.smtp = SmtpFake(self.record_limit)
        self.sms = SmsFake(self.record_limit)

    @property
    def all(self) -> list[Fake]:
        return [self.apns, self.fcm, self.expo, self.smtp, self.sms]

    async def start(self, host: str = "127.0.0.1", ports: Mapping[str, int] | None = None) -> None:
        ports = ports or {}
        unknown = set(ports) - set(PORT_NAMES)
        if unknown:
            raise ValueError(f"unknown ports {sorted(unknown)}; known: {PORT_NAMES}")
        await self.apns.start(host, ports.get("apns", 0), ports.get("apns_control", 0))
        await self.fcm.start(host, ports.get("fcm", 0))
        await self.expo.start(host, ports.get("expo", 0))
        await self.smtp.start(host, ports.get("smtp", 0), ports.get("smtp_control", 0))
        await self.sms.start(host, ports.get("sms", 0))

    async def astop(self) -> None:
        for fake in self.all:
            await fake.stop()

    def stop(self) -> None:
        """Stop the fakes and, if :func:`start_fakes` started them, their thread."""
        if self.loop is None or self.thread is None:
            raise RuntimeError("not started by start_fakes(); await astop() instead")
        asyncio.run_coroutine_threadsafe(self.astop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop = self.thread = None

    def env(self) -> dict[str, str]:
        """Every endpoint and credential, as the environment variables the service reads."""
        env: dict[str, str] = {}
        for fake in self.all:
            env.update(fake.env())
        return env

    def reset(self) -> None:
        """Forget every fake's rules, records and counters."""
        for fake in self.all:
            fake.control.reset()

    # Shortcuts for fixtures.
    @property
    def fcm_service_account(self) -> dict[str, str]:
        return self.fcm.service_account


def start_fakes(
    host: str = "127.0.0.1", ports: Mapping[str, int] | None = None, record_limit: int = DEFAULT_RECORD_LIMIT
) -> Fakes:
    """Start every fake in an event loop on a daemon thread of this process; return them, running."""
    fakes = Fakes(record_limit)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fakes", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(fakes.start(host, ports), loop).result(timeout=30)
    except BaseException:
        asyncio.run_coroutine_threadsafe(fakes.astop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        raise
    fakes.loop, fakes.thread = loop, thread
    return fakes
