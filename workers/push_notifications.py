"""The push worker, after Zulip's PushNotificationsWorker, on ``missedmessage_mobile_notifications``.

Events (one queue, sharded by user id so a user's events stay in order):

* ``{"notification_id", "user_id"[, "device_ids"]}``: deliver a stored push
  notification to the user's devices (``device_ids``: only those, on a retry);
  the user and the API client whose user it is come from the stored notification;
* ``{"type": "remove", "client_id", "user_id", "message_ids"}``: withdraw
  notifications already shown, by a data push;
* ``{"type": "register_push_device_to_bouncer" | "unregister_push_device_from_bouncer",
  "client_id", "user_id", "device_id"}`` (see zerver.actions.devices).

A batch makes one call to the bouncer for all its sends and removes, each
item naming its API client: the bouncer knows a user by (server, client,
user id). The answer, per device, decides each notification's fate.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workers import metrics
from workers.base import InvalidEvent, LoopQueueProcessingWorker, RetryLater, assign_queue
from workers.delivery import give_up_on_event, parse_id
from zerver.actions.devices import REGISTER, UNREGISTER
from zerver.lib.delivery import claim, expire, past_deadline
from zerver.lib.masking import scrub
from zerver.lib.push.bouncer_client import PushNotificationBouncerError, send_to_push_bouncer
from zerver.lib.push.common import DELIVERED, EXPIRED, FAILED, RETRY
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE, QueueMessage
from zerver.models import Attempt, Notification, PushDevice, Status

logger = logging.getLogger(__name__)

OUTCOME_TO_ATTEMPT = {
    DELIVERED: Attempt.Outcome.SENT,
    EXPIRED: Attempt.Outcome.TOKEN_EXPIRED,
    RETRY: Attempt.Outcome.RETRY,
    FAILED: Attempt.Outcome.FAILED,
}
# What building a payload, addressing it and counting its delivery read of a notification.
PAYLOAD_FIELDS = ("client_id", "recipient", "content", "subject", "created_at", "expires_at")
DEVICE_EVENTS = {REGISTER, UNREGISTER}


NO_DEVICE = "the user has no active device"


class PushFailed(Exception):
    """Every device refused the notification for good: dead-lettered with the reasons."""


def push_payload(notification: Notification) -> dict[str, Any]:
    """The provider-neutral payload of a stored push notification."""
    content = notification.content
    payload = dict(content) if isinstance(content, dict) else {"body": str(content)}
    if notification.subject and "title" not in payload:
        payload["title"] = notification.subject
    payload["data"] = {**payload.get("data", {}), "notification_id": str(notification.pk)}
    return payload


@assign_queue(MOBILE_NOTIFICATIONS_QUEUE)
class PushNotificationsWorker(LoopQueueProcessingWorker):
    # One bouncer call, and a handful of queries, per batch: bigger batches amortise them;
    # a batch waits at most 20 ms to fill, which bounds what batching adds to latency.
    batch_size = 500
    batch_wait = 0.02

    def consume_batch(self, messages: list[QueueMessage]) -> None:
        sends: dict[str, QueueMessage] = {}
        removes: list[QueueMessage] = []
        for message in messages:
            event = message.event or {}
            kind = event.get("type", "send")
            if "user_id" not in event:
                message.fail(InvalidEvent("push event has no 'user_id'"))
            elif kind in DEVICE_EVENTS:
                self.handle_device_event(message)
            elif kind == "remove":
                if not isinstance(event.get("message_ids"), list):
                    message.fail(InvalidEvent("remove event needs a list 'message_ids'"))
                elif not event.get("client_id"):
                    message.fail(InvalidEvent("remove event has no 'client_id'"))
                else:
                    removes.append(message)
            elif kind == "send":
                try:
                    sends[str(uuid.UUID(str(event["notification_id"])))] = message
                except (KeyError, ValueError):
                    message.fail(InvalidEvent("send event has no valid 'notification_id'"))
            else:
                message.fail(InvalidEvent(f"unknown push event type {kind!r}"))
        self.send(sends, removes)

    # Devices ---------------------------------------------------------------------

    def handle_device_event(self, message: QueueMessage) -> None:
        event = message.event or {}
        try:
            if event["type"] == UNREGISTER:
                if not event.get("client_id"):
                    # Queued before devices had clients on the bouncer: the row that knew it is gone.
                    message.fail(InvalidEvent("unregister event has no 'client_id'"))
                    return
                body = {"client_id": str(event["client_id"]), "device_id": str(event.get("device_id"))}
                send_to_push_bouncer("unregister", body)
                return
            device = PushDevice.objects.filter(pk=event.get("device_id")).first()
            if device is None or not device.is_active:
                logger.info("push: device %s is gone; not registered with the bouncer", event.get("device_id"))
            else:
                # The device's own client, whatever the event says: the row is the truth.
                send_to_push_bouncer(
                    "register",
                    {
                        "client_id": str(device.client_id),
                        "device_id": str(device.pk),
                        "user_id": device.user_id,
                        "platform": device.platform,
                        "app_id": device.app_id,
                        "token": device.token,
                    },
                )
        except (RetryLater, PushNotificationBouncerError) as e:
            message.fail(e)

    def expired(self, message: QueueMessage, reason: str) -> None:
        notification_id = parse_id(message.event)
        if notification_id is not None:
            expire([notification_id], reason)

    # Sending ---------------------------------------------------------------------

    def send(self, sends: dict[str, QueueMessage], removes: list[QueueMessage]) -> None:
        claimed = claim(
            [i for i, m in sends.items() if not m.redelivered],
            [i for i, m in sends.items() if m.redelivered],
            load=PAYLOAD_FIELDS,
        )
        late = [n.pk for n in claimed if past_deadline(n)]
        if late:
            expire(late, "expired before it could be sent: its deadline passed while it waited")
        notifications = {n.pk: n for n in claimed if n.pk not in late}
        for notification_id in set(sends) - {str(pk) for pk in notifications}:
            logger.info("push: notification %s is done already or unknown; skipped", notification_id)
        items = [
            {
                "id": str(pk),
                "client_id": str(notification.client_id),
                "user_id": notification.recipient,
                "payload": push_payload(notification),
                "device_ids": sends[str(pk)].event.get("device_ids"),
            }
            for pk, notification in notifications.items()
        ]
        # Sub-batches, each recorded as soon as the bouncer answers it: a worker killed mid-batch has
        # at most one sub-batch sent but not recorded, and only that is sent again on redelivery.
        size = settings.PUSH_SUB_BATCH_SIZE
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            self.deliver(chunk, {n: notifications[n] for n in (uuid.UUID(i["id"]) for i in chunk)}, sends)
        if removes:
            self.remove(removes)

    def deliver(
        self, items: list[dict[str, Any]], notifications: dict[Any, Notification], sends: dict[str, QueueMessage]
    ) -> None:
        """One bouncer call for a sub-batch, and its outcomes recorded."""
        try:
            with metrics.observe_provider("bouncer"):
                answer = send_to_push_bouncer("notify", {"notifications": items})
        except (RetryLater, PushNotificationBouncerError) as e:
            self.record_bouncer_failure(list(notifications.values()), e)
            for pk in notifications:
                sends[str(pk)].fail(e)
            return
        self.record(notifications, sends, {result["id"]: result["devices"] for result in answer["results"]})

    def remove(self, removes: list[QueueMessage]) -> None:
        """Withdraw shown notifications: one bouncer call; a device to retry retries its remove event."""
        items = [
            {
                "id": f"remove:{i}",
                "client_id": str(m.event["client_id"]),
                "user_id": m.event["user_id"],
                "payload": {"remove": m.event["message_ids"]},
            }
            for i, m in enumerate(removes)
        ]
        try:
            with metrics.observe_provider("bouncer"):
                answer = send_to_push_bouncer("notify", {"notifications": items})
        except (RetryLater, PushNotificationBouncerError) as e:
            for message in removes:
                message.fail(e)
            return
        results = {result["id"]: result["devices"] for result in answer["results"]}
        for i, message in enumerate(removes):
            retry = [d for d in results.get(f"remove:{i}", []) if d["outcome"] == RETRY]
            if retry:
                message.fail(RetryLater(retry[0]["error"], delay=max(d["retry_after"] for d in retry)))

    def record_bouncer_failure(self, notifications: list[Notification], error: Exception) -> None:
        transient = isinstance(error, RetryLater)
        reason = scrub(str(error))  # a remote bouncer's answer is text from elsewhere
        outcome = Attempt.Outcome.RETRY if transient else Attempt.Outcome.FAILED
        Attempt.objects.bulk_create(
            [Attempt(notification=n, provider="bouncer", outcome=outcome, error=reason) for n in notifications]
        )
        Notification.bulk_transition(
            [n.pk for n in notifications], Status.RETRYING if transient else Status.FAILED, error=reason
        )

    def record(
        self,
        notifications: dict[Any, Notification],
        sends: dict[str, QueueMessage],
        results: dict[str, list[dict[str, Any]]],
    ) -> None:
        """Save every device's attempt, expire dead tokens, and settle each notification."""
        attempts: list[Attempt] = []
        expired: dict[Any, list[str]] = defaultdict(list)  # client id -> its devices found dead
        moves: dict[str, list[Any]] = defaultdict(list)
        errors: dict[Any, str] = {}
        for pk, notification in notifications.items():
            devices = results.get(str(pk), [])
            message = sends[str(pk)]
            for device in devices:
                attempts.append(
                    Attempt(
                        notification=notification,
                        provider=device["platform"],
                        outcome=OUTCOME_TO_ATTEMPT[device["outcome"]],
                        error=device["error"],
                        provider_id=device.get("provider_id", ""),
                    )
                )
                if device["outcome"] == EXPIRED:
                    expired[notification.client_id].append(device["device_id"])
            by_outcome = defaultdict(list)
            for device in devices:
                by_outcome[device["outcome"]].append(device)
            if by_outcome[RETRY]:
                moves[Status.RETRYING].append(pk)
                reason = "; ".join(f"{d['platform']}: {d['error']}" for d in by_outcome[RETRY])
                retry_event = {**message.event, "device_ids": [d["device_id"] for d in by_outcome[RETRY]]}
                delay = max(d["retry_after"] for d in by_outcome[RETRY])
                message.fail(RetryLater(reason, delay=delay, event=retry_event))
                errors[pk] = reason
            elif by_outcome[DELIVERED]:
                moves[Status.SENT].append(pk)
            else:
                reason = "; ".join(f"{d['platform']}: {d['error']}" for d in devices) or NO_DEVICE
                moves[Status.FAILED].append(pk)
                errors[pk] = reason
                if not devices:
                    # Nothing was tried, but the outcome is recorded and counted like any other.
                    attempts.append(
                        Attempt(
                            notification=notification, provider="none", outcome=Attempt.Outcome.FAILED, error=reason
                        )
                    )
                if by_outcome[FAILED]:
                    message.fail(PushFailed(reason))
        now = timezone.now()
        with transaction.atomic():
            Attempt.objects.bulk_create(attempts)
            for client_id, device_ids in expired.items():
                PushDevice.objects.filter(client_id=client_id, pk__in=device_ids, expired_at__isnull=True).update(
                    expired_at=now
                )
            Notification.bulk_transition(moves[Status.SENT], Status.SENT, error="")
            for status in (Status.RETRYING, Status.FAILED):
                for pk in moves[status]:
                    Notification(pk=pk).transition(status, error=errors[pk][:2000])
        count_outcomes(attempts, now)

    def dead_lettered(self, message: QueueMessage, reason: str) -> None:
        give_up_on_event(message, reason, "push")


def count_outcomes(attempts: list[Attempt], now: Any) -> None:
    """The delivery metrics of a batch, per provider (never per user or token)."""
    counters = {
        Attempt.Outcome.SENT: metrics.notifications_delivered,
        Attempt.Outcome.RETRY: metrics.notifications_retried,
        Attempt.Outcome.FAILED: metrics.notifications_failed,
        Attempt.Outcome.TOKEN_EXPIRED: metrics.notifications_failed,
    }
    for attempt in attempts:
        labels = (MOBILE_NOTIFICATIONS_QUEUE, attempt.provider)
        counters[attempt.outcome].labels(*labels).inc()
        if attempt.outcome == Attempt.Outcome.SENT:
            age = (now - attempt.notification.created_at).total_seconds()
            metrics.delivery_seconds.labels(*labels).observe(max(0.0, age))
