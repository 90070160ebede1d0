"""Devices and the bouncer as a client application and a remote server see them."""

import base64
import json

import pytest
from django.db import connection
from model_bakery import baker

from bouncer.models import RemotePushDevice, RemoteServer
from zerver.lib.push import apns, tokens
from zerver.lib.push.common import DELIVERED, EXPIRED, FAILED, RETRY
from zerver.models import OutboxEvent, PushDevice

pytestmark = pytest.mark.django_db

APNS = "ab" * 32


def register(api, **body):
    body = {"user_id": "5", "platform": "apns", "token": APNS, "app_id": "com.example.app", **body}
    return api.post("/api/v1/devices", data=json.dumps(body), content_type="application/json")


def test_token_is_encrypted_in_the_database_and_masked_in_answers(api):
    response = register(api)
    assert response.status_code == 201
    assert APNS not in json.dumps(response.json())
    with connection.cursor() as cursor:
        cursor.execute("SELECT token_ciphertext, token_hash FROM zerver_pushdevice")
        [(ciphertext, token_hash)] = cursor.fetchall()
    assert APNS not in ciphertext and APNS not in token_hash
    assert PushDevice.objects.get().token == APNS


def test_registering_the_same_token_twice_is_idempotent(api):
    first, second = register(api), register(api, token=APNS.upper(), user_id="6")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert PushDevice.objects.get().user_id == "6"  # the phone changed hands
    assert [e.event["type"] for e in OutboxEvent.objects.all()] == ["register_push_device_to_bouncer"] * 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"token": "xyz"}, "token"),
        ({"token": "ab" * 10}, "token"),
        ({"platform": "expo", "token": "not-expo"}, "token"),
        ({"platform": "fcm", "token": "short"}, "token"),
        ({"platform": "blackberry"}, "platform"),
        ({"app_id": ""}, "app_id"),
        ({"user_id": None}, "user_id"),
    ],
)
def test_invalid_device_is_a_400_naming_the_field(api, body, field):
    response = register(api, **body)
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert not PushDevice.objects.exists()


def test_list_and_unregister(api):
    device_id = register(api).json()["id"]
    register(api, platform="expo", token="ExponentPushToken[abc]")
    listed = api.get("/api/v1/devices?user_id=5").json()["devices"]
    assert [d["platform"] for d in listed] == ["apns", "expo"]
    assert api.delete(f"/api/v1/devices/{device_id}").status_code == 200
    assert [d["platform"] for d in api.get("/api/v1/devices?user_id=5").json()["devices"]] == ["expo"]
    assert OutboxEvent.objects.last().event == {
        "type": "unregister_push_device_from_bouncer",
        "client_id": api.client_row.pk,
        "user_id": "5",
        "device_id": device_id,
    }


def test_another_clients_device_cannot_be_deleted(api):
    other = baker.make(PushDevice, platform="expo", token_ciphertext=tokens.encrypt("ExponentPushToken[x]"))
    assert api.delete(f"/api/v1/devices/{other.pk}").status_code == 404


def test_key_rotation_keeps_old_tokens_readable(settings):
    from cryptography.fernet import Fernet

    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.PUSH_TOKEN_KEYS = [old_key]
    ciphertext = tokens.encrypt(APNS)
    settings.PUSH_TOKEN_KEYS = [new_key, old_key]
    rotated = tokens.rotate(ciphertext)
    settings.PUSH_TOKEN_KEYS = [new_key]
    assert tokens.decrypt(rotated) == APNS


def bouncer_post(client, endpoint, body, server=None, key=None):
    headers = {}
    if server is not None:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{server.uuid}:{key}".encode()).decode()
    return client.post(
        f"/api/v1/remotes/push/{endpoint}", data=json.dumps(body), content_type="application/json", **headers
    )


def test_bouncer_refuses_an_unknown_server(client):
    server, _ = RemoteServer.create("a.example.com")
    assert bouncer_post(client, "notify", {"notifications": []}).status_code == 401
    assert bouncer_post(client, "notify", {"notifications": []}, server, "wrong").status_code == 401


