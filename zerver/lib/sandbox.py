"""A RabbitMQ virtual host and a database of one's own, for the benchmark and the test suite.

Both make a fresh one, point the settings (and the environment, for the
processes they start) at it, and remove it afterwards. Whatever else lives on
the same broker or database server, a dev stack's queues and rows included,
is never touched: nothing here deletes anything it did not create.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import connections


class SandboxUnavailable(RuntimeError):
    """A private virtual host cannot be made here (no ``rabbitmqctl`` on this machine)."""


def can_make_vhosts() -> bool:
    return shutil.which("rabbitmqctl") is not None


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def private_vhost(prefix: str) -> Iterator[str]:
    """A new vhost ``<prefix>-<random>`` that ``RABBITMQ_URL`` names while the block runs; deleted after it."""
    if not can_make_vhosts():
        raise SandboxUnavailable(
            "a private RabbitMQ virtual host needs rabbitmqctl on this machine; run this where the broker runs"
        )
    vhost = f"{prefix}-{uuid.uuid4().hex[:12]}"
    saved = settings.RABBITMQ_URL
    parts = urlsplit(saved)
    user = unquote(parts.username or "guest")
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        settings.RABBITMQ_URL = os.environ["RABBITMQ_URL"] = parts._replace(path="/" + vhost).geturl()
        yield vhost
    finally:
        settings.RABBITMQ_URL = os.environ["RABBITMQ_URL"] = saved
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@contextmanager
def private_database(prefix: str, alias: str = "default") -> Iterator[str]:
    """A new, migrated database ``<prefix>_<random>`` that ``settings.DATABASES`` names while the block runs.

    Django's own test-database machinery makes and drops it, so it works on
    MariaDB, PostgreSQL and SQLite (a file beside the configured one) alike.
    """
    connection = connections[alias]
    suffix = uuid.uuid4().hex[:12]
    old_name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        name = str(settings.BASE_DIR / "var" / f"{prefix}-{suffix}.sqlite3")
    else:
        name = f"{prefix}_{suffix}"
    connection.settings_dict["TEST"] = {**connection.settings_dict.get("TEST", {}), "NAME": name}
    created = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield created
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
