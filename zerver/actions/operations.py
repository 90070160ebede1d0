"""What operators do to notifications by hand: retry failed ones, cancel pending ones.

Both go through the status table (``TRANSITIONS``), so a notification that
moved on meanwhile (a worker sent it) is left alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from zerver.actions.notifications import publish_after_commit
from zerver.models import Notification, Status
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
    return sum(1 for n in notifications if n.transition(Status.CANCELLED))


def reopen(notification_ids: Iterable[uuid.UUID]) -> int:
    """Failed -> pending for notifications whose dead-lettered events are replayed, so they can be claimed."""
    return Notification.objects.filter(pk__in=list(notification_ids), status__in=TRANSITIONS[Status.PENDING]).update(
        status=Status.PENDING, error="", updated_at=timezone.now()
    )
