"""The notification API: send, and ask how it went."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from zerver.actions.notifications import client_notification, send_notification
from zerver.lib.schemas import ERRORS, SendOut, SendRequest, StatusOut
from zerver.models import Notification

router = Router(tags=["notifications"])


def serialize(notification: Notification, with_attempts: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": str(notification.id),
        "type": notification.type,
        "status": notification.status,
        "created_at": notification.created_at.isoformat(),
        "updated_at": notification.updated_at.isoformat(),
        "sent_at": notification.sent_at.isoformat() if notification.sent_at else None,
        "error": notification.error or None,
    }
    if notification.details:
        data["details"] = notification.details
    if with_attempts:
        data["attempts"] = [
            {
                "at": a.at.isoformat(),
                "provider": a.provider,
                "outcome": a.outcome,
                "error": a.error or None,
                "provider_id": a.provider_id or None,
            }
            for a in notification.attempts.all()
        ]
    return data


@router.post("/notifications/send", response={200: SendOut, 202: SendOut, **ERRORS})
def send(request: HttpRequest, payload: SendRequest) -> Status[dict[str, Any]]:
    """Accept a notification: 202 with the id; a repeated idempotency key gives the first (200)."""
    notification, created = send_notification(request.auth, payload.cleaned())
    return Status(202 if created else 200, {**serialize(notification), "duplicate": not created})


@router.get("/notifications/{notification_id}/status", response={200: StatusOut, **ERRORS})
def status(request: HttpRequest, notification_id: str) -> dict[str, Any]:
    """A notification's status, timestamps and every attempt; another client's is a 404."""
    return serialize(client_notification(request.auth, notification_id), with_attempts=True)
