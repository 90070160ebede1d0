"""What every channel shares when it delivers a notification: claiming it and recording the outcome."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from workers import metrics
from zerver.lib.masking import scrub
from zerver.models import Attempt, Notification, Status


class SendError(Exception):
    """A provider did not take the notification.

    ``transient`` failures (a 4xx from SMTP, a 429 or 5xx from an HTTP API, a
    lost connection) are worth retrying, after ``retry_after`` seconds if the
    provider said so; the others never will succeed as they are.
    """

    def __init__(self, message: str, *, transient: bool, retry_after: float = 0.0) -> None:
        super().__init__(scrub(message))  # provider texts may quote a token or a credential
        self.transient = transient
        self.retry_after = retry_after


def claim(
    ids: Iterable[uuid.UUID], redelivered: Iterable[uuid.UUID] = (), load: tuple[str, ...] | None = None
) -> list[Notification]:
    """Mark notifications as being delivered; returns those that were not done already, with ``load`` read.

    This is what makes consumers idempotent by notification id: a redelivered
    or re-published event finds its notification sent (or failed, expired,
    cancelled) and nothing is sent again. One that is ``processing`` is being
    delivered by another worker, and is left to it, unless its event is a
    ``redelivered`` one: the broker hands an event over again only when the
    worker that held it is gone.
    """
    fields = DELIVERY_FIELDS if load is None else load
    fresh = Notification.bulk_transition(list(ids), Status.PROCESSING, load=fields, allowed=CLAIMABLE)
    again = Notification.bulk_transition(list(redelivered), Status.PROCESSING, load=fields)
    return fresh + again


# What a first delivery of an event may claim: not a notification another worker is delivering.
CLAIMABLE = frozenset({Status.PENDING, Status.RETRYING})


# What the channels read of a notification to deliver it.
DELIVERY_FIELDS = ("type", "recipient", "subject", "content", "html", "details", "created_at", "expires_at")


def past_deadline(notification: Notification) -> bool:
    return notification.expires_at is not None and notification.expires_at <= timezone.now()


def expire(ids: list[uuid.UUID], reason: str) -> int:
    """Their deadline passed before they were delivered: they end ``expired``, counted; returns how many moved."""
    moved = Notification.bulk_transition(ids, Status.EXPIRED, load=("type",), error=reason[:2000])
    for notification in moved:
        metrics.notifications_expired.labels(queue_label(notification), reason_label(reason)).inc()
    return len(moved)


def reason_label(reason: str) -> str:
    """A bounded metric label for why a notification expired."""
    if reason.startswith("expired after"):
        return "retries_past_deadline"
    if reason.startswith("stranded"):
        return "stranded_past_deadline"
    return "deadline_before_sending"


@dataclass
class SendResult:
    """What came of sending one notification: the provider's id for it, or the error."""

    notification: Notification
    error: SendError | None = None
    provider_id: str = ""


def record(provider: str, results: list[SendResult]) -> None:
    """Save one attempt per notification and move each to sent, retrying or failed, in one transaction."""
    with transaction.atomic():
        Attempt.objects.bulk_create(
            Attempt(
                notification=r.notification,
                provider=provider,
                outcome=Attempt.Outcome.SENT
                if r.error is None
                else Attempt.Outcome.RETRY
                if r.error.transient
                else Attempt.Outcome.FAILED,
                error="" if r.error is None else str(r.error),
                provider_id=r.provider_id,
            )
            for r in results
        )
        sent = Notification.bulk_transition(
            [r.notification.pk for r in results if r.error is None], Status.SENT, error=""
        )
        sent_at = {n.pk: n.sent_at for n in sent}
        for r in results:
            if r.error is None:
                r.notification.sent_at = sent_at.get(r.notification.pk)
            else:
                status = Status.RETRYING if r.error.transient else Status.FAILED
                r.notification.transition(status, error=str(r.error))
    for r in results:
        count_outcome(r.notification, provider, r.error)


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
