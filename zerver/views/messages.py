"""Chat-message events and the per-user settings that route their notifications."""

from __future__ import annotations

from django.conf import settings as django_settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse

from workers.fan_out import MESSAGE_NOTIFICATIONS_QUEUE
from zerver.lib import outbox, ratelimit
from zerver.lib.api import api_view, json_body
from zerver.lib.validation import SETTINGS_FIELDS, validate_message, validate_user_settings
from zerver.models import ApiClient, UserSettings


@api_view("POST")
def new_message(request: HttpRequest, client: ApiClient) -> JsonResponse:
    """``POST /api/v1/messages``: queue the fan-out of a new chat message to its recipients."""
    body = validate_message(json_body(request), django_settings.MESSAGES_MAX_RECIPIENTS)
    # Counted as the fan-out will send: one per distinct recipient but the sender.
    recipients = {str(r) for r in body["recipient_ids"]} - {str(body["sender_id"])}
    ratelimit.check_client_notifications(client, len(recipients), field="recipient_ids")
    event = {**body, "type": "new_message", "client_id": client.pk}
    with transaction.atomic():
        outbox.enqueue(MESSAGE_NOTIFICATIONS_QUEUE, [event])
    return JsonResponse({"queued": True}, status=202)


@api_view("PUT")
def user_settings(request: HttpRequest, client: ApiClient, user_id: str) -> JsonResponse:
    """``PUT /api/v1/users/<user_id>/settings``: contact addresses and channel switches."""
    changes = validate_user_settings(user_id, json_body(request))
    settings = UserSettings.objects.filter(client=client, user_id=user_id).first()
    settings = settings or UserSettings(client=client, user_id=user_id)
    for field, value in changes.items():
        setattr(settings, field, value)
    settings.save()
    return JsonResponse({"user_id": user_id, **{f: getattr(settings, f) for f in SETTINGS_FIELDS}})
