"""What operators and clients do to notifications by hand: retry failed ones, cancel pending ones.

Both go through the status table (``TRANSITIONS``), so a notification that
moved on meanwhile (a worker sent it) is left alone. :func:`cancel` and
:func:`retry` are a client's, by id: only its own notifications (another's
is a 404).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from workers import metrics
from zerver.actions.notifications import client_notification, publish_after_commit
from zerver.lib.api import ApiError
from zerver.lib.delivery import queue_label
from zerver.models import ApiClient, Notification, Status
from zerver.models.notifications import TRANSITIONS


def retry_failed(notifications: Iterable[Notification]) -> int:
    """Move failed notifications back to pending and queue their delivery anew; returns how many.

    The events are published after the commit (outbox), with a fresh attempt count.
    """
    with transaction.atomic():
        moved = [n for n in notifications if n.status == Status.FAILED and n.transition(Status.PENDING, error="")]
        publish_after_commit(moved)
    return len(moved)


def cancel_pending(notifications: Iterable[Notification]) -> int:
    """Cancel notifications not yet delivered (pending or retrying); a queued event then finds nothing to do."""
    cancelled = [n for n in notifications if n.transition(Status.CANCELLED)]
    for notification in cancelled:
        metrics.notifications_cancelled.labels(queue_label(notification)).inc()
    return len(cancelled)


def reopen(notification_ids: Iterable[uuid.UUID]) -> int:
    """Failed -> pending for notifications whose dead-lettered events are replayed, so they can be claimed."""
    return Notification.objects.filter(pk__in=list(notification_ids), status__in=TRANSITIONS[Status.PENDING]).update(
        status=Status.PENDING, error="", updated_at=timezone.now()
    )


def cancel(client: ApiClient, notification_id: str | uuid.UUID) -> Notification:
    """Cancel one of ``client``'s notifications; 404 if it is not the client's, 409 if it is past cancelling."""
    notification = client_notification(client, notification_id)
    if not cancel_pending([notification]):
        raise ApiError(409, "only a pending or retrying notification can be cancelled", {"status": notification.status})
    return notification


def retry(client: ApiClient, notification_id: str | uuid.UUID) -> Notification:
    """Queue one of ``client``'s failed notifications again; 404 if it is not the client's, 409 if it has not failed."""
    notification = client_notification(client, notification_id)
    if not retry_failed([notification]):
        raise ApiError(409, "only a failed notification can be retried", {"status": notification.status})
    return notification


def resend(notifications: Iterable[Notification]) -> list[Notification]:
    """A new notification for each sent one, with the same content, linked to it (``details["resent_from"]``).

    It gets a deadline of its own and no idempotency key (that belongs to the first).
    """
    copies = []
    with transaction.atomic():
        for old in notifications:
            if old.status != Status.SENT:
                continue
            copies.append(
                Notification.objects.create(
                    client_id=old.client_id,
                    type=old.type,
                    recipient=old.recipient,
                    subject=old.subject,
                    content=old.content,
                    html=old.html,
                    template=old.template,
                    variables=old.variables,
                    details={**old.details, "resent_from": str(old.pk)},
                    expires_at=Notification.deadline(old.type),
                )
            )
        publish_after_commit(copies)
    return copies
