"""Fixtures for tests that run the whole service: API, broker, workers, bouncer and fakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings

from tests.conftest import with_api_key
from zerver.lib import outbox
from zerver.lib.queue import (
    EMAIL_NOTIFICATIONS_QUEUE,
    MOBILE_NOTIFICATIONS_QUEUE,
    SMS_NOTIFICATIONS_QUEUE,
    get_queue_client,
    shard_queue_names,
)

SERVICE_QUEUES = [
    EMAIL_NOTIFICATIONS_QUEUE,
    SMS_NOTIFICATIONS_QUEUE,
    MOBILE_NOTIFICATIONS_QUEUE,
    "message_notifications",
]


@pytest.fixture
def providers(fakes, settings) -> Any:
    """Settings pointing every provider (SMTP, SMS, APNs, FCM, Expo) at the fakes, as ``./manage.py fakes`` prints."""
    for name, value in fakes.env().items():
        if hasattr(django_settings, name):
            current = getattr(django_settings, name)
            setattr(settings, name, type(current)(value) if isinstance(current, (int, float)) else value)
    settings.SMS_FROM_NUMBER = "+15005550006"
    settings.DEFAULT_FROM_EMAIL = "alerts@example.com"
    return fakes


@pytest.fixture
def service_queues(broker) -> Iterator[None]:
    """The service's queues, empty at the start and deleted at the end."""

    def clean() -> None:
        for queue in SERVICE_QUEUES:
            for name in {queue, *shard_queue_names(queue)}:
                broker.delete(name)

    clean()
    yield
    get_queue_client().close()
    clean()


@pytest.fixture
def bouncer(live_server, settings, providers) -> Any:
    """The bouncer as a separate service over HTTP (Django's live server), with the fakes' credentials."""
    from bouncer.models import RemoteServer

    server, key = RemoteServer.create("push.example.com")
    settings.PUSH_BOUNCER_URL = live_server.url
    settings.PUSH_BOUNCER_SERVER_UUID = str(server.uuid)
    settings.PUSH_BOUNCER_API_KEY = key
    return server


@pytest.fixture(params=["local", "http"])
def bouncer_mode(request: pytest.FixtureRequest, providers) -> str:
    """Each test using it runs twice: with the bouncer in the worker's process, and over real HTTP."""
    if request.param == "http":
        request.getfixturevalue("bouncer")
    return request.param


@pytest.fixture
def api(client, transactional_db) -> Any:
    """Django's test client holding a fresh API key (real commits, so after-commit publishing runs)."""
    outbox._skip_direct_until = 0.0  # a broker-down test before must not leave publishing to the relay
    return with_api_key(client)
