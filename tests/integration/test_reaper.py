"""The reaper: stranded notifications are published again and delivered once; those past their deadline expire."""

from datetime import timedelta

import pytest
from django.utils import timezone
from model_bakery import baker

from tests.helpers import running, wait_for
from workers.base import get_worker
from zerver.lib.reaper import reap_once
from zerver.models import Notification, OutboxEvent

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]


def email(api, recipient: str, status: str, moved_ago: float, expires_in: float | None) -> Notification:
    now = timezone.now()
    notification = baker.make(
        Notification,
        client=api.client_row,
        type="email",
        recipient=recipient,
        subject="Hi",
        content="Hello",
        status=status,
        expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
    )
    # No event stands behind it: as if its message was lost (an old dead letter, a bug, a wiped queue).
    Notification.objects.filter(pk=notification.pk).update(updated_at=now - timedelta(seconds=moved_ago))
    return notification


def test_stranded_notifications_are_delivered_once_and_late_ones_expire(api, providers, settings):
    settings.REAPER_STRANDED_SECONDS = 600
    pending = email(api, "pending@example.com", "pending", moved_ago=700, expires_in=3600)
    processing = email(api, "processing@example.com", "processing", moved_ago=700, expires_in=3600)
    retrying = email(api, "retrying@example.com", "retrying", moved_ago=700, expires_in=3600)
    late = email(api, "late@example.com", "pending", moved_ago=10, expires_in=-1)
    legacy = email(api, "legacy@example.com", "retrying", moved_ago=700, expires_in=None)
    Notification.objects.filter(pk=legacy.pk).update(created_at=timezone.now() - timedelta(days=2))
    recent = email(api, "recent@example.com", "pending", moved_ago=10, expires_in=3600)

    result = reap_once()

    assert result.expired == 2
    assert result.republished == {"pending": 1, "processing": 1, "retrying": 1}
    assert OutboxEvent.objects.count() == 0  # published right after the reaper's commit
    with running(get_worker("email_notifications")):
        wait_for(lambda: len(providers.smtp.control.received("message")) >= 3, what="three e-mails")
        wait_for(lambda: Notification.objects.filter(status="sent").count() == 3, what="three sent")

    def status(n: Notification) -> str:
        return Notification.objects.get(pk=n.pk).status

    assert [status(n) for n in (pending, processing, retrying)] == ["sent", "sent", "sent"]
    assert [status(n) for n in (late, legacy)] == ["expired", "expired"]
    assert Notification.objects.get(pk=late.pk).error == "stranded past its deadline: expired by the reaper"
    assert status(recent) == "pending"  # not stranded yet: its event may well be on its way
    received = sorted(m["rcpt_tos"][0] for m in providers.smtp.control.received("message"))
    assert received == ["pending@example.com", "processing@example.com", "retrying@example.com"]
    assert reap_once().total == 0  # nothing left to do: a second round sends nothing again
