"""Publishing through the transactional outbox.

``enqueue`` saves an event in the caller's database transaction and
publishes it right after commit. If RabbitMQ is down, the request still
succeeds: the row stays and :func:`relay` publishes it when the broker is
back. Consumers are idempotent by notification id, so an event published
twice (a crash between publishing and deleting its row) does no harm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.utils import timezone

from zerver.lib.masking import scrub
from zerver.lib.queue import QueueUnavailable, encode, queue_json_publish_many
from zerver.models import OutboxEvent

logger = logging.getLogger(__name__)

# After a failed publish, requests leave publishing to the relay for this long,
# instead of each waiting on a broker that is down.
BACKOFF_SECONDS = 5.0
_skip_direct_until = 0.0


def enqueue(queue_name: str, events: list[dict[str, Any]]) -> None:
    """Save events for ``queue_name`` in the current transaction; publish them after commit."""
    for event in events:
        encode(event)  # an event the broker would refuse (too large) fails its request, not the relay later
    rows = OutboxEvent.objects.bulk_create([OutboxEvent(queue_name=queue_name, event=e) for e in events])
    ids = [row.pk for row in rows]
    if ids[0] is None:  # backends that don't return ids from bulk_create
        ids = []
    transaction.on_commit(lambda: publish_now(ids))


def publish_now(ids: list[int]) -> None:
    """The after-commit publish of a request; any failure is left to the relay."""
    global _skip_direct_until
    if not ids or time.monotonic() < _skip_direct_until:
        return
    try:
        publish(OutboxEvent.objects.filter(pk__in=ids), reconnect_seconds=0.5)
    except QueueUnavailable as e:
        _skip_direct_until = time.monotonic() + BACKOFF_SECONDS
        logger.warning("RabbitMQ unavailable; %d events left to the outbox relay (%s)", len(ids), e)


def publish(rows: Any, reconnect_seconds: float | None = None) -> int:
    """Publish outbox rows, one broker round trip per queue, and delete them. Returns how many."""
    by_queue: dict[str, list[OutboxEvent]] = defaultdict(list)
    for row in rows:
        by_queue[row.queue_name].append(row)
    published = 0
    for queue_name, queue_rows in by_queue.items():
        queue_json_publish_many(queue_name, [row.event for row in queue_rows], reconnect_seconds=reconnect_seconds)
        OutboxEvent.objects.filter(pk__in=[row.pk for row in queue_rows]).delete()
        published += len(queue_rows)
    return published


def relay_once(batch_size: int = 1000, min_age_seconds: float = 1.0) -> int:
    """Publish the oldest waiting rows; returns how many were published.

    Rows younger than ``min_age_seconds`` are left to their request's own
    after-commit publish. ``skip_locked`` lets several relays share the work.
    """
    cutoff = timezone.now() - timezone.timedelta(seconds=min_age_seconds)
    with transaction.atomic():
        rows = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(created_at__lte=cutoff)
            .order_by("id")[:batch_size]
        )
        if not rows:
            return 0
        try:
            return publish(rows)
        except QueueUnavailable as e:
            OutboxEvent.objects.filter(pk__in=[r.pk for r in rows]).update(last_error=scrub(str(e))[:1000])
            raise


def relay(stop: threading.Event, interval: float = 1.0, min_age_seconds: float = 1.0) -> None:
    """Run :func:`relay_once` until ``stop`` is set; sleeps only when there was nothing to do.

    Every ``REAPER_INTERVAL_SECONDS`` it also runs a round of the reaper
    (``zerver.lib.reaper``), so no deployment can run without one.
    """
    from zerver.lib.reaper import reap_once  # it publishes through this module

    pause = interval
    next_reap = 0.0
    while not stop.is_set():
        try:
            if settings.REAPER_INTERVAL_SECONDS > 0 and time.monotonic() >= next_reap:
                next_reap = time.monotonic() + settings.REAPER_INTERVAL_SECONDS
                reap_once()
            published = relay_once(min_age_seconds=min_age_seconds)
            pause = interval
        except QueueUnavailable as e:
            logger.warning("outbox relay: RabbitMQ unavailable (%s)", e)
            published = 0
        except (OperationalError, InterfaceError) as e:
            # The database is down or restarting: wait for it, never exit (the rows are safe in it).
            pause = min(max(pause, interval) * 2, 30.0)
            logger.warning("outbox relay: database unavailable (%s); retrying in %.0f s", e, pause)
            close_old_connections()
            stop.wait(pause)
            continue
        if published:
            logger.info("outbox relay: published %d events", published)
        else:
            stop.wait(interval)
