"""Worker liveness, for the health check."""

from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """The last sign of life of the worker consuming ``queue_name`` on ``hostname``.

    One row per queue (or shard) and host, not per process: a restarted
    worker takes its predecessor's row over, so a crash leaves no stale row
    behind once the supervisor has restarted it. A worker that stops cleanly
    deletes its row; a row older than ``WORKER_HEARTBEAT_STALE_SECONDS`` is a
    worker that is hung or gone (delete it in the admin after removing a shard).
    """

    queue_name = models.CharField(max_length=100)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hostname", "queue_name"], name="unique_worker_per_host")]

    def __str__(self) -> str:
        return f"{self.queue_name} on {self.hostname} (pid {self.pid})"

    def age_seconds(self) -> float:
        return (timezone.now() - self.last_seen).total_seconds()
