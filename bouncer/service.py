"""The bouncer's work, the same whether it is called over HTTP or in-process.

:func:`notify` takes a batch of notifications for a server's users, finds
every active device of those users in one query (a user is a server, an API
client of that server and the client's user id: two clients' user "1" are
two people), hands each provider its
share at the same time, and answers per device: delivered, expired, retry
or failed. Dead tokens are expired here and reported so the server expires
its own copy.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from prometheus_client import Counter

from bouncer.models import ExpoTicket, RemotePushDevice, RemoteServer
from zerver.lib.push import circuit
from zerver.lib.push.backends import backend_for
from zerver.lib.push.common import DELIVERED, EXPIRED, RETRY, PushMessage, PushResult
from zerver.lib.push.tokens import mask

logger = logging.getLogger(__name__)

expo_receipts = Counter(
    "expo_receipts", "Expo push receipts read, by outcome ('unknown': none came in time).", ["outcome"]
)

LAST_USED_RESOLUTION = timedelta(hours=1)
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="push-provider")


class DeviceOfAnotherClient(ValueError):
    """A registration names a device the server registered for another of its clients."""


def register_device(
    server: RemoteServer, *, client_id: str, device_id: str, user_id: str, platform: str, app_id: str, token: str
) -> None:
    """Register (or update) a server's device for one of its clients; registering twice is harmless.

    A device stays with the client that registered it: a registration of the
    same ``device_id`` for another client raises :class:`DeviceOfAnotherClient`
    (the server's device ids never change hands, so that is a bug to refuse,
    not a phone to move).
    """
    device = RemotePushDevice.objects.filter(server=server, device_id=device_id).first()
    if device is not None and device.client_id != client_id:
        raise DeviceOfAnotherClient(f"device {device_id} is registered for another client")
    device = device or RemotePushDevice(server=server, client_id=client_id, device_id=device_id)
    device.user_id, device.platform, device.app_id, device.expired_at = user_id, platform, app_id, None
    device.token = token
    device.save()
    logger.info("bouncer: %s registered %s device %s (%s)", server.hostname, platform, device_id, mask(token))


def unregister_device(server: RemoteServer, client_id: str, device_id: str) -> bool:
    """Forget a client's device; False if the client has no such device (another client's is left alone)."""
    deleted, _ = RemotePushDevice.objects.filter(server=server, client_id=client_id, device_id=device_id).delete()
    return bool(deleted)


def notify(server: RemoteServer, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send a batch. Each item: ``id``, ``client_id``, ``user_id``, ``payload`` and optionally
    ``device_ids`` (only those devices of that user: a retry of the ones that failed).
    Returns, per item, ``{"id", "devices": [{"device_id", "platform", "outcome", "error", "retry_after"}]}``.
    """
    client_ids = {str(item["client_id"]) for item in items}
    user_ids = {str(item["user_id"]) for item in items}
    devices_of: dict[tuple[str, str], list[RemotePushDevice]] = defaultdict(list)
    # Every (client, user) pair of the two sets is fetched; the key below keeps only the asked ones.
    for device in RemotePushDevice.objects.filter(server=server, client_id__in=client_ids, user_id__in=user_ids):
        devices_of[device.client_id, device.user_id].append(device)

    answers: list[dict[str, Any]] = []
    by_platform: dict[str, list[tuple[dict[str, Any], RemotePushDevice, PushMessage]]] = defaultdict(list)
    expired_before: list[RemotePushDevice] = []
    for item in items:
        answer: dict[str, Any] = {"id": item["id"], "devices": []}
        answers.append(answer)
        only = set(map(str, item["device_ids"])) if item.get("device_ids") else None
        for device in devices_of[str(item["client_id"]), str(item["user_id"])]:
            if only is not None and device.device_id not in only:
                continue
            if device.expired_at is not None:
                # Found dead since the server last heard (a late receipt): tell it now.
                answer["devices"].append(_answer(device, PushResult(EXPIRED, "token expired earlier")))
                expired_before.append(device)
                continue
            message = PushMessage(device.device_id, device.token, device.app_id, item["payload"])
            by_platform[device.platform].append((answer, device, message))

    futures = {}
    for platform, entries in by_platform.items():
        wait = circuit.allow(circuit_name(platform))
        if wait:
            # The provider keeps failing: hold its pushes (retried later, never failed) without calling it.
            circuit.held(circuit_name(platform), len(entries))
            held = PushResult(RETRY, f"{platform}: circuit open after repeated failures; held", retry_after=wait)
            for answer, device, _ in entries:
                answer["devices"].append(_answer(device, held))
            continue
        futures[platform] = _pool.submit(backend_for(platform).send, [m for _, _, m in entries])
    delivered, expired, tickets = [], [], []
    for platform, future in futures.items():
        results = future.result()
        if results and all(r.outcome == RETRY for r in results):
            circuit.record_failure(circuit_name(platform))
        elif results:
            circuit.record_success(circuit_name(platform))
        for (answer, device, _), result in zip(by_platform[platform], results, strict=True):
            answer["devices"].append(_answer(device, result))
            if result.outcome == DELIVERED:
                delivered.append(device)
                if result.extra.get("ticket_id"):
                    tickets.append(ExpoTicket(device=device, ticket_id=result.extra["ticket_id"]))
            elif result.outcome == EXPIRED:
                expired.append(device.pk)
    # last_used_at is kept to the hour: no write per push for a device in steady use.
    now = timezone.now()
    stale = [d.pk for d in delivered if d.last_used_at is None or now - d.last_used_at > LAST_USED_RESOLUTION]
    if stale:
        RemotePushDevice.objects.filter(pk__in=stale).update(last_used_at=now)
    ExpoTicket.objects.bulk_create(tickets)
    # Reported in this answer, so the server expires its copy: the bouncer's can go.
    gone = expired + [d.pk for d in expired_before]
    if gone:
        RemotePushDevice.objects.filter(pk__in=gone).delete()
    return answers


