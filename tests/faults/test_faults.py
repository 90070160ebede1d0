"""Faults mid-stream: every accepted notification ends final, and reaches the provider once.

Each scenario sends pushes through the API (202), runs the push worker and
the outbox relay as separate processes, breaks something while they work,
and checks the outcome at the Expo fake and in the database. A duplicate is
a notification the fake accepted twice; the bound on them is the batch a
worker had in flight when it lost its broker or was killed.
"""

from __future__ import annotations

import signal
import time

from django.db import connection

from tests.faults.conftest import deliveries, post, wait_final
from tests.helpers import wait_for
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE
from zerver.models import Notification

USERS = 20
IN_FLIGHT_BOUND = 500  # the push worker's batch: what one lost connection or kill -9 can redeliver


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


def expo_deliveries(providers):
    records = providers.expo.control.received("notification")
    return deliveries(records, lambda r: (r["message"].get("data") or {}).get("notification_id"))


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
    got = expo_deliveries(providers)
    assert set(ids) <= set(got)
    assert sum(n - 1 for n in got.values()) <= IN_FLIGHT_BOUND
    assert processes.exited() == []


def test_broker_down_at_accept_time(api, providers, processes, rabbitmq):
    setup_users(api)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    wait_for(lambda: len(expo_deliveries(providers)) == 0 and sent_count([]) == 0, what="workers up")
    rabbitmq.stop()
    try:
        ids = send_pushes(api, 100)  # accepted (202) with the broker down: held in the outbox
    finally:
        rabbitmq.start()
    statuses = wait_final(ids, timeout=180)

    assert statuses == {"sent": 100}
    got = expo_deliveries(providers)
    assert set(got) >= set(ids) and max(got.values()) == 1
    assert processes.exited() == []


def test_database_stopped_for_10_seconds_mid_stream(api, providers, processes, mariadb):
    setup_users(api)
    providers.expo.control.add_rule(delay=0.2)
    processes.worker(MOBILE_NOTIFICATIONS_QUEUE)
    processes.relay()
    ids = send_pushes(api, 600)

    wait_for(lambda: sent_count(ids) > 0, timeout=60, what="the first push sent")
    mariadb.stop()
    time.sleep(10)
    mariadb.start()
    connection.close()
    statuses = wait_final(ids, timeout=90)

    assert statuses == {"sent": 600}
    got = expo_deliveries(providers)
    assert set(ids) <= set(got)
    assert sum(n - 1 for n in got.values()) <= IN_FLIGHT_BOUND
    assert processes.exited() == []


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
    got = expo_deliveries(providers)
    assert set(ids) <= set(got)
    duplicates = sum(n - 1 for n in got.values())
    print(f"kill -9 x{kills}: {duplicates} duplicate deliveries")
    assert duplicates <= IN_FLIGHT_BOUND * kills
    assert [name for name in processes.exited() if name != MOBILE_NOTIFICATIONS_QUEUE] == []
