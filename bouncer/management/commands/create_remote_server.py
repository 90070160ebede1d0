"""``./manage.py create_remote_server HOSTNAME``: let a deployment use this bouncer."""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from bouncer.models import RemoteServer


class Command(BaseCommand):
    help = "Register a remote server with the push bouncer and print its uuid and API key (shown once)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("hostname")

    def handle(self, *args: Any, **options: Any) -> None:
        server, key = RemoteServer.create(options["hostname"])
        self.stdout.write(f"PUSH_BOUNCER_SERVER_UUID={server.uuid}\nPUSH_BOUNCER_API_KEY={key}")
