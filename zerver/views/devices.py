"""Registering the devices a user receives pushes on."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from zerver.actions.devices import REGISTER, UNREGISTER, bouncer_event
from zerver.lib import outbox
from zerver.lib.api import ApiError, api_view, json_body
from zerver.lib.push import tokens
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE
from zerver.lib.validation import recipient_error, user_id_error
from zerver.models import ApiClient, Platform, PushDevice
from zerver.models.devices import token_error


def serialize(device: PushDevice) -> dict[str, Any]:
    return {
        "id": device.pk,
        "user_id": device.user_id,
        "platform": device.platform,
        "app_id": device.app_id,
        "token": device.masked_token,
        "created_at": device.created_at.isoformat(),
        "expired_at": device.expired_at.isoformat() if device.expired_at else None,
    }


@api_view("GET", "POST")
def devices(request: HttpRequest, client: ApiClient) -> JsonResponse:
    """``POST /api/v1/devices`` registers (idempotently); ``GET ?user_id=`` lists a user's devices."""
    if request.method == "GET":
        user_id = request.GET.get("user_id")
        if not user_id:
            raise ApiError(400, "invalid request", {"user_id": "is required"})
        if error := user_id_error(user_id):
            raise ApiError(400, "invalid request", {"user_id": error})
        rows = PushDevice.objects.filter(client=client, user_id=user_id).order_by("id")
        return JsonResponse({"devices": [serialize(d) for d in rows]})
    return register(client, json_body(request))


def register(client: ApiClient, body: dict[str, Any]) -> JsonResponse:
    errors: dict[str, str] = {}
    if error := recipient_error("push", body.get("user_id")):
        errors["user_id"] = error
    platform = body.get("platform")
    if platform not in Platform.values:
        errors["platform"] = f"must be one of {', '.join(Platform.values)}"
    token = body.get("token")
    if not isinstance(token, str):
        errors["token"] = "is required"  # noqa: S105 (a message, not a secret)
    elif platform in Platform.values and (error := token_error(platform, token)):
        errors["token"] = error
    app_id = body.get("app_id")
    if not isinstance(app_id, str) or not 1 <= len(app_id) <= 255:
        errors["app_id"] = "is required: the APNs topic (bundle id), or the FCM or Expo project"
    errors |= {field: "unknown field" for field in set(body) - {"user_id", "platform", "token", "app_id"}}
    if errors:
        raise ApiError(400, "invalid request", errors)

    token = PushDevice.normalize(platform, token)
    with transaction.atomic():
        device = (
            PushDevice.objects.select_for_update()
            .filter(client=client, platform=platform, token_hash=tokens.token_hash(token))
            .first()
        )
        created = device is None
        device = device or PushDevice(client=client, platform=platform)
        device.user_id, device.app_id, device.expired_at = str(body["user_id"]), app_id, None
        device.token = token
        device.save()
        outbox.enqueue(MOBILE_NOTIFICATIONS_QUEUE, [bouncer_event(REGISTER, device)])
    return JsonResponse(serialize(device), status=201 if created else 200)


@api_view("DELETE")
def device(request: HttpRequest, client: ApiClient, device_id: int) -> JsonResponse:
    """``DELETE /api/v1/devices/<id>``: unregister; no push reaches it afterwards."""
    with transaction.atomic():
        row = PushDevice.objects.filter(client=client, pk=device_id).first()
        if row is None:
            raise ApiError(404, "no such device")
        outbox.enqueue(MOBILE_NOTIFICATIONS_QUEUE, [bouncer_event(UNREGISTER, row)])
        row.delete()
    return JsonResponse({"result": "unregistered"})
