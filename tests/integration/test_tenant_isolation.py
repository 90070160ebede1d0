"""Tenant isolation: two API clients with the same user ids, every endpoint and channel, nothing crosses.

Each test runs the real service (API, RabbitMQ, the workers, MariaDB) against
the provider fakes, which record what they received; the assertions check that
only the right tokens, addresses and numbers got anything. Tests that push run
twice: with the bouncer in the worker's process and over real HTTP.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.conftest import with_api_key
from tests.helpers import running, wait_for
from workers.base import get_worker
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]

APP = "com.example.notifications"


def expo_token(name: str) -> str:
    return f"ExponentPushToken[{name}]"


@pytest.fixture
def a(api) -> Client:
    """Client application A."""
    return api


@pytest.fixture
def b(api) -> Client:
    """Client application B, with user ids that are A's too."""
    return with_api_key(Client())


def call(app: Client, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body) if body is not None else None
    return getattr(app, method)(url, data=data, content_type="application/json")


def register(app: Client, user_id: str, platform: str, token: str) -> dict[str, Any]:
    body = {"user_id": user_id, "platform": platform, "token": token, "app_id": APP}
    response = call(app, "post", "/api/v1/devices", body)
    assert response.status_code in (200, 201), response.content
    return response.json()


def send(app: Client, **body: Any) -> str:
    response = call(app, "post", "/api/v1/notifications/send", body)
    assert response.status_code == 202, response.content
    return response.json()["id"]


def settled(app: Client, notification_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = app.get(f"/api/v1/notifications/{notification_id}/status").json()
        return body if body["status"] in ("sent", "failed") else None

    return wait_for(done, what=f"notification {notification_id} settled")


def test_a_push_to_user_1_of_client_b_never_reaches_user_1_of_client_a(a, b, bouncer_mode, providers):
    """The issue's repro: same user id, two clients, one push."""
    x, y = expo_token("X"), expo_token("Y")
    register(a, "1", "expo", x)
    register(b, "1", "expo", y)

    with running(get_worker(MOBILE_NOTIFICATIONS_QUEUE)):
        result = settled(b, send(b, type="push", recipient="1", content={"title": "B", "body": "for B's user 1"}))

    assert result["status"] == "sent"
    assert [a["provider"] for a in result["attempts"]] == ["expo"]
    assert len(providers.expo.control.received("notification", y)) == 1
    assert providers.expo.control.received("notification", x) == []
