"""``./manage.py check_expo_receipts [--loop SECONDS]``: catch tokens Expo found dead after accepting a push."""

import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from bouncer.service import check_expo_receipts
from zerver.checks import require_production_settings


class Command(BaseCommand):
    help = "Read Expo push receipts and expire the devices they call DeviceNotRegistered."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--loop", type=float, metavar="SECONDS", help="check again every SECONDS, forever")

    def handle(self, *args: Any, **options: Any) -> None:
        require_production_settings()
        stop = threading.Event()
        if options["loop"]:
            # Under supervisord or systemd: SIGTERM finishes the check in hand, then exits 0.
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            signal.signal(signal.SIGINT, lambda *_: stop.set())
        while not stop.is_set():
            expired = check_expo_receipts()
            self.stdout.write(f"expired {expired} devices")
            if not options["loop"]:
                return
            stop.wait(options["loop"])
