"""The queue client: the only module in the service that speaks AMQP.

Publishers call :func:`queue_json_publish` (or :func:`queue_json_publish_many`);
the worker framework in ``workers/base.py`` consumes through :class:`QueueClient`.

Topology, declared idempotently by both sides for every queue ``q``:

* ``q``: the durable main queue.
* ``q.retry.<N>ms``: one delay queue per backoff step. Each has a fixed
  ``x-message-ttl`` and dead-letters expired messages back into ``q``. A queue
  per step (rather than a per-message expiration on one queue) keeps messages
  from waiting behind a longer delay at the head of the queue, and naming the
  queue by its delay means a change of the backoff settings declares new
  queues instead of clashing with the arguments of the old ones.
* ``q.dlq``: dead letters, each carrying why it died in its headers.

Publishing uses an AMQP transaction per call: ``tx.commit-ok`` arrives only
once the broker holds every message of the call, so a publish returns only
when the broker has the message, and a batch costs one round trip instead
of one confirm per message.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pika
import pika.exceptions
from django.conf import settings

logger = logging.getLogger(__name__)

# The queues the service's own workers consume.
MOBILE_NOTIFICATIONS_QUEUE = "missedmessage_mobile_notifications"
EMAIL_NOTIFICATIONS_QUEUE = "email_notifications"
SMS_NOTIFICATIONS_QUEUE = "sms_notifications"

DLQ_SUFFIX = ".dlq"
ATTEMPT_HEADER = "x-attempt"
RETRY_HEADER = "x-retry-reason"

# Errors after which the connection is gone and a new one may succeed.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.ChannelWrongStateError,
    pika.exceptions.StreamLostError,
    ConnectionError,
    OSError,
)

T = TypeVar("T")


class _NoMissingQueueWarnings(logging.Filter):
    """Drop pika's warning about a passive declare of a queue not declared yet.

    :meth:`QueueClient.depths` expects those 404s (a scrape of queue depths
    would otherwise log one per missing queue each time); it is the only
    source of a 404 channel close here, as publishing routes missing queues
    to Basic.Return instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Channel.Close (404)" in message and "NOT_FOUND - no queue" in message)


logging.getLogger("pika.channel").addFilter(_NoMissingQueueWarnings())


class QueueUnavailable(Exception):
    """The broker could not be reached within ``RABBITMQ_RECONNECT_SECONDS``."""


# --- Names and routing ---------------------------------------------------------


def dlq_name(queue_name: str) -> str:
    return queue_name + DLQ_SUFFIX


def retry_delays() -> list[float]:
    """The declared wait steps in seconds: base, 2*base, 4*base, ... the cap; then, doubling on, the
    longer waits a provider's Retry-After may ask for, up to ``QUEUE_RETRY_AFTER_MAX_SECONDS``."""
    base = settings.QUEUE_RETRY_BASE_SECONDS
    cap = settings.QUEUE_RETRY_MAX_SECONDS
    delays: list[float] = []
    delay = base
    while delay < cap:
        delays.append(delay)
        delay *= 2
    delays.append(cap)
    delay = cap * 2
    while delays[-1] < settings.QUEUE_RETRY_AFTER_MAX_SECONDS:
        delays.append(min(delay, settings.QUEUE_RETRY_AFTER_MAX_SECONDS))
        delay *= 2
    return delays


def retry_delay(attempt: int, at_least: float = 0.0) -> float:
    """The delay before retrying after failed attempt number ``attempt`` (1-based).

    Exponential in the attempt up to the cap, raised to ``at_least`` (a
    provider's Retry-After, which may exceed the cap), rounded up to the next
    declared step.
    """
    backoff = min(settings.QUEUE_RETRY_BASE_SECONDS * 2 ** (attempt - 1), settings.QUEUE_RETRY_MAX_SECONDS)
    return step_for(max(backoff, at_least))


def step_for(wanted: float) -> float:
    """The shortest declared step of at least ``wanted`` seconds (the longest step when none is)."""
    delays = retry_delays()
    return next((d for d in delays if d >= wanted), delays[-1])


def retry_wait(attempt: int, at_least: float = 0.0) -> float:
    """A jittered wait before retrying after failed attempt ``attempt``: "full jitter" over :func:`retry_delay`.

    Uniform between nothing and the exponential delay, so the events of one
    outage do not come back all at once; raised to ``at_least`` (Retry-After,
    the floor) and rounded up to a declared step, so never below the base.
    """
    ceiling = retry_delay(attempt)
    return step_for(max(random.uniform(0.0, ceiling), at_least))


