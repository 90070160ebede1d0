"""One poison event in a batch: it alone goes to the dead-letter queue, with its reason; the rest is delivered."""

import json

import pytest

from tests.helpers import running, wait_for
from tests.integration.test_push import expo_token, push, register, settled
from workers.base import get_worker
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE, dlq_name, encode

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]


def dead_letters(broker, queue):
    return [(m.body, m.headers) for m in broker.peek(dlq_name(queue), 50)]


def test_a_poison_event_fails_alone_and_its_batch_is_delivered(api, broker, providers, settings):
    settings.QUEUE_MAX_MESSAGE_BYTES = 64 * 1024
    register(api, "7", "expo", expo_token(1))
    ids = [push(api, "7", body=f"good {n}") for n in range(20)]
    bad_device = {"type": "register_push_device_to_bouncer", "user_id": "7", "device_id": "not-a-number"}
    nested = b'{"user_id": "7", "notification_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    huge = encode({"user_id": "7", "pad": "x" * 60_000}) + b" " * 10_000
    broker.publish_raw(
        [
            (MOBILE_NOTIFICATIONS_QUEUE, json.dumps(bad_device).encode(), {}),
            (MOBILE_NOTIFICATIONS_QUEUE, nested, {}),
            (MOBILE_NOTIFICATIONS_QUEUE, huge, {}),
        ]
    )

    with running(get_worker(MOBILE_NOTIFICATIONS_QUEUE)):
        results = [settled(api, i) for i in ids]
        wait_for(lambda: broker.message_count(dlq_name(MOBILE_NOTIFICATIONS_QUEUE)) == 3, what="three dead letters")

    assert [r["status"] for r in results] == ["sent"] * 20
    assert len(providers.expo.control.received("notification")) == 20
    reasons = [headers["x-dlq-reason"] for _, headers in dead_letters(broker, MOBILE_NOTIFICATIONS_QUEUE)]
    assert sorted(reasons) == [
        "ValueError: Field 'id' expected a number but got 'not-a-number'.",
        "malformed event: body is 70024 bytes, over QUEUE_MAX_MESSAGE_BYTES (65536)",
        "malformed event: body is JSON nested too deeply to decode",
    ]
