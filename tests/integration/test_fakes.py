"""The provider fakes, driven by the real client libraries with only their endpoints changed."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import smtplib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import firebase_admin
import httpx
import jwt
import pytest
import requests
from aioapns import APNs, NotificationRequest, PushType
from aioapns.common import NotificationResult
from django.core.mail import send_mail
from firebase_admin import credentials, messaging
from firebase_admin import exceptions as firebase_exceptions

from fakes.apns import generate_auth_key
from fakes.runner import Fakes
from tests.helpers import ROOT
from zerver.lib.push.apns import point_at as apns_point_at
from zerver.lib.push.fcm import point_at as fcm_point_at

pytestmark = pytest.mark.integration

EXPO_SEND = "/--/api/v2/push/send"
EXPO_RECEIPTS = "/--/api/v2/push/getReceipts"


def apns_token(i: int) -> str:
    return f"{i:064x}"


def expo_token(i: int) -> str:
    return f"ExponentPushToken[fake-{i:08d}]"


# --- APNs ------------------------------------------------------------------------------


def aioapns_client(fakes: Fakes, **kwargs) -> APNs:
    """A token-auth aioapns client on the fake; build it in the running loop (aioapns keeps that loop)."""
    apns = fakes.apns
    client = APNs(
        key=apns.auth_key,
        key_id=apns.key_id,
        team_id=apns.team_id,
        topic=apns.topic,
        ssl_context=apns.tls.client_context(),
        **kwargs,
    )
    apns_point_at(client, apns.host, apns.port)
    return client


def send_apns(make_client: Callable[[], APNs], notifications: list[NotificationRequest]) -> list[NotificationResult]:
    """Send concurrently through a client made by ``make_client`` in a fresh event loop."""

    async def go() -> list[NotificationResult]:
        client = make_client()
        try:
            return await asyncio.gather(*(client.send_notification(n) for n in notifications))
        finally:
            client.pool.close()

    return asyncio.run(go())


def test_aioapns_sends_200_concurrent_notifications_on_one_connection(fakes):
    notifications = [
        NotificationRequest(
            device_token=apns_token(i),
            message={"aps": {"alert": f"message {i}"}},
            time_to_live=60,
            priority=10,
            collapse_key=f"thread-{i % 3}",
            push_type=PushType.ALERT,
        )
        for i in range(200)
    ]

    results = send_apns(lambda: aioapns_client(fakes, max_connections=1), notifications)

    assert [r.status for r in results] == ["200"] * 200
    assert {r.notification_id for r in results} == {n.notification_id for n in notifications}
    received = fakes.apns.control.received("notification")
    assert len(received) == 200
    assert {r["key"] for r in received} == {apns_token(i) for i in range(200)}
    first = next(r for r in received if r["key"] == apns_token(7))
    assert first["payload"] == {"aps": {"alert": "message 7"}}
    headers = first["headers"]
    assert headers["apns-topic"] == fakes.apns.topic
    assert headers["apns-push-type"] == "alert"
    assert headers["apns-priority"] == "10"
    assert headers["apns-collapse-id"] == "thread-1"
    assert abs(int(headers["apns-expiration"]) - (time.time() + 60)) < 5
    assert headers["authorization"].startswith("bearer ")
    assert first["auth"] == "token"


def test_aioapns_reports_unregistered_with_timestamp_and_bad_tokens(fakes):
    gone = apns_token(1)
    fakes.apns.control.add_rule(match=gone, error="Unregistered")

    before_ms = time.time() * 1000
    ok, unregistered, bad, too_large = send_apns(
        lambda: aioapns_client(fakes, max_connections=1),
        [
            NotificationRequest(device_token=apns_token(2), message={"aps": {}}),
            NotificationRequest(device_token=gone, message={"aps": {}}),
            NotificationRequest(device_token="not-hex", message={"aps": {}}),
            NotificationRequest(device_token=apns_token(3), message={"aps": {"alert": "x" * 4100}}),
        ],
    )

    assert ok.is_successful
    assert (unregistered.status, unregistered.description) == ("410", "Unregistered")
    assert before_ms - 1000 <= unregistered.timestamp <= time.time() * 1000 + 1000
    assert (bad.status, bad.description) == ("400", "BadDeviceToken")
    assert (too_large.status, too_large.description) == ("413", "PayloadTooLarge")
    assert fakes.apns.control.counts["notification:Unregistered"] == 1


def test_aioapns_certificate_authentication(fakes):
    def make_client() -> APNs:
        client = APNs(client_cert=str(fakes.apns.tls.client_cert), ssl_context=fakes.apns.tls.client_context())
        apns_point_at(client, fakes.apns.host, fakes.apns.port)
        return client

    (result,) = send_apns(make_client, [NotificationRequest(device_token=apns_token(5), message={"aps": {}})])

    assert result.is_successful
    (record,) = fakes.apns.control.received()
    assert record["auth"] == "certificate"
    assert "authorization" not in record["headers"]
    # aioapns took the topic from the certificate's UID, as with Apple's certificates.
    assert record["headers"]["apns-topic"] == fakes.apns.topic


def apns_post(fakes: Fakes, headers: dict[str, str], token: str = apns_token(9), body: bytes = b'{"aps":{}}'):
    """One HTTP/2 request with httpx, to send what aioapns would never send."""
    with httpx.Client(http2=True, verify=fakes.apns.tls.client_context()) as client:
        response = client.post(f"{fakes.apns.url}/3/device/{token}", headers=headers, content=body)
    assert response.http_version == "HTTP/2"
    return response


def provider_token(key: str, kid: str, iss: str | None = "TEAM", iat: float | None = None) -> str:
    claims = {} if iss is None else {"iss": iss}
    claims["iat"] = int(iat if iat is not None else time.time())
    return "bearer " + jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def test_apns_checks_provider_token_and_topic(fakes):
    apns = fakes.apns
    good = provider_token(apns.auth_key, apns.key_id)
    topic = {"apns-topic": apns.topic}

    cases = [
        ({**topic}, 403, "MissingProviderToken"),
        ({**topic, "authorization": "bearer not-a-jwt"}, 403, "InvalidProviderToken"),
        ({**topic, "authorization": provider_token(generate_auth_key(), apns.key_id)}, 403, "InvalidProviderToken"),
        ({**topic, "authorization": provider_token(apns.auth_key, apns.key_id, iss=None)}, 403, "InvalidProviderToken"),
        (
            {**topic, "authorization": provider_token(apns.auth_key, apns.key_id, iat=time.time() - 7200)},
            403,
            "ExpiredProviderToken",
        ),
        ({"authorization": good}, 400, "MissingTopic"),
        ({**topic, "authorization": good, "apns-priority": "7"}, 400, "BadPriority"),
    ]
    for headers, status, reason in cases:
        response = apns_post(fakes, headers)
        assert (response.status_code, response.json()["reason"]) == (status, reason), headers
        assert response.headers["apns-id"]

    apns_id = str(uuid.uuid4()).upper()
    response = apns_post(fakes, {**topic, "authorization": good, "apns-id": apns_id})
    assert response.status_code == 200
    assert response.headers["apns-id"] == apns_id
    assert response.content == b""


def test_apns_rules_over_the_control_port(fakes):
    control = fakes.apns.control_url
    created = requests.post(f"{control}/_fake/rules", json={"status": 429, "times": 1, "retry_after": 1}, timeout=5)
    assert created.status_code == 201
    requests.post(f"{control}/_fake/rules", json={"delay": 0.3}, timeout=5)

    started = time.monotonic()
    first, second = send_apns(
        lambda: aioapns_client(fakes, max_connections=1),
        [
            NotificationRequest(device_token=apns_token(1), message={"aps": {}}),
            NotificationRequest(device_token=apns_token(2), message={"aps": {}}),
        ],
    )

    assert time.monotonic() - started >= 0.3
    assert sorted([(first.status, first.description), (second.status, second.description)]) == [
        ("200", None),
        ("429", "TooManyRequests"),
    ]
    stats = requests.get(f"{control}/_fake/stats", timeout=5).json()
    assert stats["counts"]["notification"] == 2
    assert stats["counts"]["notification:TooManyRequests"] == 1
    assert len(requests.get(f"{control}/_fake/received", timeout=5).json()) == 2


# --- FCM -------------------------------------------------------------------------------


@pytest.fixture
def firebase_app(fakes):
    app = firebase_admin.initialize_app(credentials.Certificate(fakes.fcm_service_account), name=f"fake-{uuid.uuid4()}")
    fcm_point_at(app, fakes.fcm.url)
    yield app
    firebase_admin.delete_app(app)


def test_firebase_send_each_successes_and_unregistered(fakes, firebase_app):
    fakes.fcm.control.add_rule(match="fid-3", error="UNREGISTERED")
    messages = [messaging.Message(fid=f"fid-{i}", data={"n": str(i)}) for i in range(10)]

    batch = messaging.send_each(messages, app=firebase_app)

    assert (batch.success_count, batch.failure_count) == (9, 1)
    failed = batch.responses[3]
    assert isinstance(failed.exception, messaging.UnregisteredError)
    assert failed.exception.http_response.status_code == 404
    assert failed.exception.http_response.json()["error"]["status"] == "NOT_FOUND"
    for response in batch.responses[:3] + batch.responses[4:]:
        assert response.message_id.startswith(f"projects/{fakes.fcm.project_id}/messages/")
    assert len({r.message_id for r in batch.responses if r.success}) == 9
    records = fakes.fcm.control.received("message")
    assert sorted(r["key"] for r in records) == sorted(f"fid-{i}" for i in range(10))
    assert records[0]["headers"]["Authorization"].startswith("Bearer ya29.fake-")
    assert fakes.fcm.control.counts["token"] >= 1  # the OAuth grant went to the fake


def test_firebase_unavailable_after_its_own_retries(fakes, firebase_app):
    fakes.fcm.control.add_rule(match="fid-down", status=503, retry_after=1)

    batch = messaging.send_each([messaging.Message(fid="fid-down")], app=firebase_app)

    assert isinstance(batch.responses[0].exception, firebase_exceptions.UnavailableError)
    # firebase-admin (urllib3) retries a 503 four times, after Retry-After.
    assert fakes.fcm.control.counts["message:UNAVAILABLE"] == 5


def test_firebase_quota_exceeded_is_retried_after_retry_after(fakes, firebase_app):
    fakes.fcm.control.add_rule(status=429, times=1)

    message_id = messaging.send(messaging.Message(topic="news"), app=firebase_app)

    assert message_id.startswith("projects/")
    outcomes = [r["outcome"] for r in fakes.fcm.control.received("message")]
    assert outcomes == ["QUOTA_EXCEEDED", "ok"]


def test_fcm_refuses_a_service_account_with_another_key(fakes):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.auth.exceptions import RefreshError

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    account = {
        **fakes.fcm_service_account,
        "private_key": other_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    }
    app = firebase_admin.initialize_app(credentials.Certificate(account), name=f"forged-{uuid.uuid4()}")
    fcm_point_at(app, fakes.fcm.url)
    try:
        with pytest.raises(Exception) as raised:
            messaging.send(messaging.Message(fid="fid-1"), app=app)
    finally:
        firebase_admin.delete_app(app)
    cause = raised.value
    while cause is not None and not isinstance(cause, RefreshError):
        cause = cause.__cause__ or cause.__context__
    assert isinstance(cause, RefreshError)
    assert "invalid_grant" in str(cause)
    assert fakes.fcm.control.counts["message"] == 0


# --- Expo ------------------------------------------------------------------------------


def test_expo_batch_limits_tickets_and_receipts(fakes):
    url = fakes.expo.url
    gone, later = expo_token(1), expo_token(2)
    fakes.expo.control.add_rule(match=gone, error="DeviceNotRegistered")
    fakes.expo.control.add_rule(match=later, error="receipt:DeviceNotRegistered")
    with requests.Session() as session:
        too_many = session.post(url + EXPO_SEND, json=[{"to": expo_token(i), "body": "x"} for i in range(150)])
        assert too_many.status_code == 400
        assert too_many.json()["errors"][0]["code"] == "PUSH_TOO_MANY_NOTIFICATIONS"
        assert fakes.expo.control.counts["notification"] == 0

        messages = [{"to": expo_token(i), "title": "hi", "body": str(i)} for i in range(99)]
        messages.append({"to": "not-a-token", "body": "x"})
        response = session.post(url + EXPO_SEND, json=messages)
        assert response.status_code == 200
        tickets = response.json()["data"]
        assert len(tickets) == 100
        assert tickets[1] == {
            "status": "error",
            "message": f'"{gone}" is not a registered push notification recipient',
            "details": {"error": "DeviceNotRegistered"},
        }
        assert tickets[99]["details"] == {"error": "DeviceNotRegistered"}
        ok = [t for t in tickets if t["status"] == "ok"]
        assert len(ok) == 98
        assert len({t["id"] for t in ok}) == 98

        ids = [tickets[0]["id"], tickets[2]["id"], "never-issued"]
        receipts = session.post(url + EXPO_RECEIPTS, json={"ids": ids}).json()["data"]
        assert receipts[tickets[0]["id"]] == {"status": "ok"}
        assert receipts[tickets[2]["id"]]["status"] == "error"
        assert receipts[tickets[2]["id"]]["details"] == {"error": "DeviceNotRegistered"}
        assert "never-issued" not in receipts


def test_expo_gzip_single_object_and_access_token(fakes):
    url = fakes.expo.url
    body = gzip.compress(json.dumps([{"to": expo_token(1), "body": "zipped"}]).encode())
    response = requests.post(
        url + EXPO_SEND, data=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, timeout=5
    )
    assert response.status_code == 200
    assert response.json()["data"][0]["status"] == "ok"
    assert fakes.expo.control.received("notification")[0]["message"]["body"] == "zipped"

    single = requests.post(url + EXPO_SEND, json={"to": expo_token(2), "body": "one"}, timeout=5).json()
    assert single["data"]["status"] == "ok"

    fakes.expo.access_token = "secret-expo-token"
    try:
        refused = requests.post(url + EXPO_SEND, json=[{"to": expo_token(3)}], timeout=5)
        allowed = requests.post(
            url + EXPO_SEND, json=[{"to": expo_token(3)}], headers={"Authorization": "Bearer secret-expo-token"}
        )
    finally:
        fakes.expo.access_token = None
    assert refused.status_code == 401
    assert allowed.status_code == 200


def test_expo_rate_and_next_n_rules(fakes):
    url = fakes.expo.url
    control = fakes.expo.control_url
    requests.post(f"{control}/_fake/rules", json={"error": "MessageRateExceeded", "rate": 0.3}, timeout=5)
    requests.post(f"{control}/_fake/rules", json={"status": 429, "times": 2, "retry_after": 1}, timeout=5)
    batch = [{"to": expo_token(i)} for i in range(100)]
    with requests.Session() as session:
        refused = [session.post(url + EXPO_SEND, json=batch) for _ in range(2)]
        accepted = session.post(url + EXPO_SEND, json=batch)

    for response in refused:
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "1"
        assert response.json()["errors"][0]["code"] == "TOO_MANY_REQUESTS"
    tickets = accepted.json()["data"]
    errors = [t for t in tickets if t["status"] == "error"]
    assert len(errors) == 30  # deterministic: exactly 30% of the matching notifications
    assert {e["details"]["error"] for e in errors} == {"MessageRateExceeded"}
    stats = requests.get(f"{control}/_fake/stats", timeout=5).json()
    assert stats["counts"]["request:TOO_MANY_REQUESTS"] == 2
    assert stats["counts"]["notification"] == 100


# --- SMTP ------------------------------------------------------------------------------


def test_django_email_is_recorded_with_its_parts(fakes, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = fakes.smtp.host, fakes.smtp.port
    settings.EMAIL_USE_TLS = False

    sent = send_mail(
        "Missed messages",
        "You have 3 new messages.",
        "noreply@example.com",
        ["alice@example.com", "bob@example.com"],
        html_message="<p>You have <b>3</b> new messages.</p>",
    )

    assert sent == 1
    (record,) = fakes.smtp.control.received("message")
    assert record["mail_from"] == "noreply@example.com"
    assert record["rcpt_tos"] == ["alice@example.com", "bob@example.com"]
    assert record["subject"] == "Missed messages"
    assert record["text"].strip() == "You have 3 new messages."
    assert record["html"].strip() == "<p>You have <b>3</b> new messages.</p>"


def smtp_message(to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "noreply@example.com", to, "hello"
    message.set_content("body")
    return message


def test_smtp_421_for_the_next_message_and_550_for_a_recipient(fakes):
    fakes.smtp.control.add_rule(status=421, times=1)
    fakes.smtp.control.add_rule(match="gone@example.com", status=550)

    with smtplib.SMTP(fakes.smtp.host, fakes.smtp.port, timeout=5) as client:
        with pytest.raises(smtplib.SMTPResponseException) as raised:
            client.send_message(smtp_message("alice@example.com"))
    assert raised.value.smtp_code == 421

    with smtplib.SMTP(fakes.smtp.host, fakes.smtp.port, timeout=5) as client:
        refused = client.sendmail(
            "noreply@example.com", ["alice@example.com", "gone@example.com"], b"Subject: x\r\n\r\nhi"
        )
        assert refused == {"gone@example.com": (550, b"5.1.1 Mailbox unavailable")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.send_message(smtp_message("gone@example.com"))

    outcomes = [(r["kind"], r["outcome"]) for r in fakes.smtp.control.received()]
    assert outcomes == [("message", "421"), ("recipient", "550"), ("message", "ok"), ("recipient", "550")]
    stats = requests.get(f"{fakes.smtp.control_url}/_fake/stats", timeout=5).json()
    assert stats["counts"]["message:ok"] == 1


# --- SMS -------------------------------------------------------------------------------


def test_sms_basic_auth_creation_and_errors(fakes):
    sms = fakes.sms
    form = {"To": "+15005550006", "From": "+15005550001", "Body": "Your code is 123456"}

    bad = requests.post(sms.messages_url, data=form, auth=(sms.account_sid, "wrong"), timeout=5)
    assert bad.status_code == 401
    assert bad.json()["code"] == 20003

    created = requests.post(sms.messages_url, data=form, auth=(sms.account_sid, sms.auth_token), timeout=5)
    assert created.status_code == 201
    message = created.json()
    assert message["sid"].startswith("SM") and len(message["sid"]) == 34
    assert (message["status"], message["to"], message["from"]) == ("queued", "+15005550006", "+15005550001")
    assert message["num_segments"] == "1"
    assert message["account_sid"] == sms.account_sid

    invalid = requests.post(
        sms.messages_url, data={**form, "To": "12345"}, auth=(sms.account_sid, sms.auth_token), timeout=5
    )
    assert (invalid.status_code, invalid.json()["code"], invalid.json()["status"]) == (400, 21211, 400)

    sms.control.add_rule(status=429, times=1, retry_after=1)
    limited = requests.post(sms.messages_url, data=form, auth=(sms.account_sid, sms.auth_token), timeout=5)
    assert (limited.status_code, limited.headers["Retry-After"], limited.json()["code"]) == (429, "1", 20429)

    long_unicode = requests.post(
        sms.messages_url, data={**form, "Body": "ü" * 80 + "✓"}, auth=(sms.account_sid, sms.auth_token), timeout=5
    )
    assert long_unicode.json()["num_segments"] == "2"

    outcomes = [(r["outcome"], r.get("form", {}).get("Body")) for r in sms.control.received("message")]
    assert outcomes[:2] == [("20003", None), ("ok", "Your code is 123456")]
    assert [o for o, _ in outcomes[2:]] == ["21211", "20429", "ok"]


# --- Starting them ------------------------------------------------------------------------


def test_manage_py_fakes_prints_env_and_stops_on_sigterm(tmp_path):
    env_file = tmp_path / "fakes.env"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "fakes", "--env-file", str(env_file)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline() for _ in range(20)]
        env = dict(line.strip().split("=", 1) for line in lines if "=" in line)
        assert {"APNS_HOST", "APNS_PORT", "FCM_URL", "EXPO_URL", "EMAIL_HOST", "EMAIL_PORT", "SMS_API_URL"} <= set(env)
        assert env_file.read_text().splitlines()[: len(env)] == [f"{k}={v}" for k, v in env.items()]
        response = requests.post(env["EXPO_URL"] + EXPO_SEND, json=[{"to": expo_token(1)}], timeout=5)
        assert response.json()["data"][0]["status"] == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err


def test_control_api_refuses_bad_rules_deletes_and_resets(fakes):
    control = fakes.sms.control_url + "/_fake"
    assert requests.post(f"{control}/rules", json={"code": 500}, timeout=5).status_code == 400
    (rule,) = requests.post(f"{control}/rules", json=[{"status": 500, "match": "+15005550009"}], timeout=5).json()
    assert [r["id"] for r in requests.get(f"{control}/rules", timeout=5).json()] == [rule["id"]]
    fakes.sms.control.record("message", "+15005550009", "ok")

    assert requests.delete(f"{control}/rules/{rule['id']}", timeout=5).json() == {"deleted": True}
    assert requests.delete(f"{control}/rules/{rule['id']}", timeout=5).status_code == 404
    assert requests.get(f"{control}/received", params={"key": "+15005550009"}, timeout=5).json()[0]["outcome"] == "ok"
    assert requests.post(f"{control}/reset", timeout=5).status_code == 200
    assert requests.get(f"{control}/stats", timeout=5).json()["counts"] == {}
