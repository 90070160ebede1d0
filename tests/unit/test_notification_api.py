"""The notification API as a client application sees it (Django's test client, MariaDB)."""

import json

import pytest
from model_bakery import baker

from zerver.models import ApiClient, Attempt, Notification, OutboxEvent, Status, Template

pytestmark = pytest.mark.django_db


def send(api, body, raw=None):
    return api.post(
        "/api/v1/notifications/send", data=raw if raw is not None else json.dumps(body), content_type="application/json"
    )


def test_send_stores_a_pending_notification_and_its_outbox_event(api):
    response = send(api, {"type": "email", "recipient": "ann@example.com", "subject": "Hi", "content": "Hello!"})

    assert response.status_code == 202
    notification = Notification.objects.get(pk=response.json()["id"])
    assert (notification.status, notification.recipient, notification.content) == (
        "pending",
        "ann@example.com",
        "Hello!",
    )
    [outbox] = OutboxEvent.objects.all()
    assert (outbox.queue_name, outbox.event) == (
        "email_notifications",
        {"notification_id": str(notification.pk), "expires_at": notification.expires_at.timestamp()},
    )
    # An e-mail's default deadline is a day after acceptance.
    assert (notification.expires_at - notification.created_at).total_seconds() == pytest.approx(86400, abs=5)


def test_push_event_carries_the_user_id_for_sharding(api):
    response = send(api, {"type": "push", "recipient": 42, "content": {"title": "Hi", "body": "there"}})
    assert response.status_code == 202
    [outbox] = OutboxEvent.objects.all()
    assert outbox.queue_name == "missedmessage_mobile_notifications"
    assert {k: v for k, v in outbox.event.items() if k != "expires_at"} == {
        "notification_id": response.json()["id"],
        "user_id": "42",
    }


def test_template_is_rendered_with_its_variables(api):
    baker.make(
        Template,
        client=api.client_row,
        name="reset",
        subject="Reset for {{ name }}",
        text="Code: {{ code }}",
        html="<b>{{ code }}</b>",
    )
    response = send(
        api, {"type": "email", "recipient": "a@b.co", "template": "reset", "variables": {"name": "Ann", "code": "<7>"}}
    )
    assert response.status_code == 202
    notification = Notification.objects.get(pk=response.json()["id"])
    assert (notification.subject, notification.content, notification.html) == (
        "Reset for Ann",
        "Code: <7>",
        "<b>&lt;7&gt;</b>",
    )


def test_template_on_disk_is_found(api):
    response = send(
        api,
        {"type": "email", "recipient": "a@b.co", "template": "welcome", "variables": {"name": "Bo", "product": "Ping"}},
    )
    assert response.status_code == 202
    notification = Notification.objects.get(pk=response.json()["id"])
    assert notification.subject == "Welcome to Ping, Bo!"
    assert "your Ping account is ready" in notification.content
    assert "<b>Ping</b>" in notification.html


def test_sms_segments_are_recorded(api):
    response = send(api, {"type": "sms", "recipient": "+14155550100", "content": "x" * 161})
    assert response.json()["details"] == {"encoding": "GSM-7", "length": 161, "segments": 2}


def test_same_idempotency_key_returns_the_first_notification(api):
    body = {"type": "sms", "recipient": "+14155550100", "content": "Your code is 1234", "idempotency_key": "k1"}
    first, second = send(api, body), send(api, body)
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"] and second.json()["duplicate"] is True
    assert Notification.objects.count() == OutboxEvent.objects.count() == 1


