"""``./manage.py bench``: measure end-to-end delivery on this machine; fail if anything is lost or sent twice.

Needs RabbitMQ and the database up (MariaDB for several workers: SQLite locks).
Starts the provider fakes, the workers (one per shard) and, with
``--bouncer http``, the bouncer as a separate web process.
"""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from zerver.lib import bench


class Command(BaseCommand):
    help = "End-to-end benchmark: publish N notifications, deliver them to the fakes, print the figures."
    # A run has a database of its own and secrets of its own (zerver.lib.bench gives them to its processes).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--count", type=int, default=1000, help="notifications to send (default 1000)")
        parser.add_argument("--mode", choices=["push", "email", "sms"], default="push")
        parser.add_argument(
            "--providers",
            default="expo,apns,fcm",
            help="push platforms and weights, e.g. expo=2,apns=1 (default: equal)",
        )
        parser.add_argument("--workers", type=int, default=1, help="worker processes; for push, one per shard")
        parser.add_argument(
            "--bouncer", choices=["local", "http"], default="local", help="in-process, or a web process"
        )
        parser.add_argument("--faults", type=float, default=0.0, help="share of provider requests that fail (429/503)")
        parser.add_argument(
            "--rate", type=float, default=0.0, help="publish at this many per second (default: flat out)"
        )
        parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for delivery")
        parser.add_argument("--json", action="store_true", help="print the figures as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            mix = bench.parse_mix(options["providers"])
        except ValueError as e:
            raise CommandError(str(e)) from None
        run_options = bench.Options(
            count=options["count"],
            mode=options["mode"],
            mix=mix,
            workers=options["workers"],
            bouncer=options["bouncer"],
            faults=options["faults"],
            rate=options["rate"],
            timeout=options["timeout"],
        )
        bars: dict[str, tqdm] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if options["json"]:
                return
            bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc=stage, unit="notif", leave=True))
            bar.update(done - bar.n)

        result = bench.run(run_options, progress)
        for bar in bars.values():
            bar.close()
        figures = bench.report(result)
        if options["json"]:
            self.stdout.write(bench.as_json(figures))
        else:
            for key, value in figures.items():
                self.stdout.write(f"{key:>30}: {value}")
        if figures["problems"]:
            raise CommandError("; ".join(figures["problems"]))
