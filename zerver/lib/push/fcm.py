"""FCM HTTP v1 through firebase-admin.

A persistent pool of ``FCM_POOL_SIZE`` threads sends each message with
``messaging.send`` over one pooled session. (``send_each`` does the same
but starts a new thread per message on every call, and
``send_each_async`` measured slower here: see the README's figures.)
UNREGISTERED and an invalid registration token expire the token;
UNAVAILABLE, INTERNAL and quota errors retry; the rest fail.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import firebase_admin
import requests
from django.conf import settings
from firebase_admin import credentials, exceptions, messaging
from urllib3.util.retry import Retry

from zerver.lib.http import retry_after_seconds
from zerver.lib.push.common import DELIVERED, EXPIRED, FAILED, RETRY, PushMessage, PushResult, alert_text, is_remove

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
        http = getattr(error, "http_response", None)
        return PushResult(
            RETRY, text, retry_after_seconds(http.headers.get("Retry-After") if http is not None else None)
        )
    return PushResult(FAILED, text)


def point_at(app: firebase_admin.App, base_url: str) -> None:
    """Send this firebase-admin app's FCM requests to ``base_url`` instead of Google.

    firebase-admin has no endpoint setting; its send URL is this attribute of the app's service.
    """
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{base_url.rstrip('/')}/v1/projects/{service._project_id}/messages:send"


NO_RETRIES = Retry(total=0, connect=0, read=0, status=0, other=0, redirect=0, raise_on_status=False)


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
        if settings.FCM_URL:
            point_at(self.app, settings.FCM_URL)
        service = messaging._get_messaging_service(self.app)
        prefix = service._fcm_url.split("/v1/")[0]
        # No retries inside firebase-admin's session: a 5xx or a lost connection comes back to us at once,
        # so the worker framework retries it (with the deadline, backoff and Retry-After) and every try is
        # an attempt row and a metric, not a hidden loop.
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=settings.FCM_POOL_SIZE, max_retries=NO_RETRIES
        )
        service._client.session.mount(prefix, adapter)
        service._client.session.trust_env = settings.HTTP_TRUST_ENV  # see zerver.lib.http
        self.pool = ThreadPoolExecutor(settings.FCM_POOL_SIZE, thread_name_prefix="fcm")

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        return list(self.pool.map(self.send_one, messages))

    def send_one(self, message: PushMessage) -> PushResult:
        """One HTTP v1 request; firebase-admin's error classes become outcomes."""
        try:
            name = messaging.send(fcm_message(message), app=self.app)
        except exceptions.FirebaseError as e:
            return result_of(messaging.SendResponse(None, e))
        except requests.RequestException as e:
            return PushResult(RETRY, f"FCM unreachable: {type(e).__name__}")
        return PushResult(DELIVERED, extra={"provider_id": name})
