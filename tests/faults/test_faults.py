"""Faults mid-stream: every accepted notification ends final, and reaches the provider once.

Each scenario sends pushes through the API (202), runs the push worker and
the outbox relay as separate processes, breaks something while they work,
and checks the outcome at the Expo fake and in the database. A duplicate is
a notification the fake accepted twice; the bound on them is the sub-batch a
worker had at the provider when it lost its broker or was killed.
"""

from __future__ import annotations

import signal
import time

import pytest
from django.db import connection

from tests.faults.conftest import deliveries, post, wait_final
from tests.helpers import wait_for
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE
from zerver.models import Notification

USERS = 20
# What one lost connection or kill -9 may send twice: the one sub-batch the push worker had at the
# bouncer, sent but not yet recorded (PUSH_SUB_BATCH_SIZE; the test settings keep the default).
IN_FLIGHT_BOUND = 100


def setup_users(api) -> None:
    for n in range(USERS):
        body = {"user_id": str(n), "platform": "expo", "token": f"ExponentPushToken[fault-{n}]", "app_id": "app"}
        post(api, "/api/v1/devices", body)


def send_pushes(api, count: int) -> list[str]:
    return [
        post(api, "/api/v1/notifications/send", {"type": "push", "recipient": str(n % USERS), "content": f"n{n}"})["id"]
        for n in range(count)
    ]


def sent_count(ids: list[str]) -> int:
    connection.close_if_unusable_or_obsolete()
    return Notification.objects.filter(pk__in=ids, status="sent").count()


def duplicates_at_expo(providers, ids: list[str]) -> int:
    """How many extra times the Expo fake accepted these notifications; fails if one never reached it."""
    records = providers.expo.control.received("notification")
    got = deliveries(records, lambda r: (r["message"].get("data") or {}).get("notification_id"))
    missing = set(ids) - set(got)
    assert not missing, f"{len(missing)} notifications never reached Expo"
    return sum(got[i] - 1 for i in ids)


def test_broker_restart_mid_stream(api, providers, processes, rabbitmq):
    setup_users(api)
    providers.expo.control.add_rule(delay=0.2)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    ids = send_pushes(api, 600)

    wait_for(lambda: sent_count(ids) > 0, timeout=60, what="the first push sent")
    rabbitmq.restart(down_seconds=3)
    statuses = wait_final(ids, timeout=180)

    assert statuses == {"sent": 600}
    assert duplicates_at_expo(providers, ids) <= IN_FLIGHT_BOUND
    assert processes.exited() == []


def test_broker_down_at_accept_time(api, providers, processes, rabbitmq):
    setup_users(api)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    rabbitmq.stop()
    try:
        ids = send_pushes(api, 100)  # accepted (202) with the broker down: held in the outbox
    finally:
        rabbitmq.start()
    statuses = wait_final(ids, timeout=180)

    assert statuses == {"sent": 100}
    assert duplicates_at_expo(providers, ids) == 0
    assert processes.exited() == []


@pytest.mark.parametrize("down_seconds", [10, 60])
def test_database_stopped_mid_stream(api, providers, processes, mariadb, down_seconds):
    setup_users(api)
    providers.expo.control.add_rule(delay=0.2)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    ids = send_pushes(api, 600)

    wait_for(lambda: sent_count(ids) > 0, timeout=60, what="the first push sent")
    mariadb.stop()
    time.sleep(down_seconds)
    mariadb.start()
    connection.close()
    statuses = wait_final(ids, timeout=90)

    assert statuses == {"sent": 600}
    assert duplicates_at_expo(providers, ids) <= IN_FLIGHT_BOUND
    assert processes.exited() == []


@pytest.mark.timeout(480)  # after each kill the redelivered batch is counted, and some of it sent one by one
def test_push_worker_killed_mid_batch_ten_times(api, providers, processes):
    kills = 10
    setup_users(api)
    providers.expo.control.add_rule(delay=0.3)  # a batch is at the provider long enough to be killed there
    processes.relay()
    ids = send_pushes(api, 2000)

    for _ in range(kills):
        worker = processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
        seen = len(providers.expo.control.received("notification"))
        wait_for(
            lambda s=seen: len(providers.expo.control.received("notification")) > s,
            timeout=60,
            what="the worker sending a batch",
        )
        worker.send_signal(signal.SIGKILL)  # mid-batch: the provider has part of it
        worker.wait(timeout=10)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    statuses = wait_final(ids, timeout=300)

    assert statuses == {"sent": 2000}
    duplicates = duplicates_at_expo(providers, ids)
    print(f"kill -9 x{kills}: {duplicates} duplicate deliveries")
    assert duplicates <= IN_FLIGHT_BOUND * kills
    assert [name for name in processes.exited() if name != MOBILE_NOTIFICATIONS_QUEUE] == []


