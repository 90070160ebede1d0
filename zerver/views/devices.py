"""Registering the devices a user receives pushes on."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest
from ninja import Router, Status

from zerver.actions.devices import REGISTER, UNREGISTER, bouncer_event
from zerver.lib import outbox
from zerver.lib.api import ApiError
from zerver.lib.push import tokens
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE
from zerver.lib.schemas import ERRORS, DeviceListOut, DeviceOut, DeviceRequest, UnregisteredOut, UserId
from zerver.models import PushDevice

router = Router(tags=["devices"])


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


@router.get("/devices", response={200: DeviceListOut, **ERRORS})
def list_devices(request: HttpRequest, user_id: UserId) -> dict[str, Any]:
    """A user's devices, tokens masked."""
    rows = PushDevice.objects.filter(client=request.auth, user_id=user_id).order_by("id")
    return {"devices": [serialize(d) for d in rows]}


@router.post("/devices", response={200: DeviceOut, 201: DeviceOut, **ERRORS})
def register(request: HttpRequest, payload: DeviceRequest) -> Status[dict[str, Any]]:
    """Register a device (idempotent by token: 201 the first time, 200 after)."""
    client = request.auth
    token = PushDevice.normalize(payload.platform, payload.token)
    with transaction.atomic():
        device = (
            PushDevice.objects.select_for_update()
            .filter(client=client, platform=payload.platform, token_hash=tokens.token_hash(token))
            .first()
        )
        created = device is None
        device = device or PushDevice(client=client, platform=payload.platform)
        device.user_id, device.app_id, device.expired_at = payload.user_id, payload.app_id, None
        device.token = token
        device.save()
        outbox.enqueue(MOBILE_NOTIFICATIONS_QUEUE, [bouncer_event(REGISTER, device)])
    return Status(201 if created else 200, serialize(device))


@router.delete("/devices/{int:device_id}", response={200: UnregisteredOut, **ERRORS})
def unregister(request: HttpRequest, device_id: int) -> dict[str, Any]:
    """Unregister a device; no push reaches it afterwards. Another client's is a 404."""
    with transaction.atomic():
        row = PushDevice.objects.filter(client=request.auth, pk=device_id).first()
        if row is None:
            raise ApiError(404, "no such device")
        outbox.enqueue(MOBILE_NOTIFICATIONS_QUEUE, [bouncer_event(UNREGISTER, row)])
        row.delete()
    return {"result": "unregistered"}