def retry_queue_name(queue_name: str, delay: float) -> str:
    return f"{queue_name}.retry.{round(delay * 1000)}ms"


def topology(queue_name: str) -> list[str]:
    """Every queue of ``queue_name``'s topology: main, retry steps, dead letters."""
    return [queue_name, *(retry_queue_name(queue_name, d) for d in retry_delays()), dlq_name(queue_name)]


def replay_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """A dead letter's headers for a fresh start: no ``x-dlq-*``, attempt count or retry reason."""
    return {k: v for k, v in headers.items() if not k.startswith("x-dlq-") and k not in (ATTEMPT_HEADER, RETRY_HEADER)}


def topology_owner(queue: str) -> str:
    """The main queue whose topology includes ``queue`` (a main, retry or dead-letter queue)."""
    if queue.endswith(DLQ_SUFFIX):
        return queue.removesuffix(DLQ_SUFFIX)
    main, sep, delay = queue.rpartition(".retry.")
    if sep and delay.endswith("ms") and delay[:-2].isdigit():
        return main
    return queue


def shard_count(queue_name: str) -> int:
    return max(1, int(settings.SHARDED_QUEUES.get(queue_name, 1)))


def shard_queue_names(queue_name: str) -> list[str]:
    """Every queue that ``queue_name`` stands for: itself, or its shards."""
    shards = shard_count(queue_name)
    if shards == 1:
        return [queue_name]
    return [f"{queue_name}_shard{n}" for n in range(1, shards + 1)]


def route(queue_name: str, event: dict[str, Any]) -> str:
    """The queue an event published to ``queue_name`` really goes to.

    A sharded queue routes by ``user_id``, so one user's events stay in order
    on one shard (shard = user_id % shards + 1, as Zulip does; a user id that
    is not a number, such as a UUID, is reduced to one by CRC-32).
    """
    shards = shard_count(queue_name)
    if shards == 1:
        return queue_name
    user_id = event["user_id"]
    number = int(user_id) if isinstance(user_id, int) or str(user_id).isdigit() else zlib.crc32(str(user_id).encode())
    return f"{queue_name}_shard{number % shards + 1}"


class MessageTooLarge(ValueError):
    """An event whose JSON is over ``QUEUE_MAX_MESSAGE_BYTES``: it is refused at publish, not sent."""


def encode(event: dict[str, Any]) -> bytes:
    body = json.dumps(event, separators=(",", ":")).encode()
    if len(body) > settings.QUEUE_MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"event is {len(body)} bytes, over QUEUE_MAX_MESSAGE_BYTES ({settings.QUEUE_MAX_MESSAGE_BYTES})"
        )
    return body


# --- What a consumer receives --------------------------------------------------


@dataclass
class QueueMessage:
    """One delivery from a queue, as the worker framework sees it.

    ``event`` is the decoded JSON object, or None when the body is not one
    (``malformed`` then says why). A batch worker marks a message that failed
    on its own with :meth:`fail`; the framework settles it by the failure policy.
    """

    queue_name: str
    body: bytes
    headers: dict[str, Any]
    delivery_tag: int
    redelivered: bool = False
    event: dict[str, Any] | None = None
    malformed: str | None = None
    failure: BaseException | None = field(default=None, repr=False)
    # Set by a worker that stopped before reaching this message: it is not acknowledged.
    deferred: bool = False
    # Set once the framework has decided to dead-letter the message, to why.
    dead_letter_reason: str | None = None
    # Set when a retry would come after the event's deadline (``expires_at``): it is dropped, and why.
    expired_reason: str | None = None

    @property
    def deadline(self) -> float | None:
        """The event's ``expires_at`` (a Unix time), if it has one: it is retried until then, not counted."""
        value = (self.event or {}).get("expires_at")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def attempt(self) -> int:
        """1 for the first delivery, n+1 after n scheduled retries."""
        return int(self.headers.get(ATTEMPT_HEADER, 1))

    def fail(self, error: BaseException) -> None:
        self.failure = error

    @classmethod
    def decode(
        cls, queue_name: str, body: bytes, headers: dict[str, Any] | None, delivery_tag: int, redelivered: bool
    ) -> QueueMessage:
        message = cls(queue_name, body, dict(headers or {}), delivery_tag, redelivered)
        if len(body) > settings.QUEUE_MAX_MESSAGE_BYTES:
            message.malformed = (
                f"body is {len(body)} bytes, over QUEUE_MAX_MESSAGE_BYTES ({settings.QUEUE_MAX_MESSAGE_BYTES})"
            )
            return message
        try:
            event = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            message.malformed = f"body is not valid JSON: {e}"
            return message
        except RecursionError:
            message.malformed = "body is JSON nested too deeply to decode"
            return message
        except Exception as e:  # whatever else a body can do to the decoder affects this message alone
            message.malformed = f"body cannot be decoded: {type(e).__name__}: {e}"
            return message
        if not isinstance(event, dict):
            message.malformed = f"body is JSON {type(event).__name__}, not an object"
            return message
        message.event = event
        return message


