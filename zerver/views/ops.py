"""Operations endpoints: ``/health`` and the web app's ``/metrics``."""

from __future__ import annotations

import threading

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django_prometheus.exports import ExportToDjangoView

from workers import metrics
from zerver.lib import health as checks

_depth_registered = threading.Lock()
_depth_collector: metrics.QueueDepthCollector | None = None


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database, the broker and every expected worker are fine, else 503. No auth."""
    ok, body = checks.health()
    return JsonResponse(body, status=200 if ok else 503)


@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """Readiness for a load balancer: 200 when this web process can serve the API, else 503."""
    ok, body = checks.readiness()
    return JsonResponse(body, status=200 if ok else 503)


@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "alive"})


@require_GET
def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """django-prometheus's export, plus ``queue_depth`` for every registered queue.

    The web app reports every queue's depth, so a backlog shows even when
    its worker is down. Unauthenticated: firewall it to the Prometheus hosts.
    """
    global _depth_collector
    with _depth_registered:
        if _depth_collector is None:
            from workers.base import registered_queues

            _depth_collector = metrics.register_queue_depth(registered_queues)
    return ExportToDjangoView(request)
