"""APNs through aioapns: one HTTP/2 client and one event loop per process, many streams at once.

aioapns is asyncio-only and keeps the loop it was created in, so the backend
owns a :class:`BackgroundLoop` and a batch is a ``gather`` of requests on it,
at most ``APNS_CONCURRENCY`` in flight. Apple's answers map to outcomes:
200 delivered; 410 Unregistered, BadDeviceToken and DeviceTokenNotForTopic
expire the token; 429 and 5xx retry; anything else fails. A payload over
4 KB has its body cut to fit rather than being refused.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from typing import Any

from aioapns import APNs, NotificationRequest, PushType
from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded
from aioapns.exceptions import ConnectionError as ApnsConnectionError
from django.conf import settings

from zerver.lib.push.common import DELIVERED, EXPIRED, FAILED, RETRY, PushMessage, PushResult, alert_text, is_remove
from zerver.lib.push.loop import BackgroundLoop

MAX_PAYLOAD_BYTES = 4096
DEAD_TOKEN_REASONS = {"Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"}
ELLIPSIS = "…"


def apns_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The JSON body APNs wants: ``aps`` with the alert, custom data beside it."""
    if is_remove(payload):
        return {"aps": {"content-available": 1}, "event": "remove", "message_ids": payload["remove"]}
    title, body = alert_text(payload)
    aps: dict[str, Any] = {"alert": {"title": title, "body": body} if title else body}
    for ours, theirs in (("badge", "badge"), ("sound", "sound"), ("category", "category")):
        if payload.get(ours) not in (None, ""):
            aps[theirs] = payload[ours]
    return {**payload.get("data", {}), "aps": aps}


def encoded_size(body: dict[str, Any]) -> int:
    """The payload's size as aioapns sends it (``json.dumps(..., ensure_ascii=False)``)."""
    return len(json.dumps(body, ensure_ascii=False).encode())


def truncate(body: dict[str, Any]) -> dict[str, Any] | None:
    """``body`` with its alert text cut (on a character, with an ellipsis) to fit 4 KB; None if nothing fits.

    JSON escapes make a character cost more than its UTF-8 bytes, so the cut
    is measured again until the payload fits.
    """
    while (excess := encoded_size(body) - MAX_PAYLOAD_BYTES) > 0:
        alert = body["aps"].get("alert")
        text = alert["body"] if isinstance(alert, dict) else alert
        if not isinstance(text, str) or not text.removesuffix(ELLIPSIS):
            return None
        encoded = text.removesuffix(ELLIPSIS).encode()
        keep = max(0, len(encoded) - excess - len(ELLIPSIS.encode()))
        cut = encoded[:keep].decode(errors="ignore") + ELLIPSIS
        aps = dict(body["aps"])
        aps["alert"] = {**alert, "body": cut} if isinstance(alert, dict) else cut
        body = {**body, "aps": aps}
    return body


def apns_id(message: PushMessage) -> str | None:
    """The ``apns-id`` of a notification's push to one device: the same on every resend of it.

    Derived from the notification id and the device (aioapns tells in-flight
    requests apart by it, so two devices of one user need two), so a push sent
    again after a redelivery carries the id the first one had. None (a fresh
    one) for pushes that are no stored notification, such as a remove.
    """
    notification_id = (message.payload.get("data") or {}).get("notification_id")
    try:
        return str(uuid.uuid5(uuid.UUID(str(notification_id)), str(message.device_id)))
    except ValueError:
        return None


def notification_request(message: PushMessage) -> NotificationRequest | None:
    body = truncate(apns_payload(message.payload))
    if body is None:
        return None
    remove = is_remove(message.payload)
    return NotificationRequest(
        device_token=message.token,
        message=body,
        notification_id=apns_id(message),
        priority=5 if remove or message.payload.get("priority") == "normal" else 10,
        collapse_key=message.payload.get("collapse_key") or None,
        push_type=PushType.BACKGROUND if remove else PushType.ALERT,
        apns_topic=message.app_id or settings.APNS_TOPIC,
    )


