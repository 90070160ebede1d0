"""``./manage.py generate_secrets [--env-file PATH] [--force]``: a fresh set of the deployment's own secrets.

Prints (or writes, mode 0600) ``SECRET_KEY``, ``PUSH_TOKEN_KEYS`` and
``PUSH_TOKEN_HASH_KEY`` as ``NAME=value`` lines for the host's secrets (an
EnvironmentFile, docker's env_file, hiera). An existing file is kept unless
``--force``: replacing the push token keys of a running deployment makes its
stored tokens unreadable (rotate them with ``rotate_token_keys`` instead).
"""

import os
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from zerver.lib.secrets import env_lines, new_secrets


class Command(BaseCommand):
    help = "Print, or write to an env file, fresh values for SECRET_KEY, PUSH_TOKEN_KEYS and PUSH_TOKEN_HASH_KEY."
    requires_system_checks: list[str] = []  # it makes the secrets the checks ask for

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--env-file", metavar="PATH", help="write them to this file (mode 0600) instead")
        parser.add_argument("--force", action="store_true", help="overwrite an existing --env-file")

    def handle(self, *args: Any, **options: Any) -> None:
        lines = env_lines(new_secrets())
        if not options["env_file"]:
            self.stdout.write(lines, ending="")
            return
        path = Path(options["env_file"])
        if path.exists() and not options["force"]:
            raise CommandError(f"{path} exists; keeping it (--force replaces it, and with it the push token keys)")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(lines)
        os.chmod(path, 0o600)
        self.stderr.write(f"wrote {path}")