def circuit_name(platform: str) -> str:
    """The circuit of a platform's credential (one credential per platform for now)."""
    return platform


def _answer(device: RemotePushDevice, result: PushResult) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "platform": device.platform,
        "outcome": result.outcome,
        "error": result.error,
        "retry_after": result.retry_after,
        "provider_id": str(result.extra.get("provider_id", "")),
    }


def check_expo_receipts(min_age_seconds: float | None = None, limit: int = 10_000) -> int:
    """Read the receipts of Expo tickets old enough to have one, oldest first; expire devices Expo calls unregistered.

    Returns how many devices were expired. The servers hear of it on their
    next push to those users (the device answers "expired"). Tickets whose
    receipt is not ready yet are kept for the next round, but only for
    ``EXPO_RECEIPT_MAX_AGE_SECONDS`` (Expo keeps receipts about a day): older
    ones are closed as ``unknown``, so none is read again and again forever.
    """
    now = timezone.now()
    stale = ExpoTicket.objects.filter(created_at__lte=now - timedelta(seconds=settings.EXPO_RECEIPT_MAX_AGE_SECONDS))
    closed, _ = stale.delete()
    if closed:
        expo_receipts.labels("unknown").inc(closed)
        logger.info("bouncer: closed %d Expo tickets whose receipt never came", closed)
    age = settings.EXPO_RECEIPT_DELAY_SECONDS if min_age_seconds is None else min_age_seconds
    due = list(
        ExpoTicket.objects.filter(created_at__lte=now - timedelta(seconds=age)).order_by("created_at", "pk")[:limit]
    )
    if not due:
        return 0
    receipts = backend_for("expo").get_receipts([t.ticket_id for t in due])
    dead = set()
    for ticket in due:
        receipt = receipts.get(ticket.ticket_id)
        if receipt is None:
            continue  # not ready yet
        error = (receipt.get("details") or {}).get("error")
        expo_receipts.labels(error or receipt.get("status", "ok")).inc()
        if error == "DeviceNotRegistered":
            dead.add(ticket.device_id)
    RemotePushDevice.objects.filter(pk__in=dead, expired_at__isnull=True).update(expired_at=timezone.now())
    ExpoTicket.objects.filter(pk__in=[t.pk for t in due if t.ticket_id in receipts]).delete()
    return len(dead)
