"""The worker shape shared by channels that deliver stored notifications one by one (e-mail, SMS)."""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from workers.base import InvalidEvent, LoopQueueProcessingWorker, RetryLater
from workers.metrics import observe_provider
from zerver.lib.delivery import SendError, SendResult, claim, expire, give_up, past_deadline, record
from zerver.lib.queue import QueueMessage
from zerver.models import Notification

logger = logging.getLogger(__name__)


class PermanentSendError(Exception):
    """Dead-letters an event whose notification a provider refused for good."""


class NotificationDeliveryWorker(LoopQueueProcessingWorker):
    """Consumes ``{"notification_id": ...}`` events and delivers each notification once.

    A batch is claimed with one query and recorded with a few; in between,
    ``concurrency`` threads send it, each over a connection of its own that
    serves its whole share (:meth:`open`, :meth:`close`). Subclasses name
    their ``provider`` and implement :meth:`send`.
    """

    provider: str
    concurrency: int = 4

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=self.queue_name)

    def open(self) -> Any:
        """A connection for one thread's share of a batch."""
        return None

    def close(self, connection: Any) -> None:
        pass

    def send(self, notification: Notification, connection: Any) -> str | None:
        """Deliver one notification and return the provider's id for it, if any.

        Raise :class:`SendError` if the provider did not take it.
        """
        raise NotImplementedError

    def consume_batch(self, messages: list[QueueMessage]) -> None:
        wanted: dict[uuid.UUID, QueueMessage] = {}
        for message in messages:
            notification_id = parse_id(message.event)
            if notification_id is None:
                message.fail(InvalidEvent("event has no valid 'notification_id'"))
            else:
                wanted[notification_id] = message
        claimed = claim(
            [i for i, m in wanted.items() if not m.redelivered], [i for i, m in wanted.items() if m.redelivered]
        )
        unclaimed = set(wanted) - {n.pk for n in claimed}
        known = set(Notification.objects.filter(pk__in=unclaimed).values_list("pk", flat=True)) if unclaimed else set()
        for notification_id in unclaimed:
            if notification_id in known:
                logger.info("%s: %s is done already; skipped", self.queue_name, notification_id)
            else:
                wanted[notification_id].fail(InvalidEvent(f"no notification {notification_id}"))
        late = [n for n in claimed if past_deadline(n)]
        if late:
            expire([n.pk for n in late], "expired before it could be sent: its deadline passed while it waited")
            claimed = [n for n in claimed if not past_deadline(n)]
        shares = [claimed[i :: self.concurrency] for i in range(self.concurrency)]
        results = [result for share in self.pool.map(self.send_share, shares) for result in share]
        record(self.provider, results)
        for result in results:
            if result.error is not None and result.error.transient:
                wanted[result.notification.pk].fail(RetryLater(str(result.error), delay=result.error.retry_after))
            elif result.error is not None:
                wanted[result.notification.pk].fail(PermanentSendError(str(result.error)))

    def send_share(self, notifications: list[Notification]) -> list[SendResult]:
        """Send one thread's share over one connection."""
        if not notifications:
            return []
        results: list[SendResult] = []
        connection = self.open()
        try:
            for notification in notifications:
                try:
                    with observe_provider(self.provider):
                        provider_id = self.send(notification, connection)
                    results.append(SendResult(notification, provider_id=provider_id or ""))
                except SendError as e:
                    results.append(SendResult(notification, error=e))
                except Exception as e:
                    # Whatever else one message raises (a header the backend refuses, a bad address)
                    # fails that message alone, for good: retrying it as it is cannot help.
                    logger.warning("%s: %s failed: %s", self.queue_name, notification.pk, type(e).__name__)
                    results.append(
                        SendResult(notification, error=SendError(f"{type(e).__name__}: {e}", transient=False))
                    )
        finally:
            self.close(connection)
        return results

    def dead_lettered(self, message: QueueMessage, reason: str) -> None:
        give_up_on_event(message, reason, self.provider)

    def expired(self, message: QueueMessage, reason: str) -> None:
        notification_id = parse_id(message.event)
        if notification_id is not None:
            expire([notification_id], reason)


def give_up_on_event(message: QueueMessage, reason: str, provider: str) -> None:
    """A dead-lettered delivery event: its notification, if it names one, has failed."""
    notification_id = parse_id(message.event)
    if notification_id is not None:
        give_up(notification_id, reason, provider)


def parse_id(event: dict[str, Any] | None) -> uuid.UUID | None:
    """The notification id of a delivery event, or None if it has none that could be one."""
    try:
        return uuid.UUID((event or {})["notification_id"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
