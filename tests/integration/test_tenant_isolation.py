"""Tenant isolation: two API clients with the same user ids, every endpoint and channel, nothing crosses.

Each test runs the real service (API, RabbitMQ, the workers, MariaDB) against
the provider fakes, which record what they received; the assertions check that
only the right tokens, addresses and numbers got anything. Tests that push run
twice: with the bouncer in the worker's process and over real HTTP.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from tests.conftest import with_api_key
from tests.helpers import running, wait_for
from workers.base import get_worker
from workers.fan_out import MESSAGE_NOTIFICATIONS_QUEUE
from zerver.actions import operations
from zerver.lib.api import ApiError
from zerver.lib.queue import (
    EMAIL_NOTIFICATIONS_QUEUE,
    MOBILE_NOTIFICATIONS_QUEUE,
    SMS_NOTIFICATIONS_QUEUE,
    dlq_name,
    get_queue_client,
)
from zerver.models import Notification, Template

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]

APP = "com.example.notifications"


def expo_token(name: str) -> str:
    return f"ExponentPushToken[{name}]"


def device_tokens(n: int) -> dict[str, str]:
    """A token of each platform, different for each ``n``."""
    return {"apns": f"{n:064x}", "fcm": f"fcm-{n:04d}:" + "A" * 140, "expo": expo_token(f"device-{n}")}


def pushes(providers: Any) -> list[tuple[str, str, Any]]:
    """Every push the fakes received: (platform, token, title or the removed message ids)."""
    out = []
    for r in providers.apns.control.received("notification"):
        aps = r["payload"]["aps"]
        out.append(("apns", r["key"], aps["alert"]["title"] if "alert" in aps else r["payload"]["message_ids"]))
    for r in providers.fcm.control.received("message"):
        message = r["body"]["message"]
        out.append(
            (
                "fcm",
                r["key"],
                message["notification"]["title"] if "notification" in message else message["data"]["message_ids"],
            )
        )
    for r in providers.expo.control.received("notification"):
        message = r["message"]
        out.append(("expo", r["key"], message.get("title") or message["data"]["message_ids"]))
    return sorted(out, key=str)


def workers() -> Any:
    """Every worker a notification can pass through: fan-out, push, e-mail and SMS."""
    names = (
        MESSAGE_NOTIFICATIONS_QUEUE,
        MOBILE_NOTIFICATIONS_QUEUE,
        EMAIL_NOTIFICATIONS_QUEUE,
        SMS_NOTIFICATIONS_QUEUE,
    )
    return running(*(get_worker(name) for name in names))


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


def test_pushes_and_removes_reach_only_the_devices_of_the_clients_own_user(a, b, bouncer_mode, providers):
    """Both clients have a user "1" with a device on each platform; each push goes to its client's only."""
    tokens = {"A": device_tokens(1), "B": device_tokens(2)}
    for app, name in ((a, "A"), (b, "B")):
        Template.objects.create(client=app.client_row, name="alert", subject="{{ who }}", text="from {{ who }}")
        for platform, token in tokens[name].items():
            register(app, "1", platform, token)
    ids = {
        "A": send(a, type="push", recipient="1", template="alert", variables={"who": "A"}),
        "B": send(b, type="push", recipient="1", content={"title": "B", "body": "hello"}),
    }

    with workers():
        results = {name: settled(app, ids[name]) for app, name in ((a, "A"), (b, "B"))}
        remove = {"type": "remove", "client_id": a.client_row.pk, "user_id": "1", "message_ids": [7]}
        get_queue_client().publish(MOBILE_NOTIFICATIONS_QUEUE, [remove])
        wait_for(lambda: len(pushes(providers)) == 9, what="the remove on A's three devices")

    assert {name: r["status"] for name, r in results.items()} == {"A": "sent", "B": "sent"}
    assert all(len(r["attempts"]) == 3 for r in results.values())
    assert pushes(providers) == sorted(
        [(p, t, "A") for p, t in tokens["A"].items()]
        + [(p, t, "B") for p, t in tokens["B"].items()]
        + [(p, t, [7] if p != "fcm" else "7") for p, t in tokens["A"].items()],
        key=str,
    )


