"""The queue-processing worker framework, after Zulip's ``zerver/worker/base.py``.

A worker is a small class registered for a queue name::

    @assign_queue("email_notifications")
    class EmailWorker(QueueProcessingWorker):
        def consume(self, event): ...

``./manage.py process_queue --queue_name=email_notifications`` finds it in the
registry and runs it. The failure policy lives here and only here:

* :class:`RetryLater` (or a subclass), and a database error that passes
  (a deadlock, a lost connection), schedules the event again after an
  exponential backoff, with its attempt count raised; after ``max_retries``
  retries it is dead-lettered.
* Any other exception, and a message that is not a JSON object, dead-letters
  the event at once with the reason in its headers. The worker logs it and
  goes on with the next event.
* A batch is acknowledged only after each of its events was handled or
  re-published (to a retry or the dead-letter queue) and the broker
  confirmed that, so a crash at any point redelivers rather than loses.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connections

from workers import metrics
from zerver.lib.masking import scrub
from zerver.lib.queue import (
    ATTEMPT_HEADER,
    CONNECTION_ERRORS,
    QueueClient,
    QueueMessage,
    dlq_name,
    encode,
    retry_queue_name,
    retry_wait,
    shard_count,
    shard_queue_names,
)

if TYPE_CHECKING:
    from workers.heartbeat import Heartbeat

logger = logging.getLogger(__name__)


class RetryLater(Exception):
    """A transient failure: try this event again later.

    ``delay`` asks for at least that many seconds (a provider's Retry-After).
    ``event`` replaces the event for the retry, e.g. to retry only the devices
    of a push that did not get it.
    """

    def __init__(self, reason: str = "", *, delay: float = 0.0, event: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.delay = delay
        self.event = event


def is_transient(error: BaseException) -> bool:
    """Worth retrying: a RetryLater, or the database refusing for now (a deadlock, a lost connection)."""
    return isinstance(error, (RetryLater, OperationalError, InterfaceError))


def database_answers() -> bool:
    """Whether the database takes a query now (on a fresh connection)."""
    close_old_connections()
    try:
        connections["default"].close()
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except DatabaseError:
        return False


class InvalidEvent(Exception):
    """The event is well-formed JSON but not what the worker expects; never retried."""


# --- The registry ------------------------------------------------------------------

_workers: dict[str, type[QueueProcessingWorker]] = {}

W = TypeVar("W", bound="type[QueueProcessingWorker]")


def assign_queue(queue_name: str) -> Callable[[W], W]:
    """Class decorator: ``queue_name`` is consumed by this worker class."""

    def register(cls: W) -> W:
        if queue_name in _workers:
            raise ValueError(f"queue {queue_name!r} already has worker {_workers[queue_name].__name__}")
        cls.queue_name = queue_name
        _workers[queue_name] = cls
        return cls

    return register


def registered_queues() -> list[str]:
    """Every queue a worker process can be started for, shards spelled out."""
    return [name for queue in sorted(_workers) for name in shard_queue_names(queue)]


def base_queue_name(queue_name: str) -> str:
    """``x_shard3`` -> ``x`` for a sharded queue; other names unchanged."""
    base, sep, shard = queue_name.rpartition("_shard")
    if sep and shard.isdigit() and base in _workers and 1 <= int(shard) <= shard_count(base):
        return base
    return queue_name


def get_worker_class(queue_name: str) -> type[QueueProcessingWorker]:
    try:
        return _workers[base_queue_name(queue_name)]
    except KeyError:
        raise KeyError(f"no worker is registered for queue {queue_name!r}") from None


def get_worker(queue_name: str, worker_num: int = 0) -> QueueProcessingWorker:
    """A worker for ``queue_name``: a registered queue or one of its shards.

    For a sharded queue named without its shard, ``worker_num`` picks the
    shard (1-based), as Zulip's ``process_queue --worker_num`` does.
    """
    cls = get_worker_class(queue_name)
    if queue_name == cls.queue_name and shard_count(queue_name) > 1:
        if not 1 <= worker_num <= shard_count(queue_name):
            raise ValueError(
                f"{queue_name} has {shard_count(queue_name)} shards: name one "
                f"({queue_name}_shardN) or pass --worker_num=N"
            )
        queue_name = f"{queue_name}_shard{worker_num}"
    return cls(queue_name=queue_name, worker_num=worker_num)


# --- The failure policy ------------------------------------------------------------


def describe(error: BaseException) -> str:
    return scrub(f"{type(error).__name__}: {error}")


class QueueProcessingWorker:
    """Consumes one event at a time with :meth:`consume`.

    Deliveries still arrive and are acknowledged in batches of up to
    ``batch_size``; a stop request is honoured between two events.
    """

    queue_name: ClassVar[str]
    # Whether production deployments run this worker (the framework's own test workers don't).
    deployed: ClassVar[bool] = True
    max_retries: int = settings.QUEUE_MAX_RETRIES
    batch_size: int = 100
    # Seconds a batch may wait to fill before it is handed over.
    batch_wait: float = 0.1

    def __init__(self, queue_name: str | None = None, worker_num: int = 0) -> None:
        if queue_name is not None:
            self.queue_name = queue_name  # type: ignore[misc]  # a shard of the class's queue
        self.worker_num = worker_num
        self.client: QueueClient | None = None
        self._stop = threading.Event()
        self.current: QueueMessage | None = None
        # Set by process_queue; beaten from the loop after each batch and each idle tick.
        self.heartbeat: Heartbeat | None = None

    # What subclasses write ---------------------------------------------------

    def consume(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def consume_batch(self, messages: list[QueueMessage]) -> None:
        """Handle a batch. Raise to fail all of it; :meth:`QueueMessage.fail` fails one."""
        for message in messages:
            if self._stop.is_set():
                message.deferred = True  # left unacknowledged: the broker requeues it
                continue
            self.current = message
            try:
                assert message.event is not None
                self.consume(message.event)
            except Exception as e:
                message.fail(e)
            finally:
                self.current = None

    @property
    def attempt(self) -> int:
        """The attempt number of the event being consumed (1 on first delivery)."""
        return self.current.attempt if self.current is not None else 1

    # Running -------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the event or batch in hand, acknowledge it, and return from :meth:`start`."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _tick(self) -> bool:
        """The consuming loop's should-stop check, called between batches and when idle: beats too."""
        if self.heartbeat is not None:
            self.heartbeat.beat()
        return self._stop.is_set()

    def start(self) -> None:
        """Consume until :meth:`stop`, reconnecting with backoff whenever the broker goes away."""
        logger.info("worker %s consuming %s", type(self).__name__, self.queue_name)
        pause = 0.5
        connected_once = False
        while not self._stop.is_set():
            self.client = QueueClient()
            self.client.connected_once = connected_once
            try:
                for batch in self.client.consume_batches(self.queue_name, self.batch_size, self._tick, self.batch_wait):
                    self.process_batch(batch)
                    pause = 0.5
            except CONNECTION_ERRORS as e:
                connected_once = self.client.connected_once
                logger.warning("%s: %s; retrying in %.1f s", self.queue_name, self.client.connection_problem(e), pause)
                self._tick()  # alive, though waiting for the broker
                self._stop.wait(pause)
                pause = min(pause * 2, 30.0)
            finally:
                self.client.close()
        connections.close_all()
        logger.info("worker %s on %s stopped", type(self).__name__, self.queue_name)

    def process_batch(self, messages: list[QueueMessage]) -> None:
        """Consume a batch, settle each message's outcome, and acknowledge it.

        A connection error from here leaves the batch unacknowledged; the
        broker redelivers it to the reconnected worker.
        """
        assert self.client is not None
        started = time.perf_counter()
        metrics.consumed.labels(self.queue_name).inc(len(messages))
        valid = [m for m in messages if m.malformed is None]
        fresh = [m for m in valid if not m.redelivered]
        if fresh:
            self.consume_valid(fresh)
        redelivered = [m for m in valid if m.redelivered]
        if redelivered:
            self.consume_redelivered(redelivered)
        # Acks are cumulative, so settle up to the first message a stop left unhandled.
        cut = next((i for i, m in enumerate(messages) if m.deferred), len(messages))
        settled = messages[:cut]
        republish = self.settle(settled)
        if republish:
            self.client.publish_raw(republish)
        for message in settled:
            try:
                if message.dead_letter_reason is not None:
                    self.dead_lettered(message, message.dead_letter_reason)
                elif message.expired_reason is not None:
                    self.expired(message, message.expired_reason)
            except Exception:
                # The event is settled (in the DLQ, or past its deadline); a failed follow-up must not redeliver it.
                logger.exception("%s: follow-up of a settled event failed", self.queue_name)
        if settled:
            self.client.ack_through(settled[-1].delivery_tag)
        metrics.last_event.labels(self.queue_name).set(time.time())
        metrics.batch_seconds.labels(self.queue_name).observe(time.perf_counter() - started)

    def consume_redelivered(self, messages: list[QueueMessage]) -> None:
        """Redelivered messages: their worker may have died handling one of them. Consume them, and count.

        While a message is in hand, a counter of it in the shared cache is up
        by one; it goes down again once the message was handled. So the counter
        says how often the message was in hand when a worker died (a crash, not
        an exception: those are caught per event). The first time, the batch is
        consumed as usual; a message back again after that is consumed alone,
        so the one that kills the worker is found, and once its counter passes
        ``QUEUE_MAX_REDELIVERIES`` it is dead-lettered, instead of crash-looping
        every worker of the queue. The others go through and are cleared.
        """
        keys = {id(m): self.redelivery_key(m) for m in messages}
        try:
            seen = cache.get_many(list(keys.values()))
        except Exception:  # no cache to count with: consume them as any others
            logger.warning("%s: no cache to count redeliveries with", self.queue_name)
            self.consume_valid(messages)
            return
        batch = [m for m in messages if not seen.get(keys[id(m)])]
        if batch:
            cache.set_many({keys[id(m)]: 1 for m in batch}, timeout=86400)
            self.consume_valid(batch)
            cache.delete_many([keys[id(m)] for m in batch])
        for message in messages:
            count = seen.get(keys[id(message)])
            if not count:
                continue
            if count + 1 > settings.QUEUE_MAX_REDELIVERIES:
                message.malformed = (
                    f"redelivered {count} times while in hand, never settled: it kills the worker that handles it"
                )
                cache.delete(keys[id(message)])
            elif self._stop.is_set():
                message.deferred = True
            else:
                cache.set(keys[id(message)], count + 1, timeout=86400)
                self.consume_valid([message])
                cache.delete(keys[id(message)])

    def redelivery_key(self, message: QueueMessage) -> str:
        return "redelivered:" + hashlib.sha256(self.queue_name.encode() + b"\0" + message.body).hexdigest()

    def consume_valid(self, messages: list[QueueMessage]) -> None:
        """:meth:`consume_batch`, outliving a database outage.

        While the database is down the batch stays in hand, unacknowledged:
        the worker waits for the database and consumes the batch again, so
        an outage spends no event's retries and strands nothing. A database
        error with the database up (a deadlock) is an ordinary transient
        failure of the batch.
        """
        while True:
            close_old_connections()
            try:
                self.consume_batch(messages)
                return
            except (OperationalError, InterfaceError) as e:
                if database_answers():
                    self.batch_failed(messages, e)
                    return
                for message in messages:
                    message.failure = None
                    message.redelivered = True  # handled again by this worker: what it claimed is still its own
                if not self.wait_for_database(e):
                    for message in messages:
                        message.deferred = True  # stopping: the broker hands the batch to the next worker
                    return
            except Exception as e:
                self.batch_failed(messages, e)
                return
            finally:
                close_old_connections()

    def wait_for_database(self, error: Exception) -> bool:
        """Until the database answers (True), or the worker is asked to stop (False); one log line a try."""
        pause = 0.5
        while not self._stop.is_set():
            logger.warning(
                "%s: database unavailable (%s); holding the batch, trying again in %.1f s",
                self.queue_name,
                describe(error),
                pause,
            )
            self.sleep(pause)
            if database_answers():
                logger.info("%s: database back; consuming the batch again", self.queue_name)
                return True
            pause = min(pause * 2, 30.0)
        return False

    def sleep(self, seconds: float) -> None:
        """Wait, keeping the broker connection's heartbeats going (the batch in hand stays ours)."""
        connection = self.client.connection if self.client is not None else None
        if connection is not None and connection.is_open:
            try:
                connection.sleep(seconds)
                return
            except CONNECTION_ERRORS:
                pass
        self._stop.wait(seconds)

    def batch_failed(self, messages: list[QueueMessage], error: Exception) -> None:
        """``consume_batch`` raised: find out which event it was, so that event alone fails.

        A transient error (the database went away) retries the whole batch.
        Any other error is taken to be one event's fault: each event not yet
        settled is consumed again on its own, so the poison fails alone and
        the rest of the batch is delivered. Consumers are idempotent by
        notification id, so an event done before the error is not done twice.
        """
        if is_transient(error) or len(messages) == 1:
            for message in messages:
                message.fail(message.failure or error)
            return
        logger.warning(
            "%s: a batch of %d failed (%s); consuming its events one by one",
            self.queue_name,
            len(messages),
            describe(error),
        )
        for message in messages:
            if message.failure is not None or message.deferred:
                continue
            message.redelivered = True  # what the failed batch claimed is still this worker's own
            close_old_connections()
            try:
                self.consume_batch([message])
            except Exception as e:
                message.fail(message.failure or e)

    def settle(self, messages: list[QueueMessage]) -> list[tuple[str, bytes, dict[str, Any]]]:
        """What to re-publish for failed messages: a retry, or a dead letter."""
        out = []
        for message in messages:
            error = message.failure
            if message.malformed is not None:
                out.append(self.dead_letter(message, f"malformed event: {message.malformed}", None))
            elif error is None:
                metrics.succeeded.labels(self.queue_name).inc()
            elif is_transient(error) and message.deadline is not None:
                delay = retry_wait(message.attempt, getattr(error, "delay", 0.0))
                if time.time() + delay > message.deadline:
                    message.expired_reason = f"expired after {message.attempt} attempts: {error}"
                    metrics.expired.labels(self.queue_name).inc()
                    logger.info("%s: %s", self.queue_name, message.expired_reason)
                else:
                    out.append(self.retry(message, error, delay))
            elif is_transient(error) and message.attempt <= self.max_retries:
                out.append(self.retry(message, error, retry_wait(message.attempt, getattr(error, "delay", 0.0))))
            elif is_transient(error):
                reason = f"gave up after {message.attempt} attempts ({self.max_retries} retries): {error}"
                out.append(self.dead_letter(message, reason, error))
            else:
                out.append(self.dead_letter(message, describe(error), error))
        return out

    def retry(self, message: QueueMessage, error: BaseException, delay: float) -> tuple[str, bytes, dict[str, Any]]:
        """The message again, on the retry queue of ``delay``, its attempt count raised."""
        replacement = getattr(error, "event", None)
        body = encode(replacement) if replacement is not None else message.body
        headers = {**message.headers, ATTEMPT_HEADER: message.attempt + 1, "x-retry-reason": str(error)[:500]}
        metrics.retried.labels(self.queue_name).inc()
        logger.info(
            "%s: attempt %d failed (%s); retrying in %.2fs", self.queue_name, message.attempt, describe(error), delay
        )
        return (retry_queue_name(self.queue_name, delay), body, headers)

    def expired(self, message: QueueMessage, reason: str) -> None:
        """Called once an event whose deadline passed is acknowledged: e.g. mark its notification expired."""

    def dead_lettered(self, message: QueueMessage, reason: str) -> None:
        """Called once a message is safely in the dead-letter queue: e.g. mark its notification failed."""

    def dead_letter(
        self, message: QueueMessage, reason: str, error: BaseException | None
    ) -> tuple[str, bytes, dict[str, Any]]:
        reason = scrub(reason)
        message.dead_letter_reason = reason
        metrics.dead_lettered.labels(self.queue_name).inc()
        logger.error("%s: dead-lettering event (attempt %d): %s", self.queue_name, message.attempt, reason)
        headers = {
            **message.headers,
            "x-dlq-reason": reason[:1000],
            "x-dlq-exception": describe(error)[:1000] if error else "",
            "x-dlq-traceback": scrub("".join(traceback.format_exception(error)))[-4000:] if error else "",
            "x-dlq-attempts": message.attempt,
            "x-dlq-queue": self.queue_name,
            "x-dlq-failed-at": datetime.now(UTC).isoformat(),
        }
        return (dlq_name(self.queue_name), message.body, headers)


class LoopQueueProcessingWorker(QueueProcessingWorker):
    """Consumes a whole batch at once with :meth:`consume_batch`: one round trip per batch."""

    def consume_batch(self, messages: list[QueueMessage]) -> None:
        raise NotImplementedError


# --- Development without a broker --------------------------------------------------

inline_dead_letters: list[dict[str, Any]] = []
_inline_workers: dict[str, QueueProcessingWorker] = {}


def run_inline(queue_name: str, event: dict[str, Any]) -> None:
    """``QUEUE_BACKEND=inline``: consume ``event`` now, in this process.

    The same policy applies, without the waiting: a RetryLater is retried at
    once up to ``max_retries`` times; a dead letter is logged and kept in
    ``inline_dead_letters``.
    """
    worker = _inline_workers.get(queue_name)
    if worker is None:
        worker = _inline_workers[queue_name] = get_worker_class(queue_name)()
    attempt = 1
    while True:
        message = QueueMessage(queue_name, encode(event), {ATTEMPT_HEADER: attempt}, 0, event=event)
        worker.consume_batch([message])
        error = message.failure
        if error is None:
            return
        if is_transient(error) and attempt <= worker.max_retries:
            attempt += 1
            event = getattr(error, "event", None) or event
            continue
        logger.error("%s: dead-lettering event (attempt %d): %s", queue_name, attempt, describe(error))
        inline_dead_letters.append({"queue": queue_name, "event": event, "reason": describe(error)})
        worker.dead_lettered(message, describe(error))
        return


def install_signal_handlers(workers: list[QueueProcessingWorker]) -> None:
    """SIGTERM and SIGINT ask every worker to finish its batch and stop."""

    def handler(signum: int, frame: Any) -> None:
        logger.info("signal %d: stopping after the current batch", signum)
        for worker in workers:
            worker.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
