"""Run the provider fakes in the foreground: ``./manage.py fakes [--env-file var/fakes.env]``.

Prints each endpoint as an environment line (``APNS_HOST=127.0.0.1``,
``EXPO_URL=http://...``...), which a shell can ``source`` or the development
stack can read from ``--env-file``. SIGTERM or SIGINT stops them cleanly.
"""

import asyncio
import signal
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from fakes.runner import PORT_NAMES, Fakes


class Command(BaseCommand):
    help = "Run local fakes of APNs, FCM, Expo, SMTP and SMS, printing their endpoints as environment lines."
    requires_system_checks: list[str] = []  # a development tool: it runs beside production settings, not on them

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--env-file", metavar="PATH", help="also write the environment lines to this file")
        parser.add_argument(
            "--record-limit", type=int, default=10_000, help="full records kept per fake (counters are always kept)"
        )
        for name in PORT_NAMES:
            flag = "--" + name.replace("_", "-") + "-port"
            parser.add_argument(flag, dest=f"{name}_port", type=int, default=0, help=f"{name} port (default: free)")

    def handle(self, *args: Any, **options: Any) -> None:
        ports = {name: options[f"{name}_port"] for name in PORT_NAMES if options[f"{name}_port"]}
        fakes = Fakes(options["record_limit"])

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            try:
                await fakes.start(options["host"], ports)
                self.announce(fakes.env(), options["env_file"])
                await stop.wait()
            finally:
                await fakes.astop()

        asyncio.run(main())
        self.stderr.write("fakes stopped")

    def announce(self, env: dict[str, str], env_file: str | None) -> None:
        lines = "".join(f"{key}={value}\n" for key, value in env.items())
        if env_file:
            path = Path(env_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(lines)
        self.stdout.write(lines, ending="")
        self.stdout.flush()