def test_device_endpoints_list_and_delete_only_the_callers_devices(a, b, bouncer_mode, providers):
    """The same phone in both applications is two devices; B unregistering its own leaves A's."""
    shared = expo_token("shared")
    own = register(a, "1", "expo", shared)
    assert b.get("/api/v1/devices?user_id=1").json() == {"devices": []}
    assert b.delete(f"/api/v1/devices/{own['id']}").status_code == 404
    theirs = register(b, "1", "expo", shared)
    assert theirs["id"] != own["id"]
    assert [d["id"] for d in b.get("/api/v1/devices?user_id=1").json()["devices"]] == [theirs["id"]]
    assert b.delete(f"/api/v1/devices/{theirs['id']}").status_code == 200
    assert [d["id"] for d in a.get("/api/v1/devices?user_id=1").json()["devices"]] == [own["id"]]

    with workers():
        from_b = settled(b, send(b, type="push", recipient="1", content="from B"))
        from_a = settled(a, send(a, type="push", recipient="1", content="from A"))

    assert (from_a["status"], from_b["status"]) == ("sent", "failed")
    assert from_b["error"] == "the user has no active device"
    assert [r["message"]["body"] for r in providers.expo.control.received("notification", shared)] == ["from A"]


@pytest.mark.parametrize("channel", ["push", "email", "sms"])
def test_status_cancel_retry_and_idempotency_keys_are_the_callers_own(a, b, channel):
    recipient = {"push": "1", "email": "ann@example.com", "sms": "+14155550100"}[channel]
    body = {"type": channel, "recipient": recipient, "content": "hi", "idempotency_key": "order-1"}
    mine, theirs = send(a, **body), send(b, **body)  # the same key: two notifications, one each

    assert mine != theirs
    again = call(a, "post", "/api/v1/notifications/send", body).json()
    assert (again["id"], again["duplicate"]) == (mine, True)
    unknown = b.get(f"/api/v1/notifications/{uuid.uuid4()}/status")
    for app, other in ((a, theirs), (b, mine)):
        response = app.get(f"/api/v1/notifications/{other}/status")
        # As unknown as an id that never existed: nothing tells that it does.
        assert (response.status_code, response.json()) == (404, unknown.json())
    for act in (operations.cancel, operations.retry):
        with pytest.raises(ApiError) as refused:
            act(b.client_row, mine)
        assert refused.value.status == 404
    Notification.objects.filter(pk=mine).update(status="failed")
    with pytest.raises(ApiError) as refused:
        operations.retry(b.client_row, mine)  # retryable now, but still not B's
    assert refused.value.status == 404
    assert operations.cancel(b.client_row, theirs).status == "cancelled"
    assert operations.retry(a.client_row, mine).status == "pending"
    assert Notification.objects.get(pk=mine).status == "pending"


def test_each_client_renders_its_own_template_of_a_name_by_email_and_sms(a, b, providers):
    c = with_api_key(Client())
    for app, name in ((a, "A"), (b, "B")):
        Template.objects.create(
            client=app.client_row, name="welcome", subject="{{ user }} at " + name, text=name + " welcomes {{ user }}"
        )
    Template.objects.create(client=a.client_row, name="secret", text="A only {{ user }}")
    variables = {"user": "Ann", "name": "Ann", "product": "Ping"}
    for app, name, n in ((a, "A", 1), (b, "B", 2), (c, "C", 3)):
        send(app, type="email", recipient=f"{name}@example.com", template="welcome", variables=variables)
        send(app, type="sms", recipient=f"+1415555010{n}", template="welcome", variables=variables)
    refused = call(
        b,
        "post",
        "/api/v1/notifications/send",
        {"type": "sms", "recipient": "+14155550102", "template": "secret", "variables": variables},
    )
    assert refused.status_code == 400 and "template" in refused.json()["fields"]

    with workers():
        wait_for(lambda: Notification.objects.filter(status="sent").count() == 6, what="six sent")

    mails = {r["key"]: (r["subject"], r["text"].strip()) for r in providers.smtp.control.received("message")}
    assert mails == {
        "A@example.com": ("Ann at A", "A welcomes Ann"),
        "B@example.com": ("Ann at B", "B welcomes Ann"),
        "C@example.com": ("Welcome to Ping, Ann!", mails["C@example.com"][1]),  # the built-in on disk
    }
    assert "your Ping account is ready" in mails["C@example.com"][1]
    texts = {r["key"]: r["form"]["Body"] for r in providers.sms.control.received("message")}
    assert texts["+14155550101"] == "A welcomes Ann" and texts["+14155550102"] == "B welcomes Ann"
    assert "your Ping account is ready" in texts["+14155550103"] and len(texts) == 3


def settings_of(app: Client, user_id: str, **body: Any) -> None:
    response = call(app, "put", f"/api/v1/users/{user_id}/settings", body)
    assert response.status_code == 200, response.content


