"""The worker shape shared by channels that deliver one stored notification at a time (e-mail, SMS)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from workers.base import InvalidEvent, LoopQueueProcessingWorker, RetryLater
from workers.metrics import observe_provider
from zerver.lib.delivery import SendError, claim, give_up, record
from zerver.lib.queue import QueueMessage
from zerver.models import Notification

logger = logging.getLogger(__name__)


class PermanentSendError(Exception):
    """Dead-letters an event whose notification a provider refused for good."""


class NotificationDeliveryWorker(LoopQueueProcessingWorker):
    """Consumes ``{"notification_id": ...}`` events and delivers each notification once.

    Subclasses name their ``provider`` and implement :meth:`send`; :meth:`open`
    and :meth:`close` bracket a batch, so a connection serves all of it.
    """

    provider: str

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, notification: Notification) -> None:
        """Deliver one notification; raise :class:`SendError` if the provider did not take it."""
        raise NotImplementedError

    def consume_batch(self, messages: list[QueueMessage]) -> None:
        wanted: dict[uuid.UUID, QueueMessage] = {}
        for message in messages:
            notification_id = parse_id(message.event)
            if notification_id is None:
                message.fail(InvalidEvent("event has no valid 'notification_id'"))
            else:
                wanted[notification_id] = message
        found = Notification.objects.in_bulk(list(wanted))
        self.open()
        try:
            for notification_id, message in wanted.items():
                notification = found.get(notification_id)
                if notification is None:
                    message.fail(InvalidEvent(f"no notification {notification_id}"))
                elif claim(notification):
                    self.deliver(notification, message)
                else:
                    logger.info("%s: %s is %s already; skipped", self.queue_name, notification_id, notification.status)
        finally:
            self.close()

    def deliver(self, notification: Notification, message: QueueMessage) -> None:
        try:
            with observe_provider(self.provider):
                self.send(notification)
        except SendError as e:
            record(notification, self.provider, e)
            if e.transient:
                message.fail(RetryLater(str(e), delay=e.retry_after))
            else:
                message.fail(PermanentSendError(str(e)))
            return
        record(notification, self.provider, None)

    def dead_lettered(self, message: QueueMessage, reason: str) -> None:
        give_up_on_event(message, reason, self.provider)


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
