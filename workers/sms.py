"""The SMS worker: one backend (console or a Twilio-compatible API) for the whole process."""

from __future__ import annotations

from workers.base import assign_queue
from workers.delivery import NotificationDeliveryWorker
from zerver.lib.queue import SMS_NOTIFICATIONS_QUEUE
from zerver.lib.sms import get_backend
from zerver.models import Notification


@assign_queue(SMS_NOTIFICATIONS_QUEUE)
class SmsWorker(NotificationDeliveryWorker):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.backend = get_backend()
        self.provider = self.backend.name

    def send(self, notification: Notification) -> None:
        provider_id = self.backend.send(notification.recipient, str(notification.content))
        notification.details = {**notification.details, "provider_message_id": provider_id}
        Notification.objects.filter(pk=notification.pk).update(details=notification.details)
