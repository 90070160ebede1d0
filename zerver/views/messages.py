"""Chat-message events and the per-user settings that route their notifications."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse

from workers.fan_out import MESSAGE_NOTIFICATIONS_QUEUE
from zerver.lib import outbox, ratelimit
from zerver.lib.api import ApiError, api_view, json_body
from zerver.lib.validation import E164
from zerver.models import ApiClient, UserSettings


@api_view("POST")
def new_message(request: HttpRequest, client: ApiClient) -> JsonResponse:
    """``POST /api/v1/messages``: queue the fan-out of a new chat message to its recipients."""
    body = json_body(request)
    errors = {k: "is required" for k in ("message_id", "sender_id", "recipient_ids") if k not in body}
    if "recipient_ids" in body and not isinstance(body["recipient_ids"], list):
        errors["recipient_ids"] = "must be a list of user ids"
    if errors:
        raise ApiError(400, "invalid request", errors)
    # Counted as the fan-out will send: one per distinct recipient but the sender.
    recipients = {str(r) for r in body["recipient_ids"]} - {str(body["sender_id"])}
    ratelimit.check_client_notifications(client, len(recipients), field="recipient_ids")
    event = {**body, "type": "new_message", "client_id": client.pk}
    with transaction.atomic():
        outbox.enqueue(MESSAGE_NOTIFICATIONS_QUEUE, [event])
    return JsonResponse({"queued": True}, status=202)


SETTINGS_FIELDS = ("email", "phone", "push_enabled", "email_enabled", "sms_enabled")


@api_view("PUT")
def user_settings(request: HttpRequest, client: ApiClient, user_id: str) -> JsonResponse:
    """``PUT /api/v1/users/<user_id>/settings``: contact addresses and channel switches."""
    body = json_body(request)
    errors: dict[str, str] = {}
    for flag in ("push_enabled", "email_enabled", "sms_enabled"):
        if flag in body and not isinstance(body[flag], bool):
            errors[flag] = "must be true or false"
    if body.get("phone") and not E164.match(str(body["phone"])):
        errors["phone"] = "must be a phone number in E.164 form"
    errors |= {field: "unknown field" for field in set(body) - set(SETTINGS_FIELDS)}
    settings = UserSettings.objects.filter(client=client, user_id=user_id).first()
    settings = settings or UserSettings(client=client, user_id=user_id)
    for field in SETTINGS_FIELDS:
        if field in body:
            setattr(settings, field, body[field])
    try:
        settings.full_clean()
    except ValidationError as e:
        errors |= {field: "; ".join(messages) for field, messages in e.message_dict.items()}
    if errors:
        raise ApiError(400, "invalid request", errors)
    settings.save()
    return JsonResponse({"user_id": user_id, **{f: getattr(settings, f) for f in SETTINGS_FIELDS}})
