"""``./manage.py check_expo_receipts [--loop SECONDS]``: catch tokens Expo found dead after accepting a push."""

import logging
import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from bouncer.service import check_expo_receipts
from zerver.checks import require_production_settings

logger = logging.getLogger(__name__)
MAX_PAUSE_SECONDS = 600.0


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
        if not options["loop"]:
            self.stdout.write(f"expired {check_expo_receipts()} devices")
            return
        pause = options["loop"]
        while not stop.is_set():
            try:
                expired = check_expo_receipts()
                pause = options["loop"]
                if expired:
                    logger.info("expired %d devices", expired)
            except Exception as e:  # Expo or the database failing must not end the loop: back off and try again
                pause = min(max(pause, options["loop"]) * 2, MAX_PAUSE_SECONDS)
                logger.warning("reading Expo receipts failed (%s); trying again in %.0f s", type(e).__name__, pause)
            stop.wait(pause)