def test_idempotency_keys_belong_to_their_client(api, client):
    body = {"type": "sms", "recipient": "+14155550100", "content": "hi", "idempotency_key": "same"}
    first = send(api, body)
    _, other_key = ApiClient.create("other")
    second = client.post(
        "/api/v1/notifications/send",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {other_key}",
    )
    assert second.status_code == 202 and second.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"type": "fax", "recipient": "x", "content": "hi"}, "type", "must be one of email, sms, push"),
        ({"type": "email", "recipient": "not-an-address", "content": "hi"}, "recipient", "not a valid e-mail"),
        ({"type": "sms", "recipient": "0155 555", "content": "hi"}, "recipient", "E.164"),
        ({"type": "push", "recipient": None, "content": "hi"}, "recipient", "user id"),
        ({"type": "email", "recipient": "a@b.co", "template": "nope"}, "template", "unknown template 'nope'"),
        (
            {"type": "email", "recipient": "a@b.co", "template": "welcome", "variables": {"name": "A"}},
            "variables",
            "product",
        ),
        ({"type": "sms", "recipient": "+14155550100", "content": "x" * 1601}, "content", "too long"),
        ({"type": "email", "recipient": "a@b.co"}, "content", "either 'content' or 'template'"),
        (
            {"type": "push", "recipient": "7", "content": {"title": "t", "colour": "red"}},
            "content",
            "unknown push field",
        ),
        (
            {"type": "push", "recipient": "7", "content": {"badge": "one", "body": "b"}},
            "content",
            "'badge' must be a int",
        ),
        ({"type": "email", "recipient": "a@b.co", "content": "hi", "idempotency_key": 5}, "idempotency_key", "string"),
        ({"type": "email", "recipient": "a@b.co", "content": "hi", "priority": 1}, "priority", "unknown field"),
    ],
)
def test_invalid_request_is_a_400_naming_the_field(api, body, field, says):
    response = send(api, body)
    assert response.status_code == 400
    assert says in response.json()["fields"][field]
    assert Notification.objects.count() == OutboxEvent.objects.count() == 0


@pytest.mark.parametrize(("raw", "says"), [("{not json", "not valid JSON"), ("[1]", "JSON object")])
def test_body_that_is_not_a_json_object_is_a_400(api, raw, says):
    response = send(api, None, raw=raw)
    assert response.status_code == 400
    assert says in response.json()["error"]
    assert "body" in response.json()["fields"]


def test_missing_or_wrong_key_is_a_401(client):
    body = json.dumps({"type": "sms", "recipient": "+14155550100", "content": "hi"})
    no_key = client.post("/api/v1/notifications/send", data=body, content_type="application/json")
    bad_key = client.post(
        "/api/v1/notifications/send", data=body, content_type="application/json", HTTP_AUTHORIZATION="Bearer nk_x_y"
    )
    assert no_key.status_code == bad_key.status_code == 401
    assert no_key["WWW-Authenticate"].startswith("Bearer")
    assert Notification.objects.count() == 0


def test_revoked_key_is_a_401(client):
    row, key = ApiClient.create("old")
    row.revoked_at = row.created_at
    row.save()
    response = client.get(f"/api/v1/notifications/{'0' * 32}/status", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 401


def test_status_shows_the_attempt_history(api):
    notification = baker.make(Notification, client=api.client_row, type="email", recipient="a@b.co", content="x")
    notification.transition(Status.PROCESSING)
    baker.make(Attempt, notification=notification, provider="smtp", outcome="retry", error="SMTP 421 busy")
    notification.transition(Status.RETRYING)

    response = api.get(f"/api/v1/notifications/{notification.pk}/status")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "retrying"
    assert [(a["provider"], a["outcome"], a["error"]) for a in body["attempts"]] == [("smtp", "retry", "SMTP 421 busy")]


def test_another_clients_notification_is_a_404(api):
    other = baker.make(Notification, type="email", recipient="a@b.co", content="x")
    assert api.get(f"/api/v1/notifications/{other.pk}/status").status_code == 404


def test_status_transitions_are_enforced(db):
    notification = baker.make(Notification, type="email", recipient="a@b.co", content="x")
    assert notification.transition(Status.PROCESSING)
    assert notification.transition(Status.SENT)
    assert notification.sent_at is not None
    assert not notification.transition(Status.PROCESSING)
    assert not notification.transition(Status.FAILED)
    assert notification.status == "sent"


def test_create_api_client_prints_a_working_key(capsys):
    from django.core.management import call_command

    call_command("create_api_client", "billing")
    key = capsys.readouterr().out.strip()
    assert ApiClient.authenticate(key).name == "billing"
    assert key not in ApiClient.objects.get(name="billing").key_hash


def test_ttl_sets_the_deadline_and_bad_ttls_are_named(api):
    response = send(api, {"type": "sms", "recipient": "+14155550100", "content": "code 1", "ttl": 90})
    assert response.status_code == 202
    notification = Notification.objects.get(pk=response.json()["id"])
    assert (notification.expires_at - notification.created_at).total_seconds() == pytest.approx(90, abs=5)

    for ttl in (0, -5, "60", True, 30 * 86400):
        response = send(api, {"type": "sms", "recipient": "+14155550100", "content": "x", "ttl": ttl})
        assert response.status_code == 400
        assert set(response.json()["fields"]) == {"ttl"}
