"""The benchmark next to a live stack: it leaves that stack's queues and rows as they were."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection
from model_bakery import baker

from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE, dlq_name, encode
from zerver.models import ApiClient, Notification

pytestmark = pytest.mark.integration


def test_bench_leaves_the_queues_and_rows_beside_it_untouched(broker, transactional_db):
    # What a dev stack has on this vhost and in this database: a backlog, dead letters, notifications.
    broker.declare(MOBILE_NOTIFICATIONS_QUEUE)
    pending = [{"notification_id": f"00000000-0000-4000-8000-{n:012d}", "user_id": "7"} for n in range(5)]
    broker.publish_raw([(MOBILE_NOTIFICATIONS_QUEUE, encode(e), {}) for e in pending])
    broker.publish_raw([(dlq_name(MOBILE_NOTIFICATIONS_QUEUE), encode(e), {"x-dlq-reason": "kept"}) for e in pending])
    client = baker.make(ApiClient, name="bench")  # even a client of the bench's own name stays
    baker.make(Notification, client=client, type="push", recipient="7", content={"body": "mine"}, _quantity=3)

    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.base",
        "DEBUG": "1",
        "RABBITMQ_URL": settings.RABBITMQ_URL,
        "DATABASE_URL": f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    run = subprocess.run(
        [sys.executable, "manage.py", "bench", "--count", "30", "--providers", "expo", "--json"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert '"sent": 30' in run.stdout

    assert broker.message_count(MOBILE_NOTIFICATIONS_QUEUE) == 5
    assert broker.message_count(dlq_name(MOBILE_NOTIFICATIONS_QUEUE)) == 5
    assert Notification.objects.filter(client=client).count() == 3
    assert ApiClient.objects.filter(name="bench").count() == 1
    broker.delete(MOBILE_NOTIFICATIONS_QUEUE)
