"""The pure rules of the queue client and the worker framework: no broker needed."""

import pytest
from django.core.management import CommandError, call_command

from tests.helpers import read_jsonl
from workers import base
from workers.base import get_worker, registered_queues
from zerver.lib.queue import (
    MessageTooLarge,
    QueueMessage,
    encode,
    queue_json_publish,
    retry_delay,
    retry_delays,
    retry_queue_name,
    retry_wait,
    route,
    topology_owner,
)


def test_backoff_doubles_from_the_base_up_to_the_cap(settings):
    settings.QUEUE_RETRY_BASE_SECONDS = 1
    settings.QUEUE_RETRY_MAX_SECONDS = 60
    settings.QUEUE_RETRY_AFTER_MAX_SECONDS = 60
    assert retry_delays() == [1, 2, 4, 8, 16, 32, 60]
    assert [retry_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_retry_after_raises_the_delay_to_the_next_step_even_past_the_cap(settings):
    settings.QUEUE_RETRY_BASE_SECONDS = 1
    settings.QUEUE_RETRY_MAX_SECONDS = 60
    settings.QUEUE_RETRY_AFTER_MAX_SECONDS = 3600
    assert retry_delays() == [1, 2, 4, 8, 16, 32, 60, 120, 240, 480, 960, 1920, 3600]
    assert retry_delay(1, at_least=5) == 8
    assert retry_delay(9) == 60  # backoff alone stops at the cap
    assert retry_delay(1, at_least=300) == 480  # a provider's Retry-After is a floor, cap or no cap
    assert retry_delay(1, at_least=86400) == 3600


def test_jittered_waits_spread_below_the_backoff_and_never_go_under_retry_after(settings):
    settings.QUEUE_RETRY_BASE_SECONDS = 1
    settings.QUEUE_RETRY_MAX_SECONDS = 60
    waits = {retry_wait(7) for _ in range(300)}
    assert len(waits) > 3 and max(waits) <= 60 and min(waits) >= 1
    assert {retry_wait(7, at_least=30) for _ in range(100)} <= {32, 60}


def test_retry_queues_are_named_by_their_delay_and_belong_to_their_main_queue():
    assert retry_queue_name("email_notifications", 0.25) == "email_notifications.retry.250ms"
    assert topology_owner("email_notifications.retry.250ms") == "email_notifications"
    assert topology_owner("email_notifications.dlq") == "email_notifications"
    assert topology_owner("email_notifications") == "email_notifications"


def test_sharded_queue_routes_by_user_id(settings):
    settings.SHARDED_QUEUES = {"missedmessage_mobile_notifications": 4}
    assert route("missedmessage_mobile_notifications", {"user_id": 7}) == "missedmessage_mobile_notifications_shard4"
    assert route("missedmessage_mobile_notifications", {"user_id": 8}) == "missedmessage_mobile_notifications_shard1"
    assert route("email_notifications", {"user_id": 7}) == "email_notifications"


def test_unsharded_queue_routes_to_itself(settings):
    settings.SHARDED_QUEUES = {"missedmessage_mobile_notifications": 1}
    assert route("missedmessage_mobile_notifications", {"user_id": 7}) == "missedmessage_mobile_notifications"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "body is not valid JSON"),
        (b'"a string"', "body is JSON str, not an object"),
        (b"\xff", "body is not valid JSON"),
    ],
)
def test_malformed_bodies_are_recognised(body, reason):
    message = QueueMessage.decode("q", body, None, 1, False)
    assert message.event is None
    assert message.malformed.startswith(reason)


def test_attempt_comes_from_the_header():
    assert QueueMessage.decode("q", b"{}", None, 1, False).attempt == 1
    assert QueueMessage.decode("q", b"{}", {"x-attempt": 3}, 1, False).attempt == 3


def test_worker_for_a_shard_is_found_by_its_name_or_worker_num(settings):
    settings.SHARDED_QUEUES = {"test": 3}
    assert get_worker("test_shard2").queue_name == "test_shard2"
    assert get_worker("test", worker_num=3).queue_name == "test_shard3"
    with pytest.raises(ValueError, match="has 3 shards"):
        get_worker("test")
    with pytest.raises(KeyError):
        get_worker("test_shard4")
    assert {"test_shard1", "test_shard2", "test_shard3"} <= set(registered_queues())


def test_process_queue_lists_registered_queues(capsys):
    call_command("process_queue", "--list")
    listed = capsys.readouterr().out.split()
    assert listed == registered_queues()
    assert {"noop", "test"} <= set(listed)


def test_process_queue_refuses_an_unknown_queue():
    with pytest.raises(CommandError, match="no worker is registered for queue 'nope'"):
        call_command("process_queue", "--queue_name=nope")


def test_inline_backend_consumes_in_process_with_the_same_retry_policy(settings, tmp_path):
    settings.QUEUE_BACKEND = "inline"
    settings.TEST_WORKER_OUTPUT = str(tmp_path / "out.jsonl")
    queue_json_publish("test", {"id": "a", "retry_until": 3})
    [line] = read_jsonl(settings.TEST_WORKER_OUTPUT)
    assert (line["id"], line["attempt"]) == ("a", 3)


def test_inline_backend_keeps_dead_letters(settings, tmp_path):
    settings.QUEUE_BACKEND = "inline"
    settings.TEST_WORKER_OUTPUT = str(tmp_path / "out.jsonl")
    base.inline_dead_letters.clear()
    queue_json_publish("test", {"id": "b", "fail": "nope"})
    queue_json_publish("test", {"id": "c", "always_retry": True})
    assert [(d["event"]["id"], d["reason"]) for d in base.inline_dead_letters] == [
        ("b", "RuntimeError: nope"),
        ("c", "RetryLater: asked to retry (attempt 6)"),
    ]
    assert read_jsonl(settings.TEST_WORKER_OUTPUT) == []


def test_a_database_deadlock_is_retried_not_dead_lettered(settings, tmp_path):
    from django.db import OperationalError

    from workers.base import is_transient

    assert is_transient(OperationalError(1213, "Deadlock found when trying to get lock"))
    assert not is_transient(ValueError("bad"))


def test_deeply_nested_and_oversized_bodies_are_malformed_not_fatal(settings):
    nested = QueueMessage.decode("q", b"[" * 100_000 + b"]" * 100_000, None, 1, False)
    assert nested.malformed == "body is JSON nested too deeply to decode"
    settings.QUEUE_MAX_MESSAGE_BYTES = 1000
    big = QueueMessage.decode("q", b'{"a": "' + b"x" * 2000 + b'"}', None, 1, False)
    assert big.malformed.startswith("body is 2009 bytes, over QUEUE_MAX_MESSAGE_BYTES")


def test_an_event_over_the_size_cap_is_refused_at_publish(settings):
    settings.QUEUE_MAX_MESSAGE_BYTES = 100
    with pytest.raises(MessageTooLarge):
        encode({"pad": "x" * 200})
    assert encode({"pad": "x"}) == b'{"pad":"x"}'
