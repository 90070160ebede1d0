"""``./manage.py rotate_token_keys [--batch-size N]``: every stored push token re-encrypted under the newest key.

Key rotation: put a new key first in ``PUSH_TOKEN_KEYS`` (the old one second),
restart, run this, then drop the old key. It re-encrypts the server's devices
(``PushDevice``) and the bouncer's (``RemotePushDevice``) in batches, skips rows
already under the newest key (so it can be run again, or after an interruption)
and prints the counts. The lookup hash (``PUSH_TOKEN_HASH_KEY``) is not touched.
"""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from bouncer.models import RemotePushDevice
from zerver.lib.push.tokens import rotate_rows
from zerver.models import PushDevice


class Command(BaseCommand):
    help = "Re-encrypt every stored push token under the first of PUSH_TOKEN_KEYS, so older keys can be dropped."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        for model in (PushDevice, RemotePushDevice):
            rotated, current = rotate_rows(model.objects.all(), options["batch_size"])
            self.stdout.write(f"{model.__name__}: re-encrypted {rotated}, already under the newest key {current}")
