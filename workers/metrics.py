"""Every Prometheus metric of the workers, in one place.

They live in prometheus_client's default registry: a worker process serves
them on its own port (:func:`serve`, started by ``process_queue``) and the web
app's ``/metrics`` (django-prometheus) exports the same registry. Tests read
them back with :func:`value`.

Labels are queue names and provider names only, never a user, recipient or
token: those would leak personal data and make the label set unbounded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from django.conf import settings
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# --- The framework: every queue -------------------------------------------------

consumed = Counter("queue_events_consumed", "Deliveries taken from the queue.", ["queue"])
succeeded = Counter("queue_events_succeeded", "Events consumed without error.", ["queue"])
retried = Counter("queue_events_retried", "Events scheduled for a retry with backoff.", ["queue"])
dead_lettered = Counter("queue_events_dead_lettered", "Events sent to the dead-letter queue.", ["queue"])
expired = Counter("queue_events_expired", "Events dropped because a retry would come after their deadline.", ["queue"])
last_event = Gauge("queue_last_event_timestamp_seconds", "When the queue's last batch was settled.", ["queue"])
batch_seconds = Histogram(
    "queue_batch_seconds",
    "Time to consume, settle and acknowledge one batch.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

# --- Delivery of notifications (zerver.lib.delivery) ----------------------------

notifications_delivered = Counter(
    "notifications_delivered", "Notifications a provider accepted.", ["queue", "provider"]
)
notifications_retried = Counter(
    "notifications_retried", "Delivery attempts that failed transiently and will be retried.", ["queue", "provider"]
)
notifications_failed = Counter(
    "notifications_failed", "Delivery attempts a provider refused for good.", ["queue", "provider"]
)
notifications_dead_lettered = Counter(
    "notifications_dead_lettered", "Notifications whose event was dead-lettered.", ["queue", "provider"]
)
notifications_expired = Counter(
    "notifications_expired", "Notifications whose deadline passed before delivery.", ["queue", "reason"]
)
notifications_cancelled = Counter("notifications_cancelled", "Notifications cancelled before delivery.", ["queue"])
notifications_reaped = Counter(
    "notifications_reaped", "Stranded notifications the reaper published again.", ["queue", "status"]
)
oldest_unfinished = Gauge(
    "notifications_oldest_unfinished_seconds",
    "Age of the oldest notification in each unfinished status (since it last moved), as the reaper saw it.",
    ["status"],
)
delivery_seconds = Histogram(
    "notification_delivery_seconds",
    "From acceptance by the API (created_at) to delivery (sent_at).",
    ["queue", "provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
provider_seconds = Histogram(
    "provider_request_seconds",
    "Time a provider (SMTP, SMS API, push service) took to answer one request.",
    ["provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


@contextmanager
def observe_provider(provider: str) -> Iterator[None]:
    """Time a provider request: ``with observe_provider("smtp"): send(...)``; counted even if it raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        provider_seconds.labels(provider).observe(time.perf_counter() - start)


# --- Queue depth, read from the broker on scrape --------------------------------


class QueueDepthCollector(Collector):
    """``queue_depth{queue}`` for the main, retry and dead-letter queues of some queues.

    Read from the broker with passive declares when Prometheus scrapes, not
    from the worker loop, and cached for ``QUEUE_DEPTH_CACHE_SECONDS`` so that
    several scrapers (or a scrape storm) cost the broker one read per period.
    ``queue_depth_up`` is 0 when the broker could not be read.
    """

    def __init__(self, queues: Callable[[], Iterable[str]]) -> None:
        self.queues = queues
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._depths: dict[str, int] = {}
        self._up = 0.0
        self._client = None

    def read(self) -> tuple[dict[str, int], float]:
        from zerver.lib.queue import QueueClient, QueueUnavailable, topology

        with self._lock:
            if time.monotonic() - self._read_at >= settings.QUEUE_DEPTH_CACHE_SECONDS:
                names = [name for queue in self.queues() for name in topology(queue)]
                if self._client is None:
                    self._client = QueueClient()
                try:
                    depths = self._client.depths(names, reconnect_seconds=0)
                    self._depths = {name: n for name, n in depths.items() if n is not None}
                    self._up = 1.0
                except QueueUnavailable as e:
                    logger.warning("queue depth: broker unreadable (%s)", type(e.__cause__).__name__)
                    self._depths, self._up = {}, 0.0
                self._read_at = time.monotonic()
            return self._depths, self._up

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depths, up = self.read()
        depth = GaugeMetricFamily("queue_depth", "Messages ready in a queue, read from the broker.", labels=["queue"])
        for name, count in sorted(depths.items()):
            depth.add_metric([name], count)
        yield depth
        yield GaugeMetricFamily("queue_depth_up", "1 if the last read of the queue depths succeeded.", value=up)


def register_queue_depth(queues: Callable[[], Iterable[str]]) -> QueueDepthCollector:
    """Export ``queue_depth`` for ``queues()`` (evaluated on each read) from the default registry."""
    collector = QueueDepthCollector(queues)
    REGISTRY.register(collector)
    return collector


def metrics_port(queue_index: int) -> int | None:
    """The port of a worker's metrics server: ``WORKER_METRICS_BASE_PORT`` + its index; None if disabled (0)."""
    base = settings.WORKER_METRICS_BASE_PORT
    return base + queue_index if base else None


def serve(port: int) -> bool:
    """Serve the default registry on ``http://0.0.0.0:port/metrics`` from a daemon thread.

    A port already taken is logged, not fatal: a worker without metrics still
    delivers, and its heartbeat still says it is alive.
    """
    try:
        start_http_server(port, addr=settings.WORKER_METRICS_ADDR)
    except OSError as e:
        logger.error("metrics server not started on port %d: %s", port, e)
        return False
    logger.info("metrics on :%d/metrics", port)
    return True


def value(name: str, queue: str, **labels: str) -> float:
    """The current value of a metric for one queue (0 if never set)."""
    return REGISTRY.get_sample_value(name, {"queue": queue, **labels}) or 0.0
