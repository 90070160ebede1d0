"""The queue client and worker framework against the real RabbitMQ."""

import os
import signal
import socket
import time
from collections import Counter

import pika
import pytest

from tests.helpers import read_jsonl, running, start_worker_process, wait_for
from workers import metrics
from workers.base import get_worker
from zerver.lib.queue import QueueClient, QueueUnavailable, dlq_name, queue_json_publish, queue_json_publish_many

pytestmark = pytest.mark.integration


def dead_letters(broker: QueueClient, queue: str) -> list[tuple[bytes, dict]]:
    """Take every message off a dead-letter queue: (body, headers)."""
    channel = broker.publish_channel.connection.channel()
    out = []
    while True:
        method, properties, body = channel.basic_get(dlq_name(queue), auto_ack=True)
        if method is None:
            return out
        out.append((body, properties.headers))


def test_thousand_events_are_each_consumed_once(broker, test_queue):
    queue_json_publish_many("test", [{"id": i} for i in range(1000)])
    assert broker.message_count("test") == 1000

    with running(get_worker("test")):
        wait_for(lambda: len(read_jsonl(test_queue)) >= 1000, what="1000 events consumed")

    ids = Counter(line["id"] for line in read_jsonl(test_queue))
    assert sorted(ids) == list(range(1000))
    assert set(ids.values()) == {1}
    assert broker.message_count("test") == 0


def test_retry_later_three_times_then_success_delivers_once_with_four_attempts(broker, test_queue):
    retried_before = metrics.value("queue_events_retried_total", "test")
    queue_json_publish("test", {"id": "flaky", "retry_until": 4})

    with running(get_worker("test")):
        wait_for(lambda: read_jsonl(test_queue), what="the retried event")

    assert read_jsonl(test_queue) == [{"id": "flaky", "attempt": 4, "queue": "test", "pid": os.getpid()}]
    assert metrics.value("queue_events_retried_total", "test") - retried_before == 3
    assert dead_letters(broker, "test") == []


def test_always_retrying_event_is_dead_lettered_after_max_retries(broker, test_queue):
    queue_json_publish("test", {"id": "hopeless", "always_retry": True})

    with running(get_worker("test")):
        wait_for(lambda: broker.message_count(dlq_name("test")) == 1, what="the dead letter")

    [(body, headers)] = dead_letters(broker, "test")
    assert b'"hopeless"' in body
    assert headers["x-dlq-attempts"] == 6  # the first try and max_retries=5 retries
    assert headers["x-dlq-reason"].startswith("gave up after 6 attempts (5 retries)")
    assert headers["x-dlq-exception"] == "RetryLater: asked to retry (attempt 6)"
    assert headers["x-dlq-queue"] == "test"
    assert read_jsonl(test_queue) == []


def test_error_dead_letters_at_once_with_the_exception(broker, test_queue):
    queue_json_publish("test", {"id": "broken", "fail": "provider said no"})

    with running(get_worker("test")):
        wait_for(lambda: broker.message_count(dlq_name("test")) == 1, what="the dead letter")

    [(_, headers)] = dead_letters(broker, "test")
    assert headers["x-dlq-attempts"] == 1
    assert headers["x-dlq-exception"] == "RuntimeError: provider said no"
    assert "RuntimeError: provider said no" in headers["x-dlq-traceback"]


def test_malformed_messages_are_dead_lettered_and_the_next_event_still_processed(broker, test_queue):
    broker.declare("test")
    broker.publish_raw([("test", b"{not json", {}), ("test", b"[1, 2]", {}), ("test", b"\xff\xfe", {})])
    queue_json_publish("test", {"no_id": True})
    queue_json_publish("test", {"id": "good"})

    with running(get_worker("test")):
        wait_for(lambda: read_jsonl(test_queue), what="the good event")
        wait_for(lambda: broker.message_count(dlq_name("test")) == 4, what="four dead letters")

    assert [line["id"] for line in read_jsonl(test_queue)] == ["good"]
    letters = dead_letters(broker, "test")
    assert [body for body, _ in letters] == [b"{not json", b"[1, 2]", b"\xff\xfe", b'{"no_id":true}']
    reasons = [headers["x-dlq-reason"] for _, headers in letters]
    assert reasons[0].startswith("malformed event: body is not valid JSON")
    assert reasons[1] == "malformed event: body is JSON list, not an object"
    assert reasons[2].startswith("malformed event: body is not valid JSON")
    assert reasons[3] == "InvalidEvent: event has no 'id'"


def test_sharded_queue_routes_by_user_and_each_shard_worker_consumes_its_own(broker, test_queue, settings):
    settings.SHARDED_QUEUES = {**settings.SHARDED_QUEUES, "test": 4}
    shards = [f"test_shard{n}" for n in range(1, 5)]
    for name in shards:
        broker.delete(name)

    queue_json_publish_many("test", [{"id": user, "user_id": user} for user in range(100)])
    assert [broker.message_count(name) for name in shards] == [25, 25, 25, 25]

    with running(*(get_worker("test", worker_num=n) for n in range(1, 5))):
        wait_for(lambda: len(read_jsonl(test_queue)) >= 100, what="100 events over 4 shards")

    lines = read_jsonl(test_queue)
    assert sorted(line["id"] for line in lines) == list(range(100))
    for line in lines:
        assert line["queue"] == f"test_shard{line['id'] % 4 + 1}"
    for name in shards:
        broker.delete(name)


