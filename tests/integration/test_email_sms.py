"""E-mail and SMS end to end: the API, RabbitMQ, the workers, MariaDB and the SMTP and SMS fakes."""

import json
from collections import Counter

import pytest

from tests.helpers import running, wait_for
from workers.base import get_worker
from zerver.lib import outbox
from zerver.lib.queue import get_queue_client
from zerver.models import Notification, OutboxEvent, Template, UserSettings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]


def send(api, **body):
    response = api.post("/api/v1/notifications/send", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def status(api, notification_id):
    return api.get(f"/api/v1/notifications/{notification_id}/status").json()


def settled(api, notification_id, expected=("sent", "failed")):
    return wait_for(lambda: status(api, notification_id)["status"] in expected and status(api, notification_id))


def test_email_through_the_api_arrives_rendered_and_ends_sent_with_one_attempt(api, providers):
    Template.objects.create(
        client=api.client_row,
        name="alert",
        subject="{{ n }} alerts",
        text="You have {{ n }} alerts.",
        html="<p>{{ n }}</p>",
    )
    notification_id = send(api, type="email", recipient="ann@example.com", template="alert", variables={"n": 3})

    with running(get_worker("email_notifications")):
        result = settled(api, notification_id)

    assert result["status"] == "sent"
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [("smtp", "sent")]
    [mail] = providers.smtp.control.received("message")
    assert mail["subject"] == "3 alerts"
    assert mail["text"].strip() == "You have 3 alerts."
    assert mail["html"].strip() == "<p>3</p>"
    assert mail["rcpt_tos"] == ["ann@example.com"]


def test_sms_through_the_api_arrives_and_ends_sent_with_one_attempt(api, providers):
    notification_id = send(api, type="sms", recipient="+14155550100", content="Your code is 123456")

    with running(get_worker("sms_notifications")):
        result = settled(api, notification_id)

    assert result["status"] == "sent"
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [("twilio", "sent")]
    assert result["details"]["segments"] == 1
    [sms] = providers.sms.control.received("message", "+14155550100")
    assert result["attempts"][0]["provider_id"] == sms["sid"]
    assert sms["form"]["Body"] == "Your code is 123456"
    assert sms["form"]["From"] == "+15005550006"


def test_smtp_421_then_success_ends_sent_with_two_attempts(api, providers):
    providers.smtp.control.add_rule(status=421, times=1)
    notification_id = send(api, type="email", recipient="bo@example.com", subject="Hi", content="Hello")

    with running(get_worker("email_notifications")):
        result = settled(api, notification_id, expected=("sent", "failed"))

    assert result["status"] == "sent"
    outcomes = [(a["outcome"], (a["error"] or "")[:8]) for a in result["attempts"]]
    assert outcomes == [("retry", "SMTP 421"), ("sent", "")]
    assert len(providers.smtp.control.received("message")) == 2  # the refused try, and the delivery


def test_permanent_smtp_failure_ends_failed_with_the_reason(api, providers):
    providers.smtp.control.add_rule(match="gone@example.com", status=550)
    notification_id = send(api, type="email", recipient="gone@example.com", subject="Hi", content="Hello")

    with running(get_worker("email_notifications")):
        result = settled(api, notification_id)

    assert result["status"] == "failed"
    assert result["error"].startswith("SMTP 550")
    assert [a["outcome"] for a in result["attempts"]] == ["failed"]


def test_sms_rate_limited_then_delivered(api, providers):
    providers.sms.control.add_rule(status=429, times=1, retry_after=0)
    notification_id = send(api, type="sms", recipient="+14155550101", content="hi")

    with running(get_worker("sms_notifications")):
        result = settled(api, notification_id)

    assert result["status"] == "sent"
    assert [a["outcome"] for a in result["attempts"]] == ["retry", "sent"]


def test_same_idempotency_key_twice_delivers_once(api, providers):
    body = {"type": "sms", "recipient": "+14155550102", "content": "once", "idempotency_key": "order-77"}
    first = send(api, **body)
    second = api.post("/api/v1/notifications/send", data=json.dumps(body), content_type="application/json")
    assert second.json()["id"] == first

    with running(get_worker("sms_notifications")):
        settled(api, first)

    assert Notification.objects.count() == 1
    assert len(providers.sms.control.received("message", "+14155550102")) == 1


def test_broker_down_loses_nothing_and_sends_nothing_twice(api, providers, settings):
    live_url = settings.RABBITMQ_URL
    settings.RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens there
    get_queue_client().close()
    ids = [send(api, type="sms", recipient=f"+1415555{n:04d}", content=f"message {n}") for n in range(100)]
    assert OutboxEvent.objects.count() == 100

    settings.RABBITMQ_URL = live_url
    get_queue_client().close()
    published = 0
    while batch := outbox.relay_once(min_age_seconds=0):
        published += batch
    assert published == 100 and OutboxEvent.objects.count() == 0

    with running(get_worker("sms_notifications")):
        wait_for(lambda: Notification.objects.filter(status="sent").count() == 100, what="100 sent")

    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    per_number = Counter(r["key"] for r in providers.sms.control.received("message"))
    assert len(per_number) == 100 and set(per_number.values()) == {1}
    assert {str(pk) for pk in Notification.objects.values_list("pk", flat=True)} == set(ids)


def test_republished_event_does_not_send_twice(api, providers):
    notification_id = send(api, type="sms", recipient="+14155550103", content="only once")
    with running(get_worker("sms_notifications")):
        settled(api, notification_id)
        # The relay (or a crash before the outbox row was deleted) publishes it again.
        get_queue_client().publish("sms_notifications", [{"notification_id": notification_id}])
        wait_for(lambda: get_queue_client().message_count("sms_notifications") == 0, what="the duplicate consumed")

    assert len(providers.sms.control.received("message", "+14155550103")) == 1
    assert [a["outcome"] for a in status(api, notification_id)["attempts"]] == ["sent"]


def test_fan_out_to_a_room_of_five_with_the_sender_inside_creates_four_notifications(api, providers):
    row = api.client_row
    for user in ("u2", "u3"):
        UserSettings.objects.create(client=row, user_id=user, email=f"{user}@example.com", push_enabled=False)
    message = {
        "message_id": "m-1",
        "sender_id": "u1",
        "recipient_ids": ["u1", "u2", "u3", "u4", "u5"],
        "message_content": "Hello room",
        "sender_info": {"display_name": "Ann"},
    }
    response = api.post("/api/v1/messages", data=json.dumps(message), content_type="application/json")
    assert response.status_code == 202

    with running(get_worker("message_notifications")):
        wait_for(lambda: Notification.objects.count() == 4, what="four notifications")
        # A redelivered event creates nothing more.
        get_queue_client().publish("message_notifications", [{**message, "type": "new_message", "client_id": row.pk}])
        wait_for(lambda: get_queue_client().message_count("message_notifications") == 0, what="the repeat consumed")

    kinds = sorted(Notification.objects.values_list("type", "recipient"))
    assert kinds == [("email", "u2@example.com"), ("email", "u3@example.com"), ("push", "u4"), ("push", "u5")]
    email = Notification.objects.get(recipient="u2@example.com")
    assert email.subject == "New message from Ann" and "Hello room" in email.content


def test_an_email_refused_until_its_deadline_ends_expired_with_the_reason(api, providers, settings):
    settings.DELIVERY_TTL_SECONDS = {**settings.DELIVERY_TTL_SECONDS, "email": 2.0}
    providers.smtp.control.add_rule(status=421)
    notification_id = send(api, type="email", recipient="later@example.com", subject="Hi", content="Hello")

    with running(get_worker("email_notifications")):
        result = settled(api, notification_id, expected=("expired",))

    # Either a retry would have come too late, or the last retry came after the deadline.
    assert result["error"].startswith(("expired after", "expired before it could be sent"))
    assert {(a["outcome"], a["error"][:8]) for a in result["attempts"]} == {("retry", "SMTP 421")}
    assert Notification.objects.get(pk=notification_id).status == "expired"


def test_a_header_injection_fails_that_email_alone_and_the_rest_of_its_batch_is_sent(api, providers):
    good = [send(api, type="email", recipient=f"u{n}@example.com", subject=f"Hi {n}", content="x") for n in range(5)]
    bad = Notification.objects.get(pk=send(api, type="email", recipient="evil@example.com", subject="ok", content="x"))
    Notification.objects.filter(pk=bad.pk).update(subject="Hi\r\nBcc: victim@example.com")  # as an old row might be

    with running(get_worker("email_notifications")):
        results = [settled(api, i) for i in good]
        bad_result = settled(api, str(bad.pk))

    assert [r["status"] for r in results] == ["sent"] * 5
    assert bad_result["status"] == "failed" and bad_result["error"].startswith("BadHeaderError")
    assert len(providers.smtp.control.received("message")) == 5  # each good one once, the bad one never
