"""``./manage.py register_push_devices [--client ID]``: register every active device with the bouncer again."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from zerver.actions.devices import register_all
from zerver.models import ApiClient


class Command(BaseCommand):
    help = (
        "Queue a bouncer registration of every active push device (the push worker sends them). "
        "Run it once after upgrading to per-client devices on the bouncer, or for a new bouncer."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--client", type=int, metavar="ID", help="only this API client's devices")

    def handle(self, *args: Any, **options: Any) -> None:
        client_id = options["client"]
        if client_id is not None and not ApiClient.objects.filter(pk=client_id).exists():
            raise CommandError(f"no API client {client_id}")
        self.stdout.write(f"queued {register_all(client_id)} device registrations")
