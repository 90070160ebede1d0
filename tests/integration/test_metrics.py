"""Prometheus metrics: a worker process's /metrics, queue depths, delivery counters, the web /metrics."""

import signal
import socket
import subprocess
import urllib.request

import pytest
from model_bakery import baker
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import read_jsonl, start_worker_process, wait_for
from workers import metrics
from workers.base import registered_queues
from zerver.lib.delivery import SendError, SendResult, give_up, record
from zerver.lib.queue import dlq_name, encode, queue_json_publish_many
from zerver.models import Notification, Status, WorkerHeartbeat

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` from a /metrics page; {} while it is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(page: dict, name: str, **labels: str) -> float | None:
    return page.get((name, tuple(sorted(labels.items()))))


def rabbitmqctl_count(vhost: str, queue: str) -> int:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_ready"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    counts = dict(line.split("\t") for line in out.splitlines() if "\t" in line and not line.startswith("name"))
    return int(counts[queue])


@pytest.mark.django_db(transaction=True)
def test_worker_process_serves_metrics_that_follow_its_work(broker, test_queue, rabbitmq_vhost):
    port = free_port()
    env = {
        "TEST_WORKER_OUTPUT": test_queue,
        # The test queue's port is the base plus its index in `process_queue --list`.
        "WORKER_METRICS_BASE_PORT": str(port - registered_queues().index("test")),
        "QUEUE_DEPTH_CACHE_SECONDS": "0",
        "WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.2",
    }
    worker = start_worker_process("test", env)
    try:
        page = wait_for(lambda: scrape(port), what="the worker's metrics server")
        assert sample(page, "queue_events_succeeded_total", queue="test") in (None, 0.0)

        queue_json_publish_many("test", [{"id": i} for i in range(20)] + [{"id": "bad", "fail": "no"}])
        wait_for(lambda: len(read_jsonl(test_queue)) == 20, what="20 events consumed")
        page = wait_for(
            lambda: (p := scrape(port)) and sample(p, "queue_events_dead_lettered_total", queue="test") == 1 and p,
            what="the dead letter counted",
        )
        assert sample(page, "queue_events_consumed_total", queue="test") == 21
        assert sample(page, "queue_events_succeeded_total", queue="test") == 20
        assert sample(page, "queue_batch_seconds_count", queue="test") >= 1

        # queue_depth is the broker's count, for the main, retry and dead-letter queues.
        broker.publish_raw([(dlq_name("test"), encode({"id": i}), {}) for i in range(6)])
        wait_for(lambda: broker.message_count(dlq_name("test")) == 7, what="7 dead letters")
        page = scrape(port)
        assert sample(page, "queue_depth", queue="test.dlq") == 7 == rabbitmqctl_count(rabbitmq_vhost, "test.dlq")
        assert sample(page, "queue_depth", queue="test") == broker.message_count("test") == 0
        assert sample(page, "queue_depth", queue="test.retry.50ms") == 0
        assert sample(page, "queue_depth_up") == 1

        # The loop's heartbeat, kept fresh while idle.
        beat = wait_for(lambda: WorkerHeartbeat.objects.filter(queue_name="test").first(), what="a heartbeat")
        wait_for(lambda: WorkerHeartbeat.objects.get(pk=beat.pk).last_seen > beat.last_seen, what="an idle heartbeat")
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=15)
    assert worker.returncode == 0, output
    assert not WorkerHeartbeat.objects.filter(queue_name="test").exists(), "a clean stop removes the heartbeat"


@pytest.mark.django_db
def test_record_counts_outcomes_by_queue_and_provider_and_times_delivery():
    labels = {"queue": "sms_notifications", "provider": "fakesms"}

    def now(name: str) -> float:
        return metrics.value(name, **labels)

    before = {n: now(n) for n in ("notifications_delivered_total", "notifications_retried_total")}
    before |= {n: now(n) for n in ("notifications_failed_total", "notifications_dead_lettered_total")}
    before["notification_delivery_seconds_count"] = now("notification_delivery_seconds_count")

    for error in (None, SendError("429", transient=True), SendError("400", transient=False)):
        notification = baker.make(Notification, type="sms", status=Status.PROCESSING, content="hi")
        record("fakesms", [SendResult(notification, error=error)])
    give_up(notification.pk, "gave up", "fakesms")

    for name in before:
        assert now(name) - before[name] == 1, name
    assert metrics.value("notification_delivery_seconds_sum", **labels) >= 0


def test_observe_provider_times_even_a_failing_request():
    before = metrics.provider_seconds.labels("fake").collect()[0].samples
    count = next(s.value for s in before if s.name.endswith("_count"))
    with pytest.raises(RuntimeError), metrics.observe_provider("fake"):
        raise RuntimeError("provider down")
    after = metrics.provider_seconds.labels("fake").collect()[0].samples
    assert next(s.value for s in after if s.name.endswith("_count")) == count + 1


@pytest.mark.django_db
def test_web_metrics_include_django_and_every_queues_depth(client, broker, settings):
    settings.QUEUE_DEPTH_CACHE_SECONDS = 0
    broker.declare("noop")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert "django_http_requests_before_middlewares_total" in text
    assert 'queue_depth{queue="noop.dlq"}' in text
