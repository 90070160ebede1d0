"""What every channel shares when it delivers a notification: claiming it and recording the outcome."""

from __future__ import annotations

import uuid

from django.db import transaction

from workers import metrics
from zerver.models import Attempt, Notification, Status


class SendError(Exception):
    """A provider did not take the notification.

    ``transient`` failures (a 4xx from SMTP, a 429 or 5xx from an HTTP API, a
    lost connection) are worth retrying, after ``retry_after`` seconds if the
    provider said so; the others never will succeed as they are.
    """

    def __init__(self, message: str, *, transient: bool, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


def claim(notification: Notification) -> bool:
    """Mark ``notification`` as being delivered; False if it is done already (sent, failed, cancelled).

    This is what makes consumers idempotent by notification id: a redelivered
    or re-published event finds its notification sent and does nothing.
    """
    return notification.transition(Status.PROCESSING)


def record(notification: Notification, provider: str, error: SendError | None) -> None:
    """Save one attempt and move the notification to sent, retrying or failed."""
    with transaction.atomic():
        if error is None:
            Attempt.objects.create(notification=notification, provider=provider, outcome=Attempt.Outcome.SENT)
            notification.transition(Status.SENT, error="")
        elif error.transient:
            Attempt.objects.create(
                notification=notification, provider=provider, outcome=Attempt.Outcome.RETRY, error=str(error)
            )
            notification.transition(Status.RETRYING, error=str(error))
        else:
            Attempt.objects.create(
                notification=notification, provider=provider, outcome=Attempt.Outcome.FAILED, error=str(error)
            )
            notification.transition(Status.FAILED, error=str(error))
    count_outcome(notification, provider, error)


def count_outcome(notification: Notification, provider: str, error: SendError | None) -> None:
    """The delivery metrics of one recorded attempt; labelled by queue and provider, never by recipient."""
    labels = (queue_label(notification), provider)
    if error is None:
        metrics.notifications_delivered.labels(*labels).inc()
        if notification.sent_at is not None:
            metrics.delivery_seconds.labels(*labels).observe(
                max(0.0, (notification.sent_at - notification.created_at).total_seconds())
            )
    elif error.transient:
        metrics.notifications_retried.labels(*labels).inc()
    else:
        metrics.notifications_failed.labels(*labels).inc()


def queue_label(notification: Notification) -> str:
    """The (unsharded) queue that delivers a notification of this type: a bounded label."""
    from zerver.actions.notifications import QUEUE_FOR_TYPE  # it imports channel code that imports this module

    return QUEUE_FOR_TYPE.get(notification.type, notification.type)


def give_up(notification_id: uuid.UUID, reason: str, provider: str = "") -> None:
    """The event was dead-lettered: whatever state its notification is in, it has failed."""
    notification = Notification(pk=notification_id)
    notification.transition(Status.FAILED, error=reason[:2000])
    metrics.notifications_dead_lettered.labels(queue_label(notification), provider).inc()
