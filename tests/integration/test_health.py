"""GET /health: database, broker and worker heartbeats; nothing secret in the answer."""

import socket
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.helpers import running, wait_for
from workers.base import get_worker
from workers.heartbeat import Heartbeat
from zerver.models import WorkerHeartbeat

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def no_heartbeats():
    # Worker processes of other tests commit their rows outside any test transaction.
    WorkerHeartbeat.objects.all().delete()


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthy_when_database_broker_and_workers_are(client, broker, settings):
    settings.HEALTH_EXPECTED_WORKERS = ["test"]
    WorkerHeartbeat.objects.create(queue_name="test", hostname="h1", pid=1)

    response = client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "workers": True,
        "deliveries": True,
        "circuits": True,
    }
    assert body["checks"]["workers"]["workers"][0]["queue"] == "test"


def test_503_while_the_broker_is_unreachable_and_200_once_it_is_back(client, settings):
    settings.HEALTH_EXPECTED_WORKERS = []
    good_url = settings.RABBITMQ_URL
    settings.RABBITMQ_URL = f"amqp://guest:s3cret-pw@127.0.0.1:{dead_port()}/"

    response = client.get("/health")

    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == {"ok": False, "error": "AMQPConnectionError"}
    assert response.json()["checks"]["database"]["ok"] is True
    assert b"s3cret-pw" not in response.content and b"guest" not in response.content

    settings.RABBITMQ_URL = good_url
    assert client.get("/health").status_code == 200


def test_503_with_no_worker_running(client, broker, settings):
    settings.HEALTH_EXPECTED_WORKERS = None  # what the deployment's settings say it runs
    settings.MOBILE_NOTIFICATIONS_SHARDS = 2
    WorkerHeartbeat.objects.create(queue_name="email_notifications", hostname="h1", pid=1)

    response = client.get("/health")

    assert response.status_code == 503
    workers = {w["queue"]: w.get("error", "ok") for w in response.json()["checks"]["workers"]["workers"]}
    assert workers == {
        "email_notifications": "ok",
        "message_notifications": "missing",
        "missedmessage_mobile_notifications_shard1": "missing",
        "missedmessage_mobile_notifications_shard2": "missing",
        "sms_notifications": "missing",
    }
    # The API itself is still ready to take requests: workers are not its business.
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health/live").json() == {"status": "alive"}


def test_no_worker_is_expected_in_inline_mode(client, broker, settings):
    settings.HEALTH_EXPECTED_WORKERS = None
    settings.QUEUE_BACKEND = "inline"
    assert client.get("/health").json()["checks"]["workers"] == {"ok": True, "workers": []}


def test_503_on_a_stale_heartbeat(client, settings):
    settings.HEALTH_EXPECTED_WORKERS = ["email_notifications", "sms_notifications"]
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 30
    WorkerHeartbeat.objects.create(queue_name="email_notifications", hostname="h1", pid=1)
    WorkerHeartbeat.objects.create(
        queue_name="sms_notifications", hostname="h1", pid=2, last_seen=timezone.now() - timedelta(seconds=31)
    )

    response = client.get("/health")

    assert response.status_code == 503
    workers = {w["queue"]: w["ok"] for w in response.json()["checks"]["workers"]["workers"]}
    assert workers == {"email_notifications": True, "sms_notifications": False}
    assert b"h1" not in response.content  # no host names for anonymous callers


def test_503_when_the_database_is_down(client, monkeypatch):
    from django.db import OperationalError
    from django.db.backends.utils import CursorWrapper

    def down(*args, **kwargs):
        raise OperationalError("(2002) Can't connect to server on 'db.internal'")

    monkeypatch.setattr(CursorWrapper, "execute", down)
    response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert b"db.internal" not in response.content
    assert client.get("/health/ready").status_code == 503


@pytest.mark.django_db(transaction=True)
def test_worker_loop_beats_while_idle_and_a_restart_takes_its_row_over(broker, test_queue, settings):
    settings.WORKER_HEARTBEAT_INTERVAL_SECONDS = 0.05
    worker = get_worker("test")
    worker.heartbeat = Heartbeat("test")
    with running(worker):
        first = wait_for(lambda: WorkerHeartbeat.objects.filter(queue_name="test").first(), what="a heartbeat")
        wait_for(lambda: WorkerHeartbeat.objects.get(pk=first.pk).last_seen > first.last_seen, what="another beat")

    restarted = Heartbeat("test")
    restarted.pid += 1  # as a new process on the same host
    restarted.beat()
    [row] = WorkerHeartbeat.objects.filter(queue_name="test")
    assert row.pid == restarted.pid
    restarted.stop()
    assert not WorkerHeartbeat.objects.exists()


def test_503_when_a_notification_has_been_stuck_too_long(client, broker, settings):
    from model_bakery import baker

    from zerver.models import Notification

    settings.HEALTH_EXPECTED_WORKERS = []
    settings.HEALTH_MAX_UNFINISHED_SECONDS = 600
    baker.make(Notification, type="push", content={}, status="pending")
    assert client.get("/health").status_code == 200
    Notification.objects.update(updated_at=timezone.now() - timedelta(seconds=700))

    response = client.get("/health")

    assert response.status_code == 503
    deliveries = response.json()["checks"]["deliveries"]
    assert deliveries["ok"] is False
    assert deliveries["oldest_unfinished_seconds"]["pending"] >= 700
