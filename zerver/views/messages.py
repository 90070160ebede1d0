"""Chat-message events and the per-user settings that route their notifications."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest
from ninja import Router, Status

from workers.fan_out import MESSAGE_NOTIFICATIONS_QUEUE
from zerver.lib import outbox, ratelimit
from zerver.lib.schemas import ERRORS, MessageRequest, QueuedOut, UserId, UserSettingsOut, UserSettingsRequest
from zerver.models import UserSettings

router = Router(tags=["messages"])


@router.post("/messages", response={202: QueuedOut, **ERRORS})
def new_message(request: HttpRequest, payload: MessageRequest) -> Status[dict[str, Any]]:
    """Queue the fan-out of a new chat message to its recipients (each counts against the rate limit)."""
    client = request.auth
    body = payload.model_dump(exclude_unset=True)
    # Counted as the fan-out will send: one per distinct recipient but the sender.
    recipients = {str(r) for r in body["recipient_ids"]} - {str(body["sender_id"])}
    ratelimit.check_client_notifications(client, len(recipients), field="recipient_ids")
    event = {**body, "type": "new_message", "client_id": client.pk}
    with transaction.atomic():
        outbox.enqueue(MESSAGE_NOTIFICATIONS_QUEUE, [event])
    return Status(202, {"queued": True})


@router.put("/users/{user_id}/settings", response={200: UserSettingsOut, **ERRORS})
def user_settings(request: HttpRequest, user_id: UserId, payload: UserSettingsRequest) -> dict[str, Any]:
    """A user's contact addresses and channel switches, for the fan-out."""
    client = request.auth
    settings = UserSettings.objects.filter(client=client, user_id=user_id).first()
    settings = settings or UserSettings(client=client, user_id=user_id)
    for field, value in payload.model_dump(exclude_unset=True).items():
        setattr(settings, field, value)
    settings.save()
    return {"user_id": user_id, **{f: getattr(settings, f) for f in UserSettingsOut.model_fields if f != "user_id"}}