def test_worker_killed_mid_batch_loses_nothing(broker, test_queue):
    total = 500
    queue_json_publish_many("test", [{"id": i, "sleep": 0.004} for i in range(total)])
    env = {"TEST_WORKER_OUTPUT": test_queue}

    first = start_worker_process("test", env)
    try:
        wait_for(lambda: len(read_jsonl(test_queue)) >= 150, what="the first worker to get going")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    done_by_first = {line["id"] for line in read_jsonl(test_queue)}
    assert len(done_by_first) < total, "the worker finished before it could be killed"

    second = start_worker_process("test", env)
    try:
        wait_for(lambda: {line["id"] for line in read_jsonl(test_queue)} >= set(range(total)), what="all events")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0

    ids = Counter(line["id"] for line in read_jsonl(test_queue))
    assert set(ids) == set(range(total))
    # Only events of the batch in hand at the kill (at most one prefetch of 100) come twice.
    assert sum(ids.values()) - total <= 100
    assert broker.message_count("test") == 0


def test_sigterm_finishes_the_batch_acks_and_exits_zero(broker, test_queue):
    total = 300
    queue_json_publish_many("test", [{"id": i, "sleep": 0.01} for i in range(total)])
    worker = start_worker_process("test", {"TEST_WORKER_OUTPUT": test_queue})
    wait_for(lambda: len(read_jsonl(test_queue)) >= 50, what="the worker to get going")

    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=15)
    assert worker.returncode == 0, output

    consumed = [line["id"] for line in read_jsonl(test_queue)]
    assert len(consumed) == len(set(consumed)) < total
    # Everything it consumed was acknowledged; everything else is back in the queue.
    assert broker.message_count("test") == total - len(consumed)


def test_publisher_reconnects_when_the_connection_drops(broker, test_queue):
    client = QueueClient()
    client.publish("test", [{"id": 1}])
    sock = client.connection._impl._transport._sock
    sock.shutdown(socket.SHUT_RDWR)

    client.publish("test", [{"id": 2}])

    assert broker.message_count("test") == 2
    client.close()


def test_publisher_gives_up_with_queue_unavailable_when_broker_is_unreachable(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    settings.RABBITMQ_RECONNECT_SECONDS = 0.5
    client = QueueClient(f"amqp://guest:guest@127.0.0.1:{dead_port}/")

    with pytest.raises(QueueUnavailable):
        client.publish("test", [{"id": 1}])


def test_published_messages_are_persistent_and_carry_json(broker, test_queue):
    queue_json_publish("test", {"id": "x", "text": "héllo"})
    channel = broker.publish_channel.connection.channel()
    _method, properties, body = channel.basic_get("test", auto_ack=True)
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    assert properties.content_type == "application/json"
    assert body.decode() == '{"id":"x","text":"h\\u00e9llo"}'


def test_an_event_with_a_deadline_retries_past_max_retries_until_the_deadline_and_then_expires(broker, test_queue):
    retried = metrics.retried.labels("test")
    expired = metrics.expired.labels("test")
    retried_before, expired_before = retried._value.get(), expired._value.get()
    queue_json_publish("test", {"id": "late", "always_retry": True, "expires_at": time.time() + 3.0})

    with running(get_worker("test")):
        wait_for(lambda: expired._value.get() > expired_before, timeout=20, what="the event to expire")

    assert retried._value.get() - retried_before > 5  # more than QUEUE_MAX_RETRIES: the deadline rules
    assert broker.message_count(dlq_name("test")) == 0  # expiry is a final state, not a poison event
    assert read_jsonl(test_queue) == []


def test_an_event_that_kills_its_worker_is_dead_lettered_and_the_rest_is_consumed(broker, test_queue, settings):
    settings.QUEUE_MAX_REDELIVERIES = 2
    queue_json_publish_many("test", [{"id": i} for i in range(5)] + [{"id": "poison", "crash": True}])
    queue_json_publish_many("test", [{"id": i} for i in range(5, 10)])
    env = {"TEST_WORKER_OUTPUT": test_queue, "QUEUE_MAX_REDELIVERIES": "2"}

    exits = []
    for _ in range(6):  # a supervisor restarting it
        worker = start_worker_process("test", env)
        try:
            wait_for(
                lambda w=worker: w.poll() is not None or broker.message_count(dlq_name("test")) == 1,
                timeout=30,
                what="the worker to die or the poison to be dead-lettered",
            )
        finally:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
            exits.append(worker.wait(timeout=30))
        if broker.message_count(dlq_name("test")) == 1:
            break

    assert exits[:3] == [70, 70, 70] and exits[-1] == 0  # it crashed while the poison was in hand, then stopped cleanly
    ids = {line["id"] for line in read_jsonl(test_queue)}
    assert ids == set(range(10))
    [(body, headers)] = dead_letters(broker, "test")
    assert b"poison" in body
    assert headers["x-dlq-reason"].startswith("malformed event: redelivered 2 times while in hand, never settled")
