"""Workers that exercise the framework itself: ``noop`` and ``test``.

Like Zulip's ``test`` queue, they are real registered workers, used by the
test suite and by anyone checking that a deployment's queues flow.
"""

import json
import os
import time
from typing import Any

from django.conf import settings

from workers.base import InvalidEvent, QueueProcessingWorker, RetryLater, assign_queue


@assign_queue("noop")
class NoopWorker(QueueProcessingWorker):
    """Consumes and drops events: measures the framework's own cost."""

    deployed = False

    def consume(self, event: dict[str, Any]) -> None:
        pass


@assign_queue("test")
class TestWorker(QueueProcessingWorker):
    """Appends each consumed event to ``TEST_WORKER_OUTPUT`` as a JSON line.

    The event steers it: ``sleep`` (seconds before finishing), ``retry_until``
    (raise RetryLater while the attempt is below it), ``always_retry``,
    ``fail`` (raise an error with that text), ``crash`` (the process dies). An event without ``id`` is
    invalid.
    """

    deployed = False

    def consume(self, event: dict[str, Any]) -> None:
        if "id" not in event:
            raise InvalidEvent("event has no 'id'")
        if event.get("sleep"):
            time.sleep(float(event["sleep"]))
        if event.get("always_retry") or self.attempt < int(event.get("retry_until", 0)):
            raise RetryLater(f"asked to retry (attempt {self.attempt})")
        if event.get("fail"):
            raise RuntimeError(event["fail"])
        if event.get("crash"):
            os._exit(70)  # what a segfault or the OOM killer does: no exception, no cleanup
        line = json.dumps({"id": event["id"], "attempt": self.attempt, "queue": self.queue_name, "pid": os.getpid()})
        # One write(2) of a short line to an O_APPEND file: whole even with several writers.
        fd = os.open(settings.TEST_WORKER_OUTPUT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
