"""The transactional outbox: events written with their data, published after commit."""

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    """An event for RabbitMQ, saved in the transaction that made it necessary.

    The request publishes it right after commit; if RabbitMQ is down the row
    stays, and the outbox relay publishes it once the broker is back. A row
    is deleted once published.
    """

    queue_name = models.CharField(max_length=100)
    event = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.queue_name} #{self.pk}"
