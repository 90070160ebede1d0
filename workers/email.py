"""The e-mail worker: renders nothing (the API did), sends through Django's e-mail backend."""

from __future__ import annotations

import smtplib
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from workers.base import assign_queue
from workers.delivery import NotificationDeliveryWorker
from zerver.lib.delivery import SendError
from zerver.lib.queue import EMAIL_NOTIFICATIONS_QUEUE
from zerver.models import Notification


def smtp_error(error: Exception) -> SendError:
    """SMTP's own rule: 4xx replies and lost connections are transient, 5xx replies permanent."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()))
        return SendError(f"SMTP {code} {reply.decode(errors='replace')}", transient=400 <= code < 500)
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        return SendError(f"SMTP {error.smtp_code} {reply}", transient=400 <= error.smtp_code < 500)
    return SendError(f"SMTP connection failed: {error!r}", transient=True)


@assign_queue(EMAIL_NOTIFICATIONS_QUEUE)
class EmailWorker(NotificationDeliveryWorker):
    """Each sending thread keeps one SMTP connection for its share of a batch; reopened after a failure."""

    provider = "smtp"

    def open(self) -> Any:
        return get_connection(fail_silently=False)

    def close(self, connection: Any) -> None:
        try:
            connection.close()
        except (smtplib.SMTPException, OSError):
            pass

    def send(self, notification: Notification, connection: Any) -> None:
        message = EmailMultiAlternatives(
            subject=notification.subject,
            body=str(notification.content),
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[notification.recipient],
            connection=connection,
            headers={"X-Notification-Id": str(notification.pk)},
        )
        if notification.html:
            message.attach_alternative(notification.html, "text/html")
        try:
            message.send()
        except (smtplib.SMTPException, OSError) as e:  # OSError covers timeouts and refused connections
            self.close(connection)  # the next message opens a fresh connection
            raise smtp_error(e) from e
