"""``./manage.py dlq`` and the admin's queue page against the real RabbitMQ."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from model_bakery import baker

from tests.helpers import read_jsonl, running, wait_for
from workers.base import get_worker
from zerver.lib.queue import dlq_name, encode, queue_json_publish_many
from zerver.models import Attempt, Notification, Status

pytestmark = pytest.mark.integration


def dlq(*args: str) -> str:
    out = StringIO()
    call_command("dlq", *args, stdout=out)
    return out.getvalue()


def dead_letter(event: dict, attempts: int = 6) -> tuple[str, bytes, dict]:
    """A message as the framework dead-letters it after ``attempts`` attempts."""
    headers = {
        "x-attempt": attempts,
        "x-retry-reason": "asked to retry",
        "x-dlq-reason": f"gave up after {attempts} attempts",
        "x-dlq-exception": "RetryLater: asked to retry",
        "x-dlq-traceback": "Traceback ...",
        "x-dlq-attempts": attempts,
        "x-dlq-queue": "test",
        "x-dlq-failed-at": "2025-01-01T00:00:00+00:00",
        "x-trace-id": "kept",
    }
    return (dlq_name("test"), encode(event), headers)


def test_list_and_show_leave_real_dead_letters_in_place(broker, test_queue):
    queue_json_publish_many("test", [{"id": i, "fail": f"provider said no {i}"} for i in range(3)])
    with running(get_worker("test")):
        wait_for(lambda: broker.message_count(dlq_name("test")) == 3, what="3 dead letters")

    listing = dlq("list")
    [row] = [line.split() for line in listing.splitlines() if line.startswith("test ")]
    assert row == ["test", "0", "0", "3"]
    assert "email_notifications" in listing

    shown = dlq("show", "--queue", "test", "--limit", "2")
    assert "test.dlq: 3 dead letters" in shown
    assert "RuntimeError: provider said no 0" in shown and "RuntimeError: provider said no 1" in shown
    assert "provider said no 2" not in shown
    assert broker.message_count(dlq_name("test")) == 3
    # Still in their order: showing again starts with the same one.
    again = dlq("show", "--queue", "test", "--limit", "1")
    assert '"id":0' in again and "#2" not in again


def test_replay_of_50_dead_letters_puts_them_back_with_a_fresh_attempt_count(broker, test_queue):
    broker.declare("test")
    broker.publish_raw([dead_letter({"id": i}) for i in range(50)])

    assert "test: replayed 50 events" in dlq("replay", "--queue", "test")
    assert broker.message_count(dlq_name("test")) == 0
    assert broker.message_count("test") == 50

    channel = broker.publish_channel.connection.channel()
    _, properties, _ = channel.basic_get("test", auto_ack=False)
    assert properties.headers == {"x-trace-id": "kept"}
    channel.close()  # back to the queue, unacknowledged

    with running(get_worker("test")):
        wait_for(lambda: len(read_jsonl(test_queue)) == 50, what="50 replayed events consumed")
    lines = read_jsonl(test_queue)
    assert sorted(line["id"] for line in lines) == list(range(50))
    assert {line["attempt"] for line in lines} == {1}


def test_replay_limit_and_purge(broker, test_queue):
    broker.declare("test")
    broker.publish_raw([dead_letter({"id": i}) for i in range(10)])

    assert "replayed 4 events" in dlq("replay", "--queue", "test", "--limit", "4")
    assert (broker.message_count("test"), broker.message_count(dlq_name("test"))) == (4, 6)

    assert "purged 6 messages" in dlq("purge", "--queue", "test", "--yes")
    assert broker.message_count(dlq_name("test")) == 0
    with pytest.raises(CommandError, match="--queue"):
        dlq("purge")
    with pytest.raises(CommandError, match="no registered queue"):
        dlq("replay", "--queue", "nope")


@pytest.mark.django_db(transaction=True)
def test_replay_reopens_a_failed_notification_so_it_is_delivered(broker, mailoutbox):
    notification = baker.make(
        Notification, type="email", recipient="ann@example.com", content="hi", status=Status.FAILED, error="gave up"
    )
    broker.delete("email_notifications")
    broker.declare("email_notifications")
    event = encode({"notification_id": str(notification.pk)})
    broker.publish_raw([(dlq_name("email_notifications"), event, {"x-attempt": 6, "x-dlq-reason": "gave up"})])

    dlq("replay", "--queue", "email_notifications")
    notification.refresh_from_db()
    assert notification.status == Status.PENDING

    with running(get_worker("email_notifications")):
        wait_for(lambda: Notification.objects.get(pk=notification.pk).status == Status.SENT, what="delivery")
    assert [m.to for m in mailoutbox] == [["ann@example.com"]]
    assert Attempt.objects.get(notification=notification).outcome == Attempt.Outcome.SENT
    broker.delete("email_notifications")


@pytest.mark.django_db
def test_admin_queue_page_shows_dead_letter_counts(admin_client, broker, test_queue):
    broker.declare("test")
    broker.publish_raw([dead_letter({"id": i}) for i in range(3)])

    response = admin_client.get("/admin/zerver/notification/dead-letters/")

    assert response.status_code == 200
    rows = {row.queue: row for row in response.context["rows"]}
    assert (rows["test"].main, rows["test"].dead) == (0, 3)
