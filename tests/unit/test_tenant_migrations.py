"""The migrations that gave existing rows their API client: bouncer devices and templates.

Each test migrates the real test database back to before the migration,
makes the rows an older deployment had, migrates forward, and looks at what
every row became. The schema is left at the latest migration afterwards.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from zerver.lib.push import tokens
from zerver.lib.push.bouncer_client import LOCAL_SERVER_UUID

BOUNCER_BEFORE, BOUNCER_AFTER = ("bouncer", "0001_initial"), ("bouncer", "0002_remotepushdevice_client")
TEMPLATES_BEFORE, TEMPLATES_AFTER = ("zerver", "0006_apiclient_rate_limits"), ("zerver", "0007_template_client")

_numbers = itertools.count(1)
Migrate = Callable[[tuple[str, str]], Any]


@pytest.fixture
def migrate(transactional_db) -> Iterator[Migrate]:
    """``migrate((app, name))`` moves the database there and returns the apps registry of that state."""

    def to(target: tuple[str, str]) -> Any:
        MigrationExecutor(connection).migrate([target])
        loader = MigrationExecutor(connection).loader
        applied = [node for node in loader.applied_migrations if node in loader.graph.nodes]
        return loader.project_state(applied).apps

    yield to
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def api_client(apps: Any, name: str) -> Any:
    return apps.get_model("zerver", "ApiClient").objects.create(name=name, key_lookup=name[:16], key_hash="0" * 64)


def expo_device(apps: Any, model: str, **fields: Any) -> Any:
    """A row of ``model`` ("app.Model", a device table) of user "1", with an Expo token of its own."""
    token = f"ExponentPushToken[{next(_numbers)}]"
    return apps.get_model(model).objects.create(
        user_id="1",
        platform="expo",
        app_id="app",
        token_ciphertext=tokens.encrypt(token),
        token_hash=tokens.token_hash(token),
        **fields,
    )


def test_local_bouncer_devices_take_their_server_rows_client_and_remote_ones_go(migrate):
    apps = migrate(BOUNCER_BEFORE)
    a, b = api_client(apps, "a"), api_client(apps, "b")
    servers = apps.get_model("bouncer", "RemoteServer").objects
    local = servers.create(uuid=LOCAL_SERVER_UUID, hostname="local", api_key_hash="0" * 64)
    remote = servers.create(hostname="push.example.com", api_key_hash="1" * 64)
    of_a, of_b = expo_device(apps, "zerver.PushDevice", client=a), expo_device(apps, "zerver.PushDevice", client=b)
    for server, device_id in ((local, of_a.pk), (local, of_b.pk), (local, of_b.pk + 1000), (remote, 77)):
        # The third's server row is gone; the fourth's client is in another database.
        expo_device(apps, "bouncer.RemotePushDevice", server=server, device_id=str(device_id))

    apps = migrate(BOUNCER_AFTER)

    rows = apps.get_model("bouncer", "RemotePushDevice").objects.order_by("device_id")
    assert sorted(rows.values_list("server__hostname", "device_id", "client_id")) == sorted(
        [("local", str(of_a.pk), str(a.pk)), ("local", str(of_b.pk), str(b.pk))]
    )


def test_templates_go_to_the_clients_that_used_them_each_its_own_copy(migrate):
    apps = migrate(TEMPLATES_BEFORE)
    a, b = api_client(apps, "a"), api_client(apps, "b")
    Template = apps.get_model("zerver", "Template")
    Template.objects.create(name="welcome", subject="Hi", text="Welcome {{ name }}")
    Template.objects.create(name="reset", text="Your code {{ code }}")
    Template.objects.create(name="unused", text="nobody sent me")
    Notification = apps.get_model("zerver", "Notification")
    for client, template in ((a, "welcome"), (b, "welcome"), (b, "welcome"), (b, "reset")):
        Notification.objects.create(
            client=client, type="email", recipient="x@example.com", content="", template=template
        )

    apps = migrate(TEMPLATES_AFTER)

    rows = apps.get_model("zerver", "Template").objects.all()
    assert sorted((t.name, t.client_id, t.text) for t in rows) == sorted(
        [
            ("welcome", a.pk, "Welcome {{ name }}"),
            ("welcome", b.pk, "Welcome {{ name }}"),
            ("reset", b.pk, "Your code {{ code }}"),
            ("unused", None, "nobody sent me"),
        ],
        key=str,
    )


def test_with_one_client_every_template_becomes_its(migrate):
    apps = migrate(TEMPLATES_BEFORE)
    only = api_client(apps, "only")
    Template = apps.get_model("zerver", "Template")
    for name in ("welcome", "unused"):
        Template.objects.create(name=name, text=name)

    apps = migrate(TEMPLATES_AFTER)

    rows = apps.get_model("zerver", "Template").objects.all()
    assert sorted(rows.values_list("name", "client_id")) == [("unused", only.pk), ("welcome", only.pk)]


def test_going_back_keeps_one_template_of_each_name(migrate):
    apps = migrate(TEMPLATES_AFTER)
    a, b = api_client(apps, "a"), api_client(apps, "b")
    Template = apps.get_model("zerver", "Template")
    first = Template.objects.create(client=a, name="welcome", text="A's")
    Template.objects.create(client=b, name="welcome", text="B's")

    apps = migrate(TEMPLATES_BEFORE)

    rows = apps.get_model("zerver", "Template").objects.all()
    assert list(rows.values_list("pk", "name", "text")) == [(first.pk, "welcome", "A's")]
