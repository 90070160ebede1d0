"""The checks behind the health endpoints.

* ``GET /health``: the whole service, for monitoring and paging: the
  database, the broker, and a fresh heartbeat from every worker the
  deployment is expected to run.
* ``GET /health/ready``: readiness of this web process, for a load balancer:
  only what serving the API needs (its database). Workers or the broker
  being down must not take the API out of rotation: the outbox holds
  accepted notifications until they are back.
* ``GET /health/live``: liveness, for a process supervisor: it answers.

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


def expected_workers() -> list[str]:
    """The queue workers (shards spelled out) this deployment runs: what the process-manager units start.

    ``HEALTH_EXPECTED_WORKERS`` names them where the deployment runs a
    different set; otherwise they follow from the same settings the units
    are rendered from. With ``QUEUE_BACKEND=inline`` no worker runs at all.
    """
    if settings.QUEUE_BACKEND == "inline":
        return []
    if settings.HEALTH_EXPECTED_WORKERS is not None:
        return list(settings.HEALTH_EXPECTED_WORKERS)
    from zerver.lib.deployment import default_queues, worker_names

    return worker_names(default_queues(), settings.MOBILE_NOTIFICATIONS_SHARDS)


def check_workers() -> dict[str, Any]:
    """Every expected worker has a fresh heartbeat on some host; any heartbeat gone stale fails too.

    A worker that stopped (cleanly, so it removed its row, or never started)
    is ``missing``; one whose row is older than ``WORKER_HEARTBEAT_STALE_SECONDS``
    is ``stale`` (hung or killed). Host names are not shown: the endpoint is public.
    """
    try:
        beats = list(WorkerHeartbeat.objects.order_by("queue_name", "hostname"))
    except DatabaseError as e:
        return {"ok": False, "error": type(e).__name__}
    stale_before = timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS)
    by_queue: dict[str, list[WorkerHeartbeat]] = {}
    for beat in beats:
        by_queue.setdefault(beat.queue_name, []).append(beat)
    workers = []
    for queue in dict.fromkeys([*expected_workers(), *by_queue]):
        rows = by_queue.get(queue, [])
        if not rows:
            workers.append({"queue": queue, "ok": False, "error": "missing"})
            continue
        stale = [b for b in rows if b.last_seen < stale_before]
        worker: dict[str, Any] = {
            "queue": queue,
            "ok": not stale,
            "processes": len(rows),
            "last_seen_seconds_ago": round(min(b.age_seconds() for b in rows), 1),
        }
        if stale:
            worker["error"] = "stale"
        workers.append(worker)
    return {"ok": all(w["ok"] for w in workers), "workers": workers}


def check_deliveries() -> dict[str, Any]:
    """The oldest unfinished notification per status: past ``HEALTH_MAX_UNFINISHED_SECONDS``, deliveries are stuck."""
    from zerver.lib.reaper import oldest_unfinished

    try:
        ages = oldest_unfinished()
    except DatabaseError as e:
        return {"ok": False, "error": type(e).__name__}
    limit = settings.HEALTH_MAX_UNFINISHED_SECONDS
    return {"ok": max(ages.values(), default=0.0) <= limit, "oldest_unfinished_seconds": ages, "limit_seconds": limit}


def check_circuits() -> dict[str, Any]:
    """Provider circuits: an open one means a provider keeps failing (its pushes are held meanwhile)."""
    from zerver.lib.push import circuit

    try:
        states = circuit.states()
    except Exception as e:  # the cache (Redis) unreachable: say so, by class only
        return {"ok": False, "error": type(e).__name__}
    circuits = [{"circuit": c.name, "open": c.open, "retry_in_seconds": c.retry_in} for c in states]
    return {"ok": not any(c.open for c in states), "circuits": circuits}


def health() -> tuple[bool, dict[str, Any]]:
    """The whole service, for monitoring: database, broker, every expected worker, and nothing stuck."""
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "workers": check_workers(),
        "deliveries": check_deliveries(),
        "circuits": check_circuits(),
    }
    ok = all(c["ok"] for c in checks.values())
    return ok, {"status": "ok" if ok else "unhealthy", "checks": checks}


def readiness() -> tuple[bool, dict[str, Any]]:
    """Can this web process take API requests? It needs its database; a broker outage is the outbox's job."""
    checks = {"database": check_database()}
    ok = checks["database"]["ok"]
    return ok, {"status": "ready" if ok else "not ready", "checks": checks}
