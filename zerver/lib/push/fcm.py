"""FCM HTTP v1 through firebase-admin: ``send_each``, up to 500 messages a call.

``send_each`` sends each message on a thread of its own over one requests
session, so that session's connection pool is sized to match
(``FCM_POOL_SIZE``); otherwise most threads would wait for a connection.
UNREGISTERED and an invalid registration token expire the token;
UNAVAILABLE, INTERNAL and quota errors retry; the rest fail.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import firebase_admin
import requests
from django.conf import settings
from firebase_admin import credentials, exceptions, messaging

from zerver.lib.push.common import DELIVERED, EXPIRED, FAILED, RETRY, PushMessage, PushResult, alert_text, is_remove

MAX_PER_CALL = 500
APP_NAME = "notifications"
_lock = threading.Lock()

# UNAVAILABLE, INTERNAL, quota (RESOURCE_EXHAUSTED / QUOTA_EXCEEDED) and deadlines pass with time.
RETRY_ERRORS = (
    messaging.QuotaExceededError,
    exceptions.UnavailableError,
    exceptions.InternalError,
    exceptions.ResourceExhaustedError,
    exceptions.DeadlineExceededError,
)


def fcm_message(message: PushMessage) -> messaging.Message:
    payload = message.payload
    if is_remove(payload):
        data = {"event": "remove", "message_ids": ",".join(map(str, payload["remove"]))}
        return messaging.Message(token=message.token, data=data, android=messaging.AndroidConfig(priority="normal"))
    title, body = alert_text(payload)
    return messaging.Message(
        token=message.token,
        notification=messaging.Notification(title=title or None, body=body or None),
        data={str(k): v if isinstance(v, str) else _json(v) for k, v in payload.get("data", {}).items()},
        android=messaging.AndroidConfig(
            priority=payload.get("priority", "high"),
            collapse_key=payload.get("collapse_key") or None,
            notification=messaging.AndroidNotification(
                sound=payload.get("sound") or None,
                click_action=payload.get("category") or None,
                notification_count=payload.get("badge"),
            ),
        ),
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def result_of(response: messaging.SendResponse) -> PushResult:
    if response.success:
        return PushResult(DELIVERED, extra={"provider_id": response.message_id})
    error = response.exception
    text = f"FCM {getattr(error, 'code', '')}: {error}".strip()
    if isinstance(error, messaging.UnregisteredError):
        return PushResult(EXPIRED, text)
    if isinstance(error, exceptions.InvalidArgumentError) and "registration token" in str(error):
        return PushResult(EXPIRED, text)
    if isinstance(error, RETRY_ERRORS):
        retry_after = 0.0
        http = getattr(error, "http_response", None)
        if http is not None and http.headers.get("Retry-After", "").isdigit():
            retry_after = float(http.headers["Retry-After"])
        return PushResult(RETRY, text, retry_after)
    return PushResult(FAILED, text)


class FcmBackend:
    platform = "fcm"

    def __init__(self) -> None:
        with _lock:
            try:
                self.app = firebase_admin.get_app(APP_NAME)
            except ValueError:
                cred = credentials.Certificate(settings.FCM_SERVICE_ACCOUNT_FILE)
                self.app = firebase_admin.initialize_app(
                    cred, {"httpTimeout": settings.PUSH_PROVIDER_TIMEOUT}, name=APP_NAME
                )
        service = messaging._get_messaging_service(self.app)
        if settings.FCM_URL:
            # firebase-admin has no endpoint setting; its send URL is this attribute.
            service._fcm_url = f"{settings.FCM_URL.rstrip('/')}/v1/projects/{service._project_id}/messages:send"
        prefix = service._fcm_url.split("/v1/")[0]
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1,
            pool_maxsize=settings.FCM_POOL_SIZE,
            max_retries=service._client.session.get_adapter(prefix).max_retries,
        )
        service._client.session.mount(prefix, adapter)

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        results: list[PushResult] = []
        for i in range(0, len(messages), MAX_PER_CALL):
            batch = [fcm_message(m) for m in messages[i : i + MAX_PER_CALL]]
            try:
                response = messaging.send_each(batch, app=self.app)
            except (exceptions.FirebaseError, requests.RequestException) as e:
                results += [PushResult(RETRY, f"FCM unreachable: {type(e).__name__}")] * len(batch)
                continue
            results += [result_of(r) for r in response.responses]
        return results
