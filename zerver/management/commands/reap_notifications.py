"""``./manage.py reap_notifications``: one round of the reaper now (``outbox_relay`` runs it on its own)."""

from typing import Any

from django.core.management.base import BaseCommand

from zerver.lib.reaper import oldest_unfinished, reap_once


class Command(BaseCommand):
    help = "Expire unfinished notifications past their deadline and publish stranded ones again."

    def handle(self, *args: Any, **options: Any) -> None:
        result = reap_once()
        self.stdout.write(f"expired {result.expired}, published again {dict(result.republished) or 0}")
        for status, age in oldest_unfinished().items():
            self.stdout.write(f"oldest {status}: {age:.0f} s")