def test_provider_answering_30_percent_5xx(api, providers, processes):
    setup_users(api)
    providers.expo.control.add_rule(status=503, rate=0.3, seed=7)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    ids = send_pushes(api, 600)

    statuses = wait_final(ids, timeout=120)

    assert statuses == {"sent": 600}
    assert duplicates_at_expo(providers, ids) == 0  # a refused request delivered nothing
    assert processes.exited() == []


def test_provider_429_with_retry_after_is_not_tried_again_sooner(api, providers, processes):
    setup_users(api)
    providers.expo.control.add_rule(status=429, retry_after=2, times=1)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    ids = send_pushes(api, 20)

    assert wait_final(ids, timeout=60) == {"sent": 20}
    refused = [r for r in providers.expo.control.received("request") if r["status"] == 429]
    delivered = [r for r in providers.expo.control.received("notification") if r.get("outcome") == "ok"]
    assert refused, "the fake refused nothing"
    retried = [r for r in delivered if r["at"] > refused[-1]["at"]]
    assert retried and min(r["at"] for r in retried) - refused[-1]["at"] >= 2.0


def test_sigterm_finishes_the_batch_and_loses_nothing(api, providers, processes):
    setup_users(api)
    providers.expo.control.add_rule(delay=0.2)
    processes.relay()
    ids = send_pushes(api, 600)
    worker = processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    wait_for(lambda: sent_count(ids) > 0, timeout=60, what="the first push sent")

    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    assert wait_final(ids, timeout=120) == {"sent": 600}

    assert duplicates_at_expo(providers, ids) == 0  # a clean stop sends nothing twice


def test_bouncer_down_for_120_seconds(api, providers, processes):
    from bouncer.models import RemoteServer
    from tests.faults.servers import answers, free_port, wait_until

    server, key = RemoteServer.create("push.example.com")
    port = free_port()
    processes.env.update(
        {
            "PUSH_BOUNCER_URL": f"http://127.0.0.1:{port}",
            "PUSH_BOUNCER_SERVER_UUID": str(server.uuid),
            "PUSH_BOUNCER_API_KEY": key,
        }
    )

    def start_bouncer() -> None:
        # The bouncer itself sends to the providers, not to a bouncer.
        processes.start("bouncer", "runserver", "--noreload", f"127.0.0.1:{port}", PUSH_BOUNCER_URL="")
        wait_until(lambda: answers(port), 30, "the bouncer answering")

    start_bouncer()
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    setup_users(api)
    providers.expo.control.add_rule(delay=0.2)
    ids = send_pushes(api, 600)
    wait_for(lambda: sent_count(ids) > 0, timeout=60, what="the first push sent")

    bouncer = processes.running.pop("bouncer")
    bouncer.terminate()
    bouncer.wait(timeout=30)
    time.sleep(120)
    start_bouncer()
    back = time.monotonic()
    statuses = wait_final(ids, timeout=60)

    assert statuses == {"sent": 600}
    print(f"bouncer down 120 s: all delivered {time.monotonic() - back:.1f} s after it came back")
    assert duplicates_at_expo(providers, ids) <= IN_FLIGHT_BOUND
    assert processes.exited() == []


def test_poison_events_in_mixed_batches_fail_alone(api, providers, processes, broker):
    from zerver.lib.queue import dlq_name

    setup_users(api)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    poison = [
        b"\xff\xfe not utf-8",
        b"[1, 2, 3]",
        b'{"user_id": "1", "notification_id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"type": "register_push_device_to_bouncer", "user_id": "1", "device_id": "not-a-number"}',
        b'{"type": "teleport", "user_id": "1"}',
    ]
    ids = []
    for body in poison:  # each poison event between pushes, so it lands inside a batch of good ones
        ids += send_pushes(api, 20)
        broker.publish_raw([(MOBILE_NOTIFICATIONS_QUEUE, body, {})])
    ids += send_pushes(api, 20)

    assert wait_final(ids, timeout=120) == {"sent": len(ids)}
    wait_for(lambda: broker.message_count(dlq_name(MOBILE_NOTIFICATIONS_QUEUE)) == len(poison), what="the poison")
    dead = sorted(m.body for m in broker.peek(dlq_name(MOBILE_NOTIFICATIONS_QUEUE), 20))
    assert dead == sorted(poison)  # the DLQ holds the poison events, and only them
    assert duplicates_at_expo(providers, ids) == 0
    assert processes.exited() == []