def test_fan_out_follows_each_clients_own_user_settings_and_devices(a, b, bouncer_mode, providers):
    """The same message id and user ids in both clients: each fans out by its own settings only."""
    xa, xb = expo_token("A1"), expo_token("B1")
    settings_of(a, "1", email="a1@example.com")
    settings_of(b, "1", email="b1@example.com", push_enabled=False)
    register(a, "1", "expo", xa)
    register(b, "1", "expo", xb)
    for app, name in ((a, "Ann"), (b, "Bo")):
        message = {
            "message_id": "m-1",
            "sender_id": "2",
            "recipient_ids": ["1", "2"],
            "message_content": "hi from " + name,
            "sender_info": {"display_name": name},
        }
        assert call(app, "post", "/api/v1/messages", message).status_code == 202

    with workers():
        wait_for(lambda: Notification.objects.filter(status="sent").count() == 3, what="three sent")
        wait_for(lambda: get_queue_client().message_count(MESSAGE_NOTIFICATIONS_QUEUE) == 0, what="fan-out done")

    assert Counter(Notification.objects.values_list("client_id", "type")) == Counter(
        {(a.client_row.pk, "push"): 1, (a.client_row.pk, "email"): 1, (b.client_row.pk, "email"): 1}
    )
    assert pushes(providers) == [("expo", xa, "Ann")]
    mails = {r["key"]: r["text"] for r in providers.smtp.control.received("message")}
    assert set(mails) == {"a1@example.com", "b1@example.com"}
    assert "hi from Ann" in mails["a1@example.com"] and "hi from Bo" in mails["b1@example.com"]


def replay_dead_letters(broker: Any, queue: str, count: int) -> None:
    """Wait for ``count`` dead letters of ``queue``, then ``./manage.py dlq replay`` them."""
    wait_for(lambda: broker.message_count(dlq_name(queue)) == count, what=f"{count} dead letters")
    out = StringIO()
    call_command("dlq", "replay", "--queue", queue, stdout=out)
    assert f"replayed {count} events" in out.getvalue()


def test_replayed_dead_letters_of_both_clients_reach_only_their_own_devices(a, b, bouncer_mode, providers, broker):
    """Each client's push to its user "1" is refused once for good, dead-lettered, and replayed together."""
    x, y = expo_token("X"), expo_token("Y")
    register(a, "1", "expo", x)
    register(b, "1", "expo", y)
    for token in (x, y):
        providers.expo.control.add_rule(match=token, error="InvalidCredentials", times=1)
    queue = MOBILE_NOTIFICATIONS_QUEUE

    with running(get_worker(queue)):
        ids = {app: send(app, type="push", recipient="1", content=f"for {name}") for app, name in ((a, "A"), (b, "B"))}
        assert {settled(app, i)["status"] for app, i in ids.items()} == {"failed"}
        replay_dead_letters(broker, queue, 2)
        wait_for(lambda: all(settled(app, i)["status"] == "sent" for app, i in ids.items()), what="both sent")

    for token, body in ((x, "for A"), (y, "for B")):
        received = providers.expo.control.received("notification", token)
        assert [(r["outcome"], r["message"]["body"]) for r in received] == [("InvalidCredentials", body), ("ok", body)]


@pytest.mark.parametrize(
    ("channel", "queue", "recipients"),
    [
        ("email", EMAIL_NOTIFICATIONS_QUEUE, ("ann@example.com", "bo@example.com")),
        ("sms", SMS_NOTIFICATIONS_QUEUE, ("+14155550111", "+14155550122")),
    ],
)
def test_replayed_email_and_sms_dead_letters_keep_their_clients(a, b, providers, broker, channel, queue, recipients):
    """Refused for good once each, dead-lettered, replayed: each client's own message to its own recipient."""
    fake = providers.smtp if channel == "email" else providers.sms
    for recipient in recipients:
        fake.control.add_rule(match=recipient, status=550 if channel == "email" else 400, times=1)
    sent = {}
    with running(get_worker(queue)):
        for app, name, recipient in ((a, "A", recipients[0]), (b, "B", recipients[1])):
            sent[app] = send(app, type=channel, recipient=recipient, subject="Hi", content=f"{name} says hi")
        assert {settled(app, i)["status"] for app, i in sent.items()} == {"failed"}
        replay_dead_letters(broker, queue, 2)
        wait_for(lambda: all(settled(app, i)["status"] == "sent" for app, i in sent.items()), what="both sent")

    assert b.get(f"/api/v1/notifications/{sent[a]}/status").status_code == 404
    delivered = [r for r in fake.control.received("message") if r["outcome"] == "ok"]
    bodies = {r["key"]: (r["text"] if channel == "email" else r["form"]["Body"]).strip() for r in delivered}
    assert len(delivered) == 2
    assert bodies == {recipients[0]: "A says hi", recipients[1]: "B says hi"}
