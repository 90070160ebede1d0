"""Mobile push end to end: the API, RabbitMQ, the push worker, the bouncer over real HTTP, and the
APNs, FCM and Expo fakes driven by aioapns, firebase-admin and requests."""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bouncer.models import RemotePushDevice
from tests.helpers import running, wait_for
from workers.base import get_worker
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE, get_queue_client
from zerver.models import Notification, PushDevice

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]

APP = "com.example.notifications"


def apns_token(n: int) -> str:
    return f"{n:064x}"


def fcm_token(n: int) -> str:
    return f"fcm-{n:04d}:" + "A" * 140


def expo_token(n: int) -> str:
    return f"ExponentPushToken[device-{n}]"


def register(api, user_id, platform, token, app_id=APP):
    body = {"user_id": user_id, "platform": platform, "token": token, "app_id": app_id}
    response = api.post("/api/v1/devices", data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 201), response.content
    return response.json()


def push(api, user_id, **content):
    body = {"type": "push", "recipient": user_id, "content": content or {"title": "Ann", "body": "Lunch?"}}
    response = api.post("/api/v1/notifications/send", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def settled(api, notification_id):
    def done():
        body = api.get(f"/api/v1/notifications/{notification_id}/status").json()
        return body if body["status"] in ("sent", "failed") else None

    return wait_for(done, what=f"notification {notification_id} settled")


def push_worker():
    return running(get_worker(MOBILE_NOTIFICATIONS_QUEUE))


def test_a_device_of_each_platform_receives_the_push(api, bouncer, providers, caplog):
    caplog.set_level(logging.DEBUG)
    tokens = {"apns": apns_token(1), "fcm": fcm_token(1), "expo": expo_token(1)}
    for platform, token in tokens.items():
        assert register(api, "7", platform, token)["token"] != token  # shown masked
    notification_id = push(api, "7", title="Ann", body="Lunch?", badge=2, data={"room": "r1"})

    with push_worker():
        result = settled(api, notification_id)

    assert result["status"] == "sent"
    assert sorted((a["provider"], a["outcome"]) for a in result["attempts"]) == [
        ("apns", "sent"),
        ("expo", "sent"),
        ("fcm", "sent"),
    ]
    [apns] = providers.apns.control.received("notification", tokens["apns"])
    assert apns["headers"]["apns-topic"] == APP
    assert apns["headers"]["apns-push-type"] == "alert"
    assert apns["headers"]["apns-priority"] == "10"
    assert apns["payload"]["aps"] == {"alert": {"title": "Ann", "body": "Lunch?"}, "badge": 2}
    assert apns["payload"]["room"] == "r1" and apns["payload"]["notification_id"] == notification_id
    [fcm] = providers.fcm.control.received("message", tokens["fcm"])
    assert fcm["body"]["message"]["notification"] == {"title": "Ann", "body": "Lunch?"}
    assert fcm["body"]["message"]["data"]["notification_id"] == notification_id
    [expo] = providers.expo.control.received("notification", tokens["expo"])
    assert {a["provider"]: a["provider_id"] for a in result["attempts"]}["expo"] == expo["id"]  # the ticket
    assert (expo["message"]["title"], expo["message"]["body"], expo["message"]["badge"]) == ("Ann", "Lunch?", 2)
    for token in tokens.values():
        assert token not in caplog.text


def test_dead_tokens_are_expired_and_never_used_again(api, bouncer, providers):
    dead = {"apns": apns_token(2), "fcm": fcm_token(2), "expo": expo_token(2)}
    for platform, token in dead.items():
        register(api, "8", platform, token)
    register(api, "8", "expo", expo_token(3))  # one healthy device
    providers.apns.control.add_rule(match=dead["apns"], error="Unregistered")
    providers.fcm.control.add_rule(match=dead["fcm"], error="UNREGISTERED")
    providers.expo.control.add_rule(match=dead["expo"], error="DeviceNotRegistered")

    with push_worker():
        first = settled(api, push(api, "8"))
        second = settled(api, push(api, "8"))

    assert first["status"] == "sent"
    assert sorted(a["outcome"] for a in first["attempts"]) == [
        "sent",
        "token_expired",
        "token_expired",
        "token_expired",
    ]
    assert PushDevice.objects.filter(user_id="8", expired_at__isnull=False).count() == 3
    assert not RemotePushDevice.objects.filter(
        device_id__in=[d.pk for d in PushDevice.objects.filter(user_id="8", expired_at__isnull=False)]
    ).exists()
    assert [a["outcome"] for a in second["attempts"]] == ["sent"]
    assert len(providers.apns.control.received("notification", dead["apns"])) == 1
    assert len(providers.fcm.control.received("message", dead["fcm"])) == 1
    assert len(providers.expo.control.received("notification", dead["expo"])) == 1


def test_provider_503_then_200_delivers_exactly_once_on_retry(api, bouncer, providers):
    token = apns_token(4)
    register(api, "9", "apns", token)
    providers.apns.control.add_rule(match=token, status=503, times=1)

    with push_worker():
        result = settled(api, push(api, "9"))

    assert result["status"] == "sent"
    assert [a["outcome"] for a in result["attempts"]] == ["retry", "sent"]
    records = providers.apns.control.received("notification", token)
    assert [r["outcome"] for r in records] == ["ServiceUnavailable", "ok"]
    # The retry is the same push to APNs: the same apns-id, derived from the notification and the device.
    assert records[0]["headers"]["apns-id"] == records[1]["headers"]["apns-id"] == result["attempts"][1]["provider_id"]


def test_fcm_503_is_retried_by_our_policy_and_every_try_is_an_attempt(api, bouncer, providers):
    token = fcm_token(4)
    register(api, "9", "fcm", token)
    providers.fcm.control.add_rule(match=token, status=503, times=2)

    with push_worker():
        result = settled(api, push(api, "9"))

    assert result["status"] == "sent"
    # Not hidden inside firebase-admin's HTTP session: each refused try is a retry attempt of ours.
    assert [a["outcome"] for a in result["attempts"]] == ["retry", "retry", "sent"]
    assert len(providers.fcm.control.received("message", token)) == 3


class AlwaysFails(BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_bouncer_answering_500_makes_the_worker_retry_later_not_drop(api, bouncer, providers, settings, live_server):
    token = expo_token(5)
    register(api, "10", "expo", token)
    broken = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysFails)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    try:
        with push_worker():
            # The device registration goes through; then the bouncer breaks.
            wait_for(lambda: RemotePushDevice.objects.exists(), what="the registration")
            settings.PUSH_BOUNCER_URL = f"http://127.0.0.1:{broken.server_port}"
            notification_id = push(api, "10")
            wait_for(lambda: Notification.objects.get(pk=notification_id).status == "retrying", what="a retry")
            settings.PUSH_BOUNCER_URL = live_server.url
            result = settled(api, notification_id)
    finally:
        broken.shutdown()

    assert result["status"] == "sent"
    outcomes = [(a["provider"], a["outcome"]) for a in result["attempts"]]
    assert outcomes[0] == ("bouncer", "retry") and outcomes[-1] == ("expo", "sent")
    assert len(providers.expo.control.received("notification", token)) == 1


def test_oversized_payload_is_truncated_and_delivered(api, bouncer, providers):
    token = apns_token(6)
    register(api, "11", "apns", token)

    with push_worker():
        result = settled(api, push(api, "11", title="Long", body="é" * 6000))

    assert result["status"] == "sent"
    [apns] = providers.apns.control.received("notification", token)
    assert len(json.dumps(apns["payload"], ensure_ascii=False).encode()) <= 4096
    assert apns["payload"]["aps"]["alert"]["body"].endswith("…")


def test_remove_event_reaches_each_provider_as_a_data_push(api, bouncer, providers):
    tokens = {"apns": apns_token(7), "fcm": fcm_token(7), "expo": expo_token(7)}
    for platform, token in tokens.items():
        register(api, "12", platform, token)

    with push_worker():
        get_queue_client().publish(
            MOBILE_NOTIFICATIONS_QUEUE,
            [{"type": "remove", "client_id": api.client_row.pk, "user_id": "12", "message_ids": [31, 32]}],
        )
        wait_for(lambda: providers.expo.control.received("notification", tokens["expo"]), what="the remove push")
        wait_for(lambda: providers.apns.control.received("notification", tokens["apns"]), what="APNs remove")
        wait_for(lambda: providers.fcm.control.received("message", tokens["fcm"]), what="FCM remove")

    [apns] = providers.apns.control.received("notification", tokens["apns"])
    assert apns["headers"]["apns-push-type"] == "background" and apns["headers"]["apns-priority"] == "5"
    assert apns["payload"] == {"aps": {"content-available": 1}, "event": "remove", "message_ids": [31, 32]}
    [fcm] = providers.fcm.control.received("message", tokens["fcm"])
    assert fcm["body"]["message"]["data"] == {"event": "remove", "message_ids": "31,32"}
    assert "notification" not in fcm["body"]["message"]
    [expo] = providers.expo.control.received("notification", tokens["expo"])
    assert expo["message"]["data"] == {"event": "remove", "message_ids": [31, 32]} and "body" not in expo["message"]


def test_four_shards_deliver_to_400_users_exactly_once(api, bouncer, providers, settings, broker, caplog):
    caplog.set_level(logging.INFO)
    settings.SHARDED_QUEUES = {**settings.SHARDED_QUEUES, MOBILE_NOTIFICATIONS_QUEUE: 4}
    shards = [f"{MOBILE_NOTIFICATIONS_QUEUE}_shard{n}" for n in range(1, 5)]
    for name in shards:
        broker.delete(name)
    for user in range(400):
        register(api, user, "expo", expo_token(1000 + user))
    ids = [push(api, user) for user in range(400)]

    try:
        with running(*(get_worker(MOBILE_NOTIFICATIONS_QUEUE, worker_num=n) for n in range(1, 5))):
            wait_for(lambda: Notification.objects.filter(status="sent").count() == 400, timeout=60, what="400 sent")
    finally:
        for name in shards:
            broker.delete(name)

    assert Notification.objects.filter(pk__in=ids, status="sent").count() == 400
    received = providers.expo.control.received("notification")
    assert sorted(r["key"] for r in received) == sorted(expo_token(1000 + u) for u in range(400))
    # Logged masked (its kind and length), never whole.
    assert not [u for u in range(400) if expo_token(1000 + u) in caplog.text]
    assert "Expo…(" in caplog.text


def test_late_device_not_registered_receipt_expires_the_token(api, bouncer, providers):
    from bouncer.service import check_expo_receipts
    from fakes.expo import RECEIPT_PREFIX

    token = expo_token(8)
    device_id = register(api, "13", "expo", token)["id"]
    providers.expo.control.add_rule(match=token, error=RECEIPT_PREFIX + "DeviceNotRegistered")

    with push_worker():
        first = settled(api, push(api, "13"))
        assert check_expo_receipts(min_age_seconds=0) == 1
        second = settled(api, push(api, "13"))

    assert first["status"] == "sent"  # Expo took it; only the receipt tells
    assert [a["outcome"] for a in second["attempts"]] == ["token_expired"]
    assert second["status"] == "failed" and "no active device" not in second["error"]
    assert PushDevice.objects.get(pk=device_id).expired_at is not None
    assert len(providers.expo.control.received("notification", token)) == 1


def test_apns_certificate_auth_delivers(providers, settings):
    """The backend with a client certificate instead of a .p8 key (mTLS), against the fake."""
    from zerver.lib.push.apns import ApnsBackend
    from zerver.lib.push.common import DELIVERED, PushMessage

    settings.APNS_AUTH_KEY_FILE = ""
    backend = ApnsBackend()
    token = apns_token(9)

    [result] = backend.send([PushMessage("d1", token, APP, {"title": "T", "body": "certificate"})])

    assert result.outcome == DELIVERED
    [record] = providers.apns.control.received("notification", token)
    assert record["auth"] == "certificate" and "authorization" not in record["headers"]


def test_3000_error_bodies_on_one_apns_connection_do_not_stall_it(providers, settings):
    """aioapns acknowledges no response data; without our flow-control credit the 64 KiB window runs out."""
    from zerver.lib.push.apns import ApnsBackend
    from zerver.lib.push.common import EXPIRED, PushMessage

    settings.PUSH_PROVIDER_TIMEOUT = 5
    backend = ApnsBackend()
    backend.client.pool.max_connections = 1  # every answer on one connection
    providers.apns.control.add_rule(status=410, error="Unregistered")  # ~60-byte bodies: 3000 are ~180 KB
    messages = [PushMessage(str(n), apns_token(50_000 + n), APP, {"title": "T", "body": "b"}) for n in range(3000)]

    results = backend.send(messages)

    assert {r.outcome for r in results} == {EXPIRED}
    assert len(providers.apns.control.received("notification")) == 3000  # each dead token tried once


def test_expo_tickets_without_a_receipt_for_a_day_are_closed_as_unknown(api, bouncer, providers, settings):
    from datetime import timedelta

    from django.utils import timezone

    from bouncer.models import ExpoTicket
    from bouncer.service import check_expo_receipts, expo_receipts

    register(api, "14", "expo", expo_token(14))
    with push_worker():
        settled(api, push(api, "14"))
    [ticket] = ExpoTicket.objects.all()
    ExpoTicket.objects.filter(pk=ticket.pk).update(created_at=timezone.now() - timedelta(days=2))
    unknown = expo_receipts.labels("unknown")
    before = unknown._value.get()

    assert check_expo_receipts(min_age_seconds=0) == 0

    assert not ExpoTicket.objects.exists()
    assert unknown._value.get() == before + 1
    assert providers.expo.control.received("receipts") == []  # closed without asking Expo again


def test_a_push_to_a_user_without_devices_fails_with_an_attempt_and_is_counted(api, bouncer, providers):
    from workers import metrics

    failed = metrics.notifications_failed.labels(MOBILE_NOTIFICATIONS_QUEUE, "none")
    before = failed._value.get()

    with push_worker():
        result = settled(api, push(api, "nobody"))

    assert result["status"] == "failed" and result["error"] == "the user has no active device"
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [("none", "failed")]
    assert failed._value.get() == before + 1


def test_a_push_refused_by_every_device_is_dead_lettered_and_counted(api, providers, broker):
    """The push worker's dead_lettered hook runs (it was once a stray function nobody called)."""
    from workers import metrics
    from zerver.lib.queue import dlq_name

    token = expo_token(20)
    register(api, "20", "expo", token)
    providers.expo.control.add_rule(match=token, error="InvalidCredentials")
    before = metrics.value("notifications_dead_lettered_total", MOBILE_NOTIFICATIONS_QUEUE, provider="push")

    with push_worker():
        result = settled(api, push(api, "20"))
        wait_for(lambda: broker.message_count(dlq_name(MOBILE_NOTIFICATIONS_QUEUE)) == 1, what="the dead letter")
        wait_for(
            lambda: (
                metrics.value("notifications_dead_lettered_total", MOBILE_NOTIFICATIONS_QUEUE, provider="push")
                == before + 1
            ),
            what="the dead-lettered counter",
        )

    assert result["status"] == "failed" and "InvalidCredentials" in result["error"]
