"""Accepting notifications: store, then publish through the outbox, exactly once per request."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, transaction

from zerver.lib import outbox, ratelimit
from zerver.lib.api import ApiError
from zerver.lib.queue import EMAIL_NOTIFICATIONS_QUEUE, MOBILE_NOTIFICATIONS_QUEUE, SMS_NOTIFICATIONS_QUEUE
from zerver.lib.rendering import TemplateError, render
from zerver.lib.sms import segments
from zerver.lib.validation import content_error, subject_error
from zerver.models import ApiClient, Notification

QUEUE_FOR_TYPE = {
    "email": EMAIL_NOTIFICATIONS_QUEUE,
    "sms": SMS_NOTIFICATIONS_QUEUE,
    "push": MOBILE_NOTIFICATIONS_QUEUE,
}


def delivery_event(notification: Notification) -> dict[str, Any]:
    """The queue event that asks a worker to deliver ``notification``.

    Only the id travels (the database holds the content), with the
    deadline; a push also carries the user id, by which the mobile queue is
    sharded.
    """
    event: dict[str, Any] = {"notification_id": str(notification.id)}
    if notification.type == "push":
        event["user_id"] = notification.recipient
    if notification.expires_at is not None:
        # The worker framework retries a failure until then, and no longer.
        event["expires_at"] = notification.expires_at.timestamp()
    return event


def publish_after_commit(notifications: list[Notification]) -> None:
    """Within the caller's transaction: the outbox rows that will deliver ``notifications``."""
    for type_, queue in QUEUE_FOR_TYPE.items():
        events = [delivery_event(n) for n in notifications if n.type == type_]
        if events:
            outbox.enqueue(queue, events)


def prepare(client: ApiClient, request: dict[str, Any]) -> Notification:
    """An unsaved Notification from a validated request, its template rendered."""
    content, subject, html = request["content"], request["subject"], ""
    if request["template"]:
        try:
            rendered = render(request["template"], request["variables"], client)
        except TemplateError as e:
            raise ApiError(400, "invalid request", {e.field: str(e)}) from None
        subject = subject or rendered.subject
        if error := subject_error(subject):
            raise ApiError(400, "invalid request", {"template": f"rendered subject {error}"})
        html = rendered.html
        content = {"title": subject, "body": rendered.text} if request["type"] == "push" else rendered.text
        if error := content_error(request["type"], content):
            raise ApiError(400, "invalid request", {"template": f"rendered content {error}"})
    notification = Notification(
        client=client,
        type=request["type"],
        recipient=request["recipient"],
        subject=subject,
        content=content,
        html=html,
        template=request["template"],
        variables=request["variables"],
        idempotency_key=request["idempotency_key"],
        expires_at=Notification.deadline(request["type"], request.get("ttl")),
    )
    if notification.type == "sms":
        notification.details = segments(content)
    return notification


def client_notification(client: ApiClient, notification_id: str | uuid.UUID) -> Notification:
    """``client``'s notification ``notification_id``, for status, cancel and retry.

    Raises a 404 :class:`ApiError` for an id that is not one of the client's:
    another client's notification is as unknown as one that never existed,
    so an answer never tells that it exists.
    """
    try:
        pk = notification_id if isinstance(notification_id, uuid.UUID) else uuid.UUID(str(notification_id))
    except ValueError:
        pk = None
    notification = Notification.objects.filter(client=client, pk=pk).first() if pk else None
    if notification is None:
        raise ApiError(404, "no such notification")
    return notification


def send_notification(client: ApiClient, request: dict[str, Any]) -> tuple[Notification, bool]:
    """Store a notification and queue its delivery; returns it and whether it is new.

    A repeated idempotency key returns the first notification and queues nothing (and is not counted
    against the client's notification limit; a new one over it raises ``ratelimit.RateLimited``).
    """
    key = request["idempotency_key"]
    if key and (existing := Notification.objects.filter(client=client, idempotency_key=key).first()):
        return existing, False
    ratelimit.check_client_notifications(client, 1)
    notification = prepare(client, request)
    try:
        with transaction.atomic():
            notification.save(force_insert=True)
            publish_after_commit([notification])
    except IntegrityError:
        if not key:
            raise
        # Another request with the same key won the race.
        return Notification.objects.get(client=client, idempotency_key=key), False
    return notification, True
