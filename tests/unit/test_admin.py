"""The Django admin as staff use it (Django's test client, MariaDB)."""

import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from model_bakery import baker

from workers import metrics
from zerver.lib.masking import mask
from zerver.lib.push import tokens
from zerver.models import (
    ApiClient,
    Attempt,
    Notification,
    OutboxEvent,
    PushDevice,
    Status,
    Template,
    UserSettings,
    WorkerHeartbeat,
)

pytestmark = pytest.mark.django_db

MODELS = [ApiClient, Notification, Template, UserSettings, OutboxEvent, WorkerHeartbeat, PushDevice]


@pytest.fixture
def staff(client):
    user = User.objects.create_user("ops", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def url(model, view: str, *args) -> str:
    from django.urls import reverse

    return reverse(f"admin:zerver_{model._meta.model_name}_{view}", args=args)


def test_every_zerver_model_is_registered():
    registered = {m for m in admin.site._registry if m._meta.app_label == "zerver"}
    assert registered == set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_changelist_and_change_page_load(staff, model):
    extra = {
        OutboxEvent: {"event": {"notification_id": "x"}},
        PushDevice: {"platform": "expo", "token_ciphertext": tokens.encrypt("ExponentPushToken[a]")},
    }
    obj = baker.make(model, **extra.get(model, {}))
    if model is Notification:
        baker.make(Attempt, notification=obj, provider="smtp", outcome="retry", error="SMTP 421")

    assert staff.get(url(model, "changelist")).status_code == 200
    page = staff.get(url(model, "change", obj.pk))
    assert page.status_code == 200
    if model is Notification:
        assert b"SMTP 421" in page.content  # the attempt inline


def test_non_staff_user_is_sent_to_login(client):
    client.force_login(User.objects.create_user("someone", password="pw"))
    for path in ["/admin/", url(Notification, "changelist"), url(Notification, "dead_letters")]:
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], path


