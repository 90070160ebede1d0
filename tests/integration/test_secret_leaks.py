"""No secret leaves its place: after realistic traffic with failures, no token or key is anywhere it should not be.

The traffic goes through the API, the workers, the bouncer (over HTTP) and
the provider fakes: deliveries, dead tokens on every platform, a refused
e-mail, a refused SMS and retries. Then every text column of every table,
the captured logs, the web app's and a worker's ``/metrics``, the admin's
list and change pages and the API's answers are searched for every push
token, API key and provider credential the run used.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection, models
from django.urls import reverse
from prometheus_client import REGISTRY, generate_latest

from bouncer.models import RemoteServer
from fakes.expo import RECEIPT_PREFIX
from tests.helpers import running
from tests.integration.test_push import apns_token, expo_token, fcm_token, push, register, settled
from workers.base import get_worker
from zerver.lib.queue import EMAIL_NOTIFICATIONS_QUEUE, MOBILE_NOTIFICATIONS_QUEUE, SMS_NOTIFICATIONS_QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]


def send(api, **body) -> str:
    response = api.post("/api/v1/notifications/send", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def database_text() -> str:
    """Every text column of every table, as one string."""
    out = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            columns = [
                f.column
                for f in model._meta.concrete_fields
                if isinstance(f, (models.CharField, models.TextField, models.JSONField))
            ]
            if columns:
                cursor.execute(f"SELECT {', '.join(columns)} FROM {model._meta.db_table}")
                out.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(out)


def admin_pages(client) -> str:
    user = User.objects.create_user("leak-ops", password="pw", is_staff=True, is_superuser=True)
    client.force_login(user)
    pages = []
    for model in admin.site._registry:
        meta = model._meta
        listing = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        pages.append(listing.content.decode())
        for pk in model.objects.values_list("pk", flat=True)[:20]:
            page = client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[pk]))
            pages.append(page.content.decode())
    client.logout()
    return "\n".join(pages)


def test_no_token_key_or_credential_is_stored_logged_shown_or_exported(
    api, bouncer, providers, caplog, client, settings
):
    caplog.set_level(logging.DEBUG)
    tokens = {
        "apns-ok": apns_token(41),
        "apns-dead": apns_token(42),
        "fcm-ok": fcm_token(41),
        "fcm-dead": fcm_token(42),
        "expo-ok": expo_token(41),
        "expo-dead": expo_token(42),
        "expo-late": expo_token(43),
    }
    providers.apns.control.add_rule(match=tokens["apns-dead"], status=400, error="BadDeviceToken")
    providers.fcm.control.add_rule(match=tokens["fcm-dead"], status=404, error="UNREGISTERED")
    providers.expo.control.add_rule(match=tokens["expo-dead"], error="DeviceNotRegistered")
    providers.expo.control.add_rule(match=tokens["expo-late"], error=RECEIPT_PREFIX + "DeviceNotRegistered")
    providers.apns.control.add_rule(match=tokens["apns-ok"], status=503, times=1)  # a retry
    providers.smtp.control.add_rule(match="gone@example.com", status=550)
    providers.sms.control.add_rule(match="+14155550199", status=400)

    answers = []
    for n, (name, token) in enumerate(tokens.items()):
        platform = name.split("-")[0]
        answers.append(json.dumps(register(api, str(100 + n), platform, token)))
    push_ids = [push(api, str(100 + n)) for n in range(len(tokens))]
    mail_ids = [
        send(api, type="email", recipient=r, subject="Hi", content="Hello")
        for r in ("ok@example.com", "gone@example.com")
    ]
    sms_ids = [send(api, type="sms", recipient=r, content="code") for r in ("+14155550100", "+14155550199")]

    with running(
        get_worker(MOBILE_NOTIFICATIONS_QUEUE),
        get_worker(EMAIL_NOTIFICATIONS_QUEUE),
        get_worker(SMS_NOTIFICATIONS_QUEUE),
    ):
        for notification_id in push_ids + mail_ids + sms_ids:
            answers.append(json.dumps(settled(api, notification_id)))
        from bouncer.service import check_expo_receipts

        check_expo_receipts(min_age_seconds=0)
        answers.append(api.get(f"/api/v1/devices?user_id={100}").content.decode())

    statuses = [json.loads(a)["status"] for a in answers if '"status"' in a]
    assert "failed" in statuses and "sent" in statuses  # failures did happen, with their provider texts

    api_key = api.defaults["HTTP_AUTHORIZATION"].split(" ", 1)[1]
    bouncer_key = settings.PUSH_BOUNCER_API_KEY
    fakes_env = providers.env()
    credentials = {
        "API key": api_key,
        "bouncer API key": bouncer_key,
        "SMS auth token": fakes_env["SMS_AUTH_TOKEN"],
        "APNs signing key": Path(fakes_env["APNS_AUTH_KEY_FILE"]).read_text().splitlines()[1],
        "FCM private key": json.loads(Path(fakes_env["FCM_SERVICE_ACCOUNT_FILE"]).read_text())[
            "private_key"
        ].splitlines()[1],
        "token encryption key": settings.PUSH_TOKEN_KEYS[0],
        "token hash key": settings.PUSH_TOKEN_HASH_KEY,
    }
    secrets = {**{f"token {k}": v for k, v in tokens.items()}, **credentials}

    places = {
        "database": database_text(),
        "logs": caplog.text,
        "web /metrics": client.get("/metrics").content.decode(),
        "worker metrics": generate_latest(REGISTRY).decode(),
        "admin pages": admin_pages(client),
        "API answers": "\n".join(answers),
    }
    leaks = [(what, where) for what, secret in secrets.items() for where, text in places.items() if secret in text]
    assert leaks == []
    # The failures are there, told apart by masked tokens: Expo's message quotes the token, masked.
    assert "DeviceNotRegistered" in places["database"] and '"Expo…(' in places["database"]
    assert RemoteServer.objects.exists()
