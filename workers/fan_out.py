"""Message fan-out: one ``new_message`` event becomes a notification per recipient and channel.

The chat application publishes (or POSTs) one event per message; this
worker decides, per recipient and by their settings, who gets a push and who
an e-mail, and hands each notification to its channel's queue.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from workers.base import InvalidEvent, QueueProcessingWorker, assign_queue
from zerver.actions.notifications import publish_after_commit
from zerver.models import ApiClient, Notification, UserSettings

MESSAGE_NOTIFICATIONS_QUEUE = "message_notifications"
PREVIEW_LENGTH = 200


def fan_out(client: ApiClient, event: dict[str, Any]) -> list[Notification]:
    """Create the notifications of a ``new_message`` event; none twice if the event comes again.

    Each notification's idempotency key is made of the message, the recipient
    and the channel, so a redelivered event finds them all made already.
    """
    sender = str(event["sender_id"])
    recipients = sorted({str(r) for r in event["recipient_ids"]} - {sender})
    settings_of = {s.user_id: s for s in UserSettings.objects.filter(client=client, user_id__in=recipients)}
    info = event.get("sender_info") or {}
    sender_name = info.get("display_name") or info.get("username") or sender
    text = str(event.get("message_content", ""))
    preview = text if len(text) <= PREVIEW_LENGTH else text[: PREVIEW_LENGTH - 1] + "…"
    data = {k: str(event[k]) for k in ("message_id", "room_id", "sender_id") if k in event}

    wanted: list[Notification] = []
    for user_id in recipients:
        user = settings_of.get(user_id) or UserSettings(client=client, user_id=user_id)
        if user.push_enabled:
            content = {"title": sender_name, "body": preview, "data": data}
            wanted.append(Notification(type="push", recipient=user_id, content=content))
        if user.email_enabled and user.email:
            subject = f"New message from {sender_name}"
            content = f"{sender_name} wrote:\n\n{text}"
            wanted.append(Notification(type="email", recipient=user.email, content=content, subject=subject))
    for notification in wanted:
        notification.client = client
        notification.expires_at = Notification.deadline(notification.type)
        notification.idempotency_key = f"message:{event['message_id']}:{notification.type}:{notification.recipient}"
    with transaction.atomic():
        done = set(
            Notification.objects.filter(
                client=client, idempotency_key__in=[n.idempotency_key for n in wanted]
            ).values_list("idempotency_key", flat=True)
        )
        new = [n for n in wanted if n.idempotency_key not in done]
        Notification.objects.bulk_create(new)
        publish_after_commit(new)
    return new


@assign_queue(MESSAGE_NOTIFICATIONS_QUEUE)
class MessageFanOutWorker(QueueProcessingWorker):
    """Consumes ``{"type": "new_message", "client_id", "message_id", "sender_id", "recipient_ids", ...}``."""

    def consume(self, event: dict[str, Any]) -> None:
        if event.get("type") != "new_message":
            raise InvalidEvent(f"unknown event type {event.get('type')!r}")
        missing = [k for k in ("client_id", "message_id", "sender_id", "recipient_ids") if k not in event]
        if missing:
            raise InvalidEvent(f"new_message event lacks {', '.join(missing)}")
        if not isinstance(event["recipient_ids"], list):
            raise InvalidEvent("recipient_ids must be a list")
        client = ApiClient.objects.filter(pk=event["client_id"], revoked_at__isnull=True).first()
        if client is None:
            raise InvalidEvent(f"no active API client {event['client_id']}")
        fan_out(client, event)