def test_bouncer_registers_devices_encrypted_and_validates_them(client):
    server, key = RemoteServer.create("a.example.com")
    body = {
        "client_id": "3",
        "device_id": "1",
        "user_id": "5",
        "platform": "apns",
        "app_id": "com.example.app",
        "token": APNS,
    }
    assert bouncer_post(client, "register", body, server, key).status_code == 200
    assert bouncer_post(client, "register", body, server, key).status_code == 200
    device = RemotePushDevice.objects.get()
    assert APNS not in device.token_ciphertext and device.token == APNS
    assert device.client_id == "3"
    bad = bouncer_post(client, "register", {**body, "token": "nope"}, server, key)
    assert bad.status_code == 400 and "token" in bad.json()["fields"]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("register", {"device_id": "1", "user_id": "5", "platform": "apns", "app_id": "a", "token": APNS}),
        (
            "register",
            {"client_id": "", "device_id": "1", "user_id": "5", "platform": "apns", "app_id": "a", "token": APNS},
        ),
        ("unregister", {"device_id": "1"}),
        ("notify", {"notifications": [{"id": "n1", "user_id": "5", "payload": {"body": "hi"}}]}),
        ("notify", {"notifications": [{"id": "n1", "client_id": True, "user_id": "5", "payload": {"body": "hi"}}]}),
    ],
)
def test_bouncer_calls_without_a_client_are_a_400_naming_client_id(client, endpoint, body):
    server, key = RemoteServer.create("a.example.com")
    response = bouncer_post(client, endpoint, body, server, key)
    assert response.status_code == 400
    assert "client_id" in response.json()["fields"]


def test_a_device_cannot_be_rebound_to_another_client_nor_unregistered_by_one(client):
    server, key = RemoteServer.create("a.example.com")
    body = {"client_id": "3", "device_id": "1", "user_id": "5", "platform": "apns", "app_id": "a", "token": APNS}
    assert bouncer_post(client, "register", body, server, key).status_code == 200

    moved = bouncer_post(client, "register", {**body, "client_id": "4", "user_id": "6"}, server, key)
    other = bouncer_post(client, "unregister", {"client_id": "4", "device_id": "1"}, server, key)

    assert moved.status_code == 409 and "client_id" in moved.json()["fields"]
    assert other.json() == {"result": "unknown"}
    assert RemotePushDevice.objects.values_list("client_id", "user_id").get() == ("3", "5")


def test_apns_payload_has_alert_badge_and_data():
    body = apns.apns_payload({"title": "T", "body": "B", "badge": 3, "sound": "ping", "data": {"room": "1"}})
    assert body == {"room": "1", "aps": {"alert": {"title": "T", "body": "B"}, "badge": 3, "sound": "ping"}}


def test_apns_truncation_cuts_on_a_character_and_keeps_the_rest():
    body = apns.truncate(apns.apns_payload({"title": "T", "body": "日本" * 2000, "data": {"k": "v"}}))
    assert apns.encoded_size(body) <= 4096
    assert body["aps"]["alert"]["body"].endswith("…") and body["k"] == "v"


def test_apns_payload_whose_data_alone_is_too_big_cannot_be_sent():
    assert apns.truncate(apns.apns_payload({"body": "x", "data": {"k": "v" * 5000}})) is None


@pytest.mark.parametrize(
    ("status", "reason", "outcome"),
    [
        ("200", "", DELIVERED),
        ("410", "Unregistered", EXPIRED),
        ("400", "BadDeviceToken", EXPIRED),
        ("429", "TooManyRequests", RETRY),
        ("503", "ServiceUnavailable", RETRY),
        ("403", "InvalidProviderToken", FAILED),
    ],
)
def test_apns_answers_map_to_outcomes(status, reason, outcome):
    assert apns.outcome(status, reason).outcome == outcome


def test_the_apns_id_of_a_push_is_the_same_on_every_resend_and_differs_per_device():
    import uuid

    from zerver.lib.push.apns import apns_id
    from zerver.lib.push.common import PushMessage

    notification_id = str(uuid.uuid4())
    payload = {"title": "Hi", "data": {"notification_id": notification_id}}
    first = apns_id(PushMessage("11", "ab" * 32, "app", payload))
    assert first == apns_id(PushMessage("11", "ab" * 32, "app", payload))  # a resend: the same id
    assert first != apns_id(PushMessage("12", "cd" * 32, "app", payload))  # another device of the user
    assert uuid.UUID(first).version == 5
    assert apns_id(PushMessage("11", "ab" * 32, "app", {"remove": [1]})) is None  # not a stored notification
