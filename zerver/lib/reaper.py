"""The reaper: no accepted notification is left unfinished.

Each round (``outbox_relay`` runs one every ``REAPER_INTERVAL_SECONDS``, and
``./manage.py reap_notifications`` on demand):

* an unfinished notification past its deadline ends ``expired`` (one that is
  ``processing`` only once it has not moved for ``REAPER_STRANDED_SECONDS``:
  a worker may be sending it right now);
* one that has not moved for ``REAPER_STRANDED_SECONDS`` (longer than any
  retry waits) has no live event behind it, or one stuck far behind a
  backlog: its delivery event is published again, through the outbox. A
  ``processing`` one goes back to ``retrying`` first, so the new event may
  claim it. A second event for one that still has its first is harmless:
  whichever comes second finds it claimed or done.

Several relays may run: rows are locked with SKIP LOCKED, so each round's
share is reaped once.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from workers import metrics
from zerver.actions.notifications import QUEUE_FOR_TYPE, publish_after_commit
from zerver.lib.delivery import expire
from zerver.models import Notification, Status
from zerver.models.notifications import UNFINISHED_STATUSES

logger = logging.getLogger(__name__)

BATCH = 1000


@dataclass
class Reaped:
    expired: int = 0
    republished: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.expired + sum(self.republished.values())


def past_deadline(now: Any) -> Q:
    """Unfinished and past its deadline; rows from before deadlines existed count from their channel's TTL."""
    legacy = Q()
    for type_, ttl in settings.DELIVERY_TTL_SECONDS.items():
        legacy |= Q(type=type_, created_at__lte=now - timedelta(seconds=ttl))
    return Q(expires_at__lte=now) | (Q(expires_at__isnull=True) & legacy)


def reap_once(now: Any = None) -> Reaped:
    now = now or timezone.now()
    stranded_before = now - timedelta(seconds=settings.REAPER_STRANDED_SECONDS)
    result = Reaped()
    with transaction.atomic():
        late = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(past_deadline(now))
            .filter(
                Q(status__in=[Status.PENDING, Status.RETRYING])
                | Q(status=Status.PROCESSING, updated_at__lte=stranded_before)
            )
            .values_list("pk", flat=True)[:BATCH]
        )
    if late:
        result.expired = expire(late, "stranded past its deadline: expired by the reaper")
    with transaction.atomic():
        stranded = list(
            Notification.objects.select_for_update(skip_locked=True)
            .filter(status__in=UNFINISHED_STATUSES, updated_at__lte=stranded_before)
            .exclude(past_deadline(now))
            .only("pk", "type", "recipient", "status", "expires_at")[:BATCH]
        )
        if stranded:
            processing = [n.pk for n in stranded if n.status == Status.PROCESSING]
            if processing:
                Notification.objects.filter(pk__in=processing, status=Status.PROCESSING).update(
                    status=Status.RETRYING, updated_at=now
                )
            Notification.objects.filter(pk__in=[n.pk for n in stranded]).update(updated_at=now)
            publish_after_commit(stranded)
            for notification in stranded:
                result.republished[notification.status] += 1
                metrics.notifications_reaped.labels(QUEUE_FOR_TYPE[notification.type], notification.status).inc()
    if result.total:
        logger.warning(
            "reaper: expired %d past their deadline, published %s again", result.expired, dict(result.republished)
        )
    observe_oldest(now)
    return result


def oldest_unfinished(now: Any = None) -> dict[str, float]:
    """Seconds since the oldest notification in each unfinished status last moved (0 when there is none)."""
    now = now or timezone.now()
    rows = dict(
        Notification.objects.filter(status__in=UNFINISHED_STATUSES)
        .values_list("status")
        .annotate(oldest=Min("updated_at"))
        .values_list("status", "oldest")
    )
    return {
        status: round(max(0.0, (now - rows[status]).total_seconds()), 1) if status in rows else 0.0
        for status in sorted(UNFINISHED_STATUSES)
    }


def observe_oldest(now: Any = None) -> dict[str, float]:
    ages = oldest_unfinished(now)
    for status, age in ages.items():
        metrics.oldest_unfinished.labels(status).set(age)
    return ages
