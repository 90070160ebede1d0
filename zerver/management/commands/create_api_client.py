"""``./manage.py create_api_client NAME``: a new API client; its key is printed once."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from zerver.models import ApiClient


class Command(BaseCommand):
    help = "Create an API client and print its key (stored hashed: it cannot be shown again)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="the application's name")

    def handle(self, *args: Any, **options: Any) -> None:
        client, key = ApiClient.create(options["name"])
        self.stderr.write(f"Created API client {client.name!r} (id {client.pk}). Its key, shown only now:")
        self.stdout.write(key)
