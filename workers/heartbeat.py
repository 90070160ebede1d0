"""Worker heartbeats: a row per queue and host, refreshed from the consuming loop.

The loop calls :meth:`Heartbeat.beat` after every batch and on every idle
tick, so a heartbeat that goes stale means the loop itself is stuck or gone
(a thread beating on its own would hide a hung batch).
"""

from __future__ import annotations

import logging
import os
import socket
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from zerver.models import WorkerHeartbeat

logger = logging.getLogger(__name__)


class Heartbeat:
    """Writes ``queue_name``'s heartbeat at most every ``WORKER_HEARTBEAT_INTERVAL_SECONDS``."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = timezone.now()
        self._next = 0.0

    def beat(self) -> None:
        """Record that the worker is alive, if the last write is old enough; never raises."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + settings.WORKER_HEARTBEAT_INTERVAL_SECONDS
        try:
            WorkerHeartbeat.objects.update_or_create(
                hostname=self.hostname,
                queue_name=self.queue_name,
                defaults={"pid": self.pid, "started_at": self.started_at, "last_seen": timezone.now()},
            )
        except DatabaseError as e:
            # The health check will call this worker stale, which is the truth the database allows.
            logger.warning("%s: heartbeat not written: %s", self.queue_name, type(e).__name__)
            close_old_connections()

    def stop(self) -> None:
        """A clean stop: remove the row, so a deliberately stopped worker is not reported as dead."""
        try:
            WorkerHeartbeat.objects.filter(hostname=self.hostname, queue_name=self.queue_name, pid=self.pid).delete()
        except DatabaseError as e:
            logger.warning("%s: heartbeat not removed: %s", self.queue_name, type(e).__name__)
