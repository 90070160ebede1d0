"""The notification API: send, and ask how it went."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from zerver.actions.notifications import client_notification, send_notification
from zerver.lib.api import api_view, json_body
from zerver.lib.validation import validate_send
from zerver.models import ApiClient, Notification


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


@api_view("POST")
def send(request: HttpRequest, client: ApiClient) -> JsonResponse:
    """``POST /api/v1/notifications/send``: 202 with the id; a repeated idempotency key gives the first."""
    notification, created = send_notification(client, validate_send(json_body(request)))
    return JsonResponse({**serialize(notification), "duplicate": not created}, status=202 if created else 200)


@api_view("GET")
def status(request: HttpRequest, client: ApiClient, notification_id: str) -> JsonResponse:
    """``GET /api/v1/notifications/<id>/status``: status, timestamps and every attempt."""
    return JsonResponse(serialize(client_notification(client, notification_id), with_attempts=True))
