"""Per-queue counters of the worker framework.

They live in prometheus_client's default registry, so the metrics endpoint
of the operations work exports them as they are; tests and the heartbeat read
them back with :func:`value`.
"""

from prometheus_client import REGISTRY, Counter, Gauge

consumed = Counter("queue_events_consumed", "Deliveries taken from the queue.", ["queue"])
succeeded = Counter("queue_events_succeeded", "Events consumed without error.", ["queue"])
retried = Counter("queue_events_retried", "Events scheduled for a retry with backoff.", ["queue"])
dead_lettered = Counter("queue_events_dead_lettered", "Events sent to the dead-letter queue.", ["queue"])
last_event = Gauge("queue_last_event_timestamp_seconds", "When the queue's last batch was settled.", ["queue"])


def value(name: str, queue: str) -> float:
    """The current value of a metric for one queue (0 if never set)."""
    return REGISTRY.get_sample_value(name, {"queue": queue}) or 0.0