class FlowControl:
    """Give back HTTP/2 flow-control credit for the response bodies a connection receives.

    aioapns never acknowledges DATA frames, so once about 64 KiB of error
    bodies (``{"reason": "BadDeviceToken"}`` and the like) have arrived on a
    connection, its receive window is spent and APNs can send nothing more on
    it: the connection stalls until requests time out. Mixed in before
    aioapns's protocol class, this acknowledges each body as it is handled
    (the WINDOW_UPDATE goes out with the next flush, at the end of
    ``data_received``).
    """

    conn: Any

    def on_data_received(self, data: bytes, stream_id: int) -> None:
        # h2 credits the connection window even when the stream has closed meanwhile.
        self.conn.acknowledge_received_data(len(data), stream_id)
        super().on_data_received(data, stream_id)  # type: ignore[misc]


def with_flow_control(client: APNs) -> None:
    """Make this aioapns client's connections acknowledge received data (see :class:`FlowControl`)."""
    base = client.pool.protocol_class
    client.pool.protocol_class = type(f"FlowControlled{base.__name__}", (FlowControl, base), {})


def point_at(client: APNs, host: str, port: int) -> None:
    """Make this aioapns client (only) connect to ``host:port`` instead of Apple.

    aioapns has no endpoint setting: its pool dials its protocol class's
    ``APNS_SERVER``/``APNS_PORT``, so the pool gets a subclass with ours (the
    TLS server name and ``host`` header become ``host``).
    """
    base = client.pool.protocol_class
    client.pool.protocol_class = type(f"Configured{base.__name__}", (base,), {"APNS_SERVER": host, "APNS_PORT": port})


async def _ignore_error(request: NotificationRequest, result: Any) -> None:
    """aioapns would log failures itself; the outcome is ours to report, without the token."""


class ApnsBackend:
    platform = "apns"

    def __init__(self) -> None:
        self.loop = BackgroundLoop("apns")
        self.client: APNs = self.loop.run(self._make_client())

    async def _make_client(self) -> APNs:
        ssl_context = ssl.create_default_context()
        if settings.APNS_CA_FILE:
            ssl_context.load_verify_locations(cafile=settings.APNS_CA_FILE)
        common: dict[str, Any] = {
            "topic": settings.APNS_TOPIC or None,
            "use_sandbox": settings.APNS_USE_SANDBOX,
            "max_connections": 4,
            "err_func": _ignore_error,
        }
        if settings.APNS_AUTH_KEY_FILE:
            with open(settings.APNS_AUTH_KEY_FILE) as f:
                key = f.read()
            client = APNs(
                key=key, key_id=settings.APNS_KEY_ID, team_id=settings.APNS_TEAM_ID, ssl_context=ssl_context, **common
            )
        else:
            # aioapns loads the certificate into the context itself.
            client = APNs(client_cert=settings.APNS_CLIENT_CERT, ssl_context=ssl_context, **common)
        with_flow_control(client)
        if settings.APNS_HOST:
            point_at(client, settings.APNS_HOST, settings.APNS_PORT)
        return client

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        return self.loop.run(self._send_all(messages), timeout=settings.PUSH_PROVIDER_TIMEOUT * 4)

    async def _send_all(self, messages: list[PushMessage]) -> list[PushResult]:
        limit = asyncio.Semaphore(settings.APNS_CONCURRENCY)

        async def one(message: PushMessage) -> PushResult:
            request = notification_request(message)
            if request is None:
                return PushResult(FAILED, "payload too large for APNs even with an empty body")
            async with limit:
                try:
                    result = await asyncio.wait_for(
                        self.client.send_notification(request), settings.PUSH_PROVIDER_TIMEOUT
                    )
                except (TimeoutError, OSError, ApnsConnectionError, ConnectionClosed, MaxAttemptsExceeded) as e:
                    return PushResult(RETRY, f"APNs unreachable: {type(e).__name__}")
            answer = outcome(str(result.status), result.description or "")
            answer.extra["provider_id"] = result.notification_id  # the apns-id
            return answer

        return list(await asyncio.gather(*(one(m) for m in messages)))


def outcome(status: str, reason: str) -> PushResult:
    if status == "200":
        return PushResult(DELIVERED)
    error = f"APNs {status} {reason}".strip()
    if status == "410" or reason in DEAD_TOKEN_REASONS:
        return PushResult(EXPIRED, error)
    if status == "429" or status.startswith("5"):
        return PushResult(RETRY, error)
    return PushResult(FAILED, error)
