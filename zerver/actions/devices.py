"""Telling the push bouncer about devices: the events that register and unregister them.

Device changes travel on the mobile queue, so they stay in order with the
user's pushes; each names the API client the device belongs to, because the
bouncer keys devices by (server, client, user).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from zerver.lib import outbox
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE
from zerver.models import PushDevice

REGISTER = "register_push_device_to_bouncer"
UNREGISTER = "unregister_push_device_from_bouncer"


def bouncer_event(kind: str, device: PushDevice) -> dict[str, Any]:
    """The queue event that registers (``REGISTER``) or unregisters (``UNREGISTER``) ``device`` with the bouncer.

    The client travels in the event: by the time an unregistration is
    consumed, the device row is gone.
    """
    return {"type": kind, "client_id": device.client_id, "user_id": device.user_id, "device_id": device.pk}


def register_all(client_id: int | None = None, chunk: int = 1000) -> int:
    """Queue a registration of every active device (of one client, if given); returns how many.

    For a bouncer that lost or never had them, e.g. after its migration
    ``bouncer/0002_remotepushdevice_client`` dropped the rows it could not
    give a client. Registering is idempotent, so running it twice is harmless.
    """
    devices = PushDevice.objects.filter(expired_at__isnull=True).order_by("pk")
    if client_id is not None:
        devices = devices.filter(client_id=client_id)
    queued, last = 0, 0
    while rows := list(devices.filter(pk__gt=last).only("pk", "client_id", "user_id")[:chunk]):
        with transaction.atomic():
            outbox.enqueue(MOBILE_NOTIFICATIONS_QUEUE, [bouncer_event(REGISTER, d) for d in rows])
        queued, last = queued + len(rows), rows[-1].pk
    return queued
