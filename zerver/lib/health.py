"""The checks behind ``GET /health``: database, broker, worker heartbeats.

Each check says only whether it passed and, if not, the class of the error:
the endpoint is unauthenticated, and an exception's text can carry a host,
a user name or worse (``RABBITMQ_URL`` holds the broker password).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from zerver.lib.queue import QueueClient, QueueUnavailable
from zerver.models import WorkerHeartbeat


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as e:
        return {"ok": False, "error": type(e).__name__}
    return {"ok": True}


def check_broker() -> dict[str, Any]:
    """Connect and passively declare the service's queues; a queue not declared yet is no failure."""
    if settings.QUEUE_BACKEND == "inline":
        return {"ok": True, "backend": "inline"}
    from workers.base import registered_queues

    client = QueueClient()
    try:
        client.depths(registered_queues(), reconnect_seconds=0)
    except QueueUnavailable as e:
        return {"ok": False, "error": type(e.__cause__ or e).__name__}
    finally:
        client.close()
    return {"ok": True}


def check_workers() -> dict[str, Any]:
    """Every worker with a heartbeat row; one older than ``WORKER_HEARTBEAT_STALE_SECONDS`` fails the check."""
    try:
        beats = list(WorkerHeartbeat.objects.order_by("queue_name", "hostname"))
    except DatabaseError as e:
        return {"ok": False, "error": type(e).__name__}
    stale_before = timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS)
    workers = [
        {"queue": b.queue_name, "last_seen_seconds_ago": round(b.age_seconds(), 1), "ok": b.last_seen >= stale_before}
        for b in beats
    ]
    return {"ok": all(w["ok"] for w in workers), "workers": workers}


def health() -> tuple[bool, dict[str, Any]]:
    checks = {"database": check_database(), "broker": check_broker(), "workers": check_workers()}
    ok = all(c["ok"] for c in checks.values())
    return ok, {"status": "ok" if ok else "unhealthy", "checks": checks}
