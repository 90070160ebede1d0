"""``./manage.py outbox_relay``: publish the events the API stored while RabbitMQ was away.

Runs beside the workers (one or more: they share the work). SIGTERM stops it.
"""

import signal
import threading
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from zerver.checks import require_production_settings
from zerver.lib.outbox import relay, relay_once


class Command(BaseCommand):
    help = "Publish outbox events that were not published when their request committed."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--once", action="store_true", help="publish what is waiting now, then exit")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls when idle")

    def handle(self, *args: Any, **options: Any) -> None:
        require_production_settings()
        if options["once"]:
            total = 0
            while published := relay_once(min_age_seconds=0):
                total += published
            self.stdout.write(f"published {total} events")
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        relay(stop, interval=options["interval"])
