"""The SMS worker: one backend (console or a Twilio-compatible API) for the whole process."""

from __future__ import annotations

import threading
from typing import Any

from workers.base import assign_queue
from workers.delivery import NotificationDeliveryWorker
from zerver.lib.queue import SMS_NOTIFICATIONS_QUEUE
from zerver.lib.sms import get_backend
from zerver.models import Notification


@assign_queue(SMS_NOTIFICATIONS_QUEUE)
class SmsWorker(NotificationDeliveryWorker):
    """Each sending thread keeps its own backend (an HTTP session with its kept-alive connection)."""

    concurrency = 8

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.provider = get_backend().name
        self.local = threading.local()

    def open(self) -> Any:
        if not hasattr(self.local, "backend"):
            self.local.backend = get_backend()
        return self.local.backend

    def send(self, notification: Notification, connection: Any) -> str:
        return connection.send(notification.recipient, str(notification.content))