def test_creating_an_api_client_shows_its_key_once(staff):
    response = staff.post(url(ApiClient, "add"), {"name": "chat"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    key = re.search(rb'id="api-key"[^>]*>(nk_[^<]+)<', response.content).group(1).decode()
    client = ApiClient.objects.get(name="chat")
    assert ApiClient.authenticate(key) == client
    assert key not in str(client.__dict__)
    assert key.encode() not in staff.get(url(ApiClient, "change", client.pk)).content


def test_revoke_action(staff):
    client, key = ApiClient.create("old")
    response = staff.post(url(ApiClient, "changelist"), {"action": "revoke", "_selected_action": [client.pk]})
    assert response.status_code == 302
    assert ApiClient.authenticate(key) is None


def test_retry_selected_failed_moves_them_to_pending_and_queues_them(staff):
    failed = baker.make(Notification, type="email", status=Status.FAILED, error="SMTP 550", content="x")
    sent = baker.make(Notification, type="email", status=Status.SENT, content="x")

    staff.post(url(Notification, "changelist"), {"action": "retry_failed", "_selected_action": [failed.pk, sent.pk]})

    failed.refresh_from_db()
    sent.refresh_from_db()
    assert (failed.status, failed.error, sent.status) == (Status.PENDING, "", Status.SENT)
    [event] = OutboxEvent.objects.all()
    assert (event.queue_name, event.event) == ("email_notifications", {"notification_id": str(failed.pk)})


def test_cancel_selected_pending(staff):
    cancelled = metrics.notifications_cancelled.labels("sms_notifications")
    before = cancelled._value.get()
    pending = baker.make(Notification, type="sms", status=Status.PENDING, content="x")
    sent = baker.make(Notification, type="sms", status=Status.SENT, content="x")

    staff.post(url(Notification, "changelist"), {"action": "cancel_pending", "_selected_action": [pending.pk, sent.pk]})

    assert Notification.objects.get(pk=pending.pk).status == Status.CANCELLED
    assert Notification.objects.get(pk=sent.pk).status == Status.SENT
    assert cancelled._value.get() == before + 1  # counted, like every final state


def test_notification_search_by_recipient_or_id_and_filter_by_status_or_client(staff):
    ann = baker.make(Notification, recipient="ann@example.com", status=Status.FAILED, content="x")
    bob = baker.make(Notification, recipient="bob@example.com", status=Status.SENT, content="x")

    def listed(**query) -> set:
        response = staff.get(url(Notification, "changelist"), query)
        return {n.pk for n in response.context["cl"].result_list}

    assert listed(q="ann@") == {ann.pk}
    assert listed(q=str(bob.pk)) == {bob.pk}
    assert listed(status__exact="failed") == {ann.pk}
    assert listed(client__id__exact=str(bob.client_id)) == {bob.pk}


def test_push_devices_list_and_page_show_the_token_masked(staff):
    token = "cd" * 32
    device = PushDevice(client=baker.make(ApiClient), user_id="42", platform="apns", app_id="com.example.app")
    device.token = token
    device.save()

    listing = staff.get(url(PushDevice, "changelist"), {"platform__exact": "apns", "q": "42"})
    page = staff.get(url(PushDevice, "change", device.pk))

    for response in (listing, page):
        assert response.status_code == 200
        assert token.encode() not in response.content
        assert mask(token).encode() == b"cdcd\xe2\x80\xa6(64)" and mask(token).encode() in response.content


def test_bouncer_devices_show_the_token_masked(staff):
    from bouncer.models import RemotePushDevice, RemoteServer

    server, _ = RemoteServer.create("a.example.com")
    device = RemotePushDevice(server=server, device_id="1", user_id="7", platform="expo", app_id="p")
    device.token = "ExponentPushToken[secret-device]"
    device.save()
    page = staff.get(f"/admin/bouncer/remotepushdevice/{device.pk}/change/")
    assert page.status_code == 200 and b"secret-device" not in page.content


def test_notifications_are_read_only_but_for_their_actions(staff):
    notification = baker.make(Notification, type="email", status=Status.FAILED, error="SMTP 550 gone", content="x")
    baker.make(Attempt, notification=notification, provider="smtp", outcome="failed", provider_id="msg-77")

    page = staff.get(url(Notification, "change", notification.pk)).content.decode()
    assert 'name="_save"' not in page and "Delete" not in page
    assert "msg-77" in page  # the provider's id in the attempts
    assert staff.post(url(Notification, "change", notification.pk), {"status": "sent"}).status_code == 403
    listing = staff.get(url(Notification, "changelist")).content.decode()
    assert "delete_selected" not in listing
    assert "SMTP 550 gone" in listing  # the error, and the attempt count, in the list
    assert re.search(r'<td class="field-attempt_count">1</td>', listing)
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", listing)  # timestamps to the second
    assert "Notification service" in staff.get("/admin/").content.decode()  # not "Zerver"


def test_resend_makes_a_new_notification_linked_to_the_sent_one(staff):
    sent = baker.make(Notification, type="sms", recipient="+14155550100", status=Status.SENT, content="code 1")
    failed = baker.make(Notification, type="sms", status=Status.FAILED, content="x")

    staff.post(url(Notification, "changelist"), {"action": "resend_sent", "_selected_action": [sent.pk, failed.pk]})

    [copy] = Notification.objects.exclude(pk__in=[sent.pk, failed.pk])
    assert (copy.status, copy.recipient, copy.content) == (Status.PENDING, "+14155550100", "code 1")
    assert copy.details["resent_from"] == str(sent.pk) and copy.expires_at is not None
    assert OutboxEvent.objects.get().event["notification_id"] == str(copy.pk)


def test_queues_page_counts_expired_and_stranded_notifications(staff, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.REAPER_STRANDED_SECONDS = 600
    baker.make(Notification, type="push", status=Status.EXPIRED, content={}, _quantity=2)
    stuck = baker.make(Notification, type="push", status=Status.RETRYING, content={})
    Notification.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(seconds=700))

    page = staff.get(url(Notification, "dead_letters")).content.decode()

    assert re.search(r"expired \(deadline passed\)</th><td><a [^>]*>2</a>", page)
    assert re.search(r"stranded [^<]*</th><td>1</td>", page)