# --- The client ------------------------------------------------------------------


class QueueClient:
    """A connection to RabbitMQ with a publishing channel and, on demand, a consuming one.

    Not thread-safe (neither is pika): publishers get one per thread through
    :func:`get_queue_client`, and each worker owns one.
    """

    def __init__(self, url: str | None = None) -> None:
        # None: RABBITMQ_URL as it is at each (re)connection.
        self.url = url
        self.connection: pika.BlockingConnection | None = None
        self._publish_channel: Any = None
        self._consume_channel: Any = None
        self._declared: set[str] = set()
        self._returned: list[tuple[str, bytes, dict[str, Any]]] = []

    # Connection ----------------------------------------------------------------

    def _connect(self) -> pika.BlockingConnection:
        if self.connection is None or not self.connection.is_open:
            params = pika.URLParameters(self.url or settings.RABBITMQ_URL)
            params.heartbeat = settings.RABBITMQ_HEARTBEAT
            params.blocked_connection_timeout = 30
            params.connection_attempts = 1
            params.socket_timeout = 5
            self.connection = pika.BlockingConnection(params)
            self.connected_once = True
            self._publish_channel = self._consume_channel = None
            self._declared.clear()
        return self.connection

    connected_once = False

    @property
    def address(self) -> str:
        """``host:port`` of the broker (never the credentials in the URL)."""
        parts = urlsplit(self.url or settings.RABBITMQ_URL)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5672}"

    def connection_problem(self, error: BaseException) -> str:
        """One line an operator understands: could it never connect, or did it lose the connection, and why."""
        text = repr(error).lower()
        if "refused" in text:
            why = "connection refused"
        elif "timed out" in text or "timeout" in text:
            why = "timed out"
        elif "name or service not known" in text or "gaierror" in text:
            why = "unknown host"
        elif "access_refused" in text or "authentication" in text:
            why = "login refused"
        elif isinstance(error, pika.exceptions.StreamLostError):
            why = "connection dropped"
        else:
            why = type(error).__name__
        if self.connected_once:
            return f"lost the connection to RabbitMQ at {self.address} ({why})"
        return f"cannot reach RabbitMQ at {self.address} ({why})"

    @property
    def publish_channel(self) -> Any:
        if self._publish_channel is None or not self._publish_channel.is_open:
            self._publish_channel = self._connect().channel()
            self._publish_channel.tx_select()
            self._publish_channel.add_on_return_callback(self._on_return)
        return self._publish_channel

    def _on_return(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        self._returned.append((method.routing_key, body, properties.headers or {}))

    @property
    def consume_channel(self) -> Any:
        if self._consume_channel is None or not self._consume_channel.is_open:
            self._consume_channel = self._connect().channel()
        return self._consume_channel

    def close(self) -> None:
        if self.connection is not None and self.connection.is_open:
            try:
                self.connection.close()
            except CONNECTION_ERRORS:
                pass
        self.connection = None
        self._publish_channel = self._consume_channel = None
        self._declared.clear()

    def with_reconnect(self, operation: Callable[[], T], deadline_seconds: float | None = None) -> T:
        """Run ``operation``, reconnecting with exponential backoff if the connection drops.

        Gives up with :class:`QueueUnavailable` after ``RABBITMQ_RECONNECT_SECONDS``.
        ``operation`` must be safe to repeat: publishing is, because an
        uncommitted transaction dies with its connection.
        """
        if deadline_seconds is None:
            deadline_seconds = settings.RABBITMQ_RECONNECT_SECONDS
        deadline = time.monotonic() + deadline_seconds
        pause = 0.05
        while True:
            try:
                return operation()
            except CONNECTION_ERRORS as e:
                self.close()
                if time.monotonic() + pause > deadline:
                    raise QueueUnavailable(f"RabbitMQ unreachable: {e!r}") from e
                logger.warning("%s; retrying in %.2f s", self.connection_problem(e), pause)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    # Topology ------------------------------------------------------------------

    def declare(self, queue_name: str) -> None:
        """Declare ``queue_name``'s main, retry and dead-letter queues (idempotent)."""
        if queue_name in self._declared:
            return
        channel = self.publish_channel
        channel.queue_declare(queue_name, durable=True)
        channel.queue_declare(dlq_name(queue_name), durable=True)
        for delay in retry_delays():
            channel.queue_declare(
                retry_queue_name(queue_name, delay),
                durable=True,
                arguments={
                    "x-message-ttl": round(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue_name,
                },
            )
        self._declared.add(queue_name)

    def delete(self, queue_name: str) -> None:
        """Delete a queue with its retry and dead-letter queues (tests, tear-down)."""

        def delete() -> None:
            channel = self.publish_channel
            for name in [queue_name, dlq_name(queue_name)] + [retry_queue_name(queue_name, d) for d in retry_delays()]:
                channel.queue_delete(name)

        self.with_reconnect(delete)
        self._declared.discard(queue_name)

    def message_count(self, queue_name: str) -> int:
        """Messages ready in a queue (not those delivered and awaiting an ack)."""
        return self.publish_channel.queue_declare(queue_name, passive=True).method.message_count

    def depths(self, queue_names: Iterable[str], reconnect_seconds: float | None = None) -> dict[str, int | None]:
        """Messages ready in each queue by passive declare; None for a queue that does not exist.

        A missing queue makes the broker close the channel (404); the next
        declare opens a new one. Raises :class:`QueueUnavailable` when the
        broker cannot be reached.
        """

        def read() -> dict[str, int | None]:
            out: dict[str, int | None] = {}
            for name in queue_names:
                try:
                    out[name] = self.message_count(name)
                except pika.exceptions.ChannelClosedByBroker as e:
                    if e.reply_code != 404:
                        raise
                    out[name] = None
            return out

        return self.with_reconnect(read, reconnect_seconds)

    # Operating on dead letters -------------------------------------------------

    def peek(self, queue_name: str, limit: int) -> list[QueueMessage]:
        """Up to ``limit`` messages from the head of a queue, left in it.

        They are fetched unacknowledged and then all rejected back in one go
        (rejecting one at a time would fetch the same message again).
        The broker marks them redelivered; nothing else changes.
        """
        messages = self.take(queue_name, limit)
        if messages:
            self.consume_channel.basic_nack(delivery_tag=messages[-1].delivery_tag, multiple=True, requeue=True)
        return messages

    def take(self, queue_name: str, limit: int) -> list[QueueMessage]:
        """Up to ``limit`` messages, unacknowledged: :meth:`ack_through` removes them from the queue.

        Until then they stay the broker's: a crash or a closed connection puts them back.
        """
        channel = self.consume_channel
        messages: list[QueueMessage] = []
        while len(messages) < limit:
            method, properties, body = channel.basic_get(queue_name, auto_ack=False)
            if method is None:
                break
            messages.append(
                QueueMessage.decode(queue_name, body, properties.headers, method.delivery_tag, method.redelivered)
            )
        return messages

    def purge(self, queue_name: str) -> int:
        """Delete every ready message of a queue; returns how many."""
        return self.publish_channel.queue_purge(queue_name).method.message_count

    # Publishing ----------------------------------------------------------------

    def publish_raw(self, messages: list[tuple[str, bytes, dict[str, Any]]]) -> None:
        """Publish ``(queue, body, headers)`` triples durably, in one transaction.

        ``queue`` is a main, retry or dead-letter queue, the routing key on the
        default exchange. Messages are mandatory: one the broker returns because
        its queue is gone (deleted behind this client's back) is published again
        after declaring the topology anew, so nothing is dropped silently.
        """
        returned = self._publish_in_transaction(messages)
        if returned:
            for name in {topology_owner(queue) for queue, _, _ in returned}:
                self._declared.discard(name)
                self.declare(name)
            if self._publish_in_transaction(returned):
                raise QueueUnavailable(f"broker cannot route to {sorted({q for q, _, _ in returned})}")

    def _publish_in_transaction(
        self, messages: list[tuple[str, bytes, dict[str, Any]]]
    ) -> list[tuple[str, bytes, dict[str, Any]]]:
        channel = self.publish_channel
        returned = self._returned = []
        now = int(time.time())
        for routing_key, body, headers in messages:
            channel.basic_publish(
                exchange="",
                routing_key=routing_key,
                body=body,
                properties=pika.BasicProperties(
                    delivery_mode=pika.DeliveryMode.Persistent,
                    content_type="application/json",
                    headers=headers or None,
                    timestamp=now,
                ),
                mandatory=True,
            )
        channel.tx_commit()
        # Basic.Return frames precede Tx.CommitOk; this hands them to the callback.
        self._connect().process_data_events(time_limit=0)
        return returned

    def publish(
        self, queue_name: str, events: Iterable[dict[str, Any]], reconnect_seconds: float | None = None
    ) -> None:
        """Publish events to ``queue_name`` (routed to shards), returning once the broker has them all."""
        batch = [(route(queue_name, event), encode(event), {}) for event in events]

        def attempt() -> None:
            for name in {name for name, _, _ in batch}:
                self.declare(name)
            self.publish_raw(batch)

        self.with_reconnect(attempt, reconnect_seconds)

    # Consuming -----------------------------------------------------------------

    def consume_batches(
        self,
        queue_name: str,
        batch_size: int,
        should_stop: Callable[[], bool],
        max_wait: float = 0.1,
    ) -> Iterator[list[QueueMessage]]:
        """Yield batches of up to ``batch_size`` deliveries until ``should_stop()``.

        A batch is handed over when it is full, when no new message came for
        ``max_wait`` seconds, or when its first message has waited that long.
        The broker sends at most ``batch_size`` unacknowledged messages
        (prefetch), so the caller must :meth:`ack_through` each batch before
        the next can fill. Connection errors propagate: the caller reconnects.
        """
        self.declare(queue_name)
        channel = self.consume_channel
        channel.basic_qos(prefetch_count=batch_size)
        batch: list[QueueMessage] = []
        first_at = 0.0
        try:
            for method, properties, body in channel.consume(queue_name, inactivity_timeout=max_wait / 2):
                if method is not None:
                    if not batch:
                        first_at = time.monotonic()
                    batch.append(
                        QueueMessage.decode(
                            queue_name, body, properties.headers, method.delivery_tag, method.redelivered
                        )
                    )
                if batch and (len(batch) >= batch_size or method is None or time.monotonic() - first_at >= max_wait):
                    yield batch
                    batch = []
                if not batch and should_stop():
                    break
        finally:
            if self._consume_channel is not None and self._consume_channel.is_open:
                # Messages prefetched but not handed over go back to the queue.
                self._consume_channel.cancel()

    def ack_through(self, delivery_tag: int) -> None:
        """Acknowledge every delivery on the consuming channel up to ``delivery_tag``."""
        self.consume_channel.basic_ack(delivery_tag=delivery_tag, multiple=True)


# --- The publishing API ------------------------------------------------------------

_local = threading.local()


def get_queue_client() -> QueueClient:
    """This thread's publishing client (pika connections are not thread-safe)."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = QueueClient()
    return client


def queue_json_publish(queue_name: str, event: dict[str, Any]) -> None:
    """Publish one event; returns once the broker holds it durably.

    With ``QUEUE_BACKEND=inline`` the event is handed to its worker in this
    process instead. Raises :class:`QueueUnavailable` when the broker stays
    unreachable.
    """
    queue_json_publish_many(queue_name, [event])


def queue_json_publish_many(
    queue_name: str, events: list[dict[str, Any]], reconnect_seconds: float | None = None
) -> None:
    """Publish many events in one broker round trip (the fast path for bulk work).

    ``reconnect_seconds`` bounds how long to keep trying a broker that is
    down (default ``RABBITMQ_RECONNECT_SECONDS``).
    """
    if not events:
        return
    if settings.QUEUE_BACKEND == "inline":
        from workers.base import run_inline

        for event in events:
            run_inline(queue_name, event)
        return
    get_queue_client().publish(queue_name, events, reconnect_seconds)
