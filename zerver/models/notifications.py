"""Notifications, their delivery attempts, and the templates they are rendered from."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from zerver.models.clients import ApiClient


class NotificationType(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class Status(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    RETRYING = "retrying"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Its deadline (``expires_at``) passed before it could be delivered: too late to be worth sending.
    EXPIRED = "expired"


# The statuses a notification ends in; every accepted notification reaches one of them.
FINAL_STATUSES = frozenset({Status.SENT, Status.FAILED, Status.CANCELLED, Status.EXPIRED})
UNFINISHED_STATUSES = frozenset({Status.PENDING, Status.PROCESSING, Status.RETRYING})


# The one table of legal status changes: to-status -> the statuses it may come from.
# `processing` may follow itself: a worker that died mid-delivery leaves it so,
# and the redelivered event must be able to claim it again (only a redelivered
# one: see zerver.lib.delivery.claim).
TRANSITIONS: dict[str, set[str]] = {
    Status.PROCESSING: {Status.PENDING, Status.RETRYING, Status.PROCESSING},
    Status.RETRYING: {Status.PROCESSING},
    Status.SENT: {Status.PROCESSING},
    Status.FAILED: {Status.PENDING, Status.PROCESSING, Status.RETRYING},
    Status.CANCELLED: {Status.PENDING, Status.RETRYING},
    Status.EXPIRED: {Status.PENDING, Status.PROCESSING, Status.RETRYING},
    Status.PENDING: {Status.FAILED, Status.EXPIRED},  # an operator's "retry"
}


class IllegalTransition(Exception):
    pass


class Template(models.Model):
    """A named Django template for a notification's subject and bodies, of one API client.

    Each client has templates of its own: two clients may both have a
    "welcome", and neither renders the other's. Built-in templates live on
    disk under ``templates/notifications/<name>/`` (``subject.txt``,
    ``body.txt``, ``body.html``) and are every client's; a client's own
    template of the same name wins. A template without a client is one from
    before templates were per client that the migration could not assign
    (``zerver/migrations/0007_template_client.py``): it renders for no one
    until an operator gives it a client in the admin.
    """

    client = models.ForeignKey(
        ApiClient,
        on_delete=models.CASCADE,
        related_name="templates",
        null=True,  # only for unassigned rows from before; new ones need a client (blank=False)
        help_text="the API client whose template this is",
    )
    name = models.SlugField(max_length=100)
    subject = models.CharField(max_length=255, blank=True)
    text = models.TextField(help_text="Django template for the text body (e-mail, SMS, push)")
    html = models.TextField(blank=True, help_text="Optional Django template for an HTML e-mail body")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "name"], name="unique_template_per_client")]

    def __str__(self) -> str:
        return self.name


class Notification(models.Model):
    """One notification to one recipient over one channel."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="notifications")
    type = models.CharField(max_length=8, choices=NotificationType.choices)
    recipient = models.CharField(max_length=254, help_text="e-mail address, E.164 phone number or user id")
    subject = models.CharField(max_length=255, blank=True)
    content = models.JSONField(help_text="text, or for push an object with title, body, data, ...")
    html = models.TextField(blank=True)
    template = models.CharField(max_length=100, blank=True)
    variables = models.JSONField(default=dict, blank=True)
    # NULL, not "": many notifications without a key must pass the unique constraint.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    error = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="channel facts, e.g. SMS segments")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # The deadline: transient failures are retried until then, and it ends ``expired`` if not delivered
    # by then. Set at acceptance from the request's ``ttl`` or the channel's default (DELIVERY_TTL_SECONDS).
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "idempotency_key"], name="unique_idempotency_key_per_client")
        ]
        indexes = [models.Index(fields=["type", "status"]), models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"

    @staticmethod
    def deadline(type_: str, ttl_seconds: float | None = None, now: Any = None) -> Any:
        """When a notification of ``type_`` accepted ``now`` expires: ``ttl_seconds``, or the channel's default."""
        from django.conf import settings

        ttl = settings.DELIVERY_TTL_SECONDS[type_] if ttl_seconds is None else ttl_seconds
        return (now or timezone.now()) + timezone.timedelta(seconds=ttl)

    def transition(self, to: str, **fields: Any) -> bool:
        """Move to status ``to`` if the current status allows it, atomically.

        The UPDATE is conditional on the status, so two workers racing over
        one notification cannot both win, and a delivered notification is
        never claimed again. Returns whether it moved; ``fields`` are saved
        with it. Refreshes this instance either way.
        """
        if to not in TRANSITIONS:
            raise IllegalTransition(f"no transition to {to!r}")
        fields = {"status": to, "updated_at": timezone.now(), **fields}
        if to == Status.SENT:
            fields.setdefault("sent_at", timezone.now())
        moved = Notification.objects.filter(pk=self.pk, status__in=TRANSITIONS[to]).update(**fields)
        self.refresh_from_db()
        return bool(moved)

    @staticmethod
    def bulk_transition(
        ids: list[Any], to: str, *, load: tuple[str, ...] = (), allowed: Collection[str] | None = None, **fields: Any
    ) -> list[Notification]:
        """:meth:`transition` for many at once; returns the notifications that moved, as they are now.

        The rows are locked (by primary key, in key order) while they are
        checked, so the answer is exact with other workers at the same
        notifications, and workers with different notifications never lock
        each other's rows: a condition on ``status`` in the locking query
        could make InnoDB scan, and lock, other workers' rows by that index.
        Only ``pk``, ``status`` and the fields named in ``load`` are read (a
        worker claiming notifications it is about to send wants their content).
        ``allowed`` narrows the statuses they may move from.
        """
        if to not in TRANSITIONS:
            raise IllegalTransition(f"no transition to {to!r}")
        sources = TRANSITIONS[to] if allowed is None else TRANSITIONS[to] & set(allowed)
        fields = {"status": to, "updated_at": timezone.now(), **fields}
        if to == Status.SENT:
            fields.setdefault("sent_at", timezone.now())
        if not ids:
            return []
        with transaction.atomic():
            current = Notification.objects.select_for_update().filter(pk__in=ids).order_by("pk")
            current = current.only("pk", "status", *load)
            movable = [n for n in current if n.status in sources]
            if movable:
                Notification.objects.filter(pk__in=[n.pk for n in movable]).update(**fields)
        for notification in movable:
            for name, value in fields.items():
                setattr(notification, name, value)
        return movable


class Attempt(models.Model):
    """One try at delivering a notification, whatever came of it."""

    class Outcome(models.TextChoices):
        SENT = "sent"
        RETRY = "retry"
        FAILED = "failed"
        TOKEN_EXPIRED = "token_expired"  # noqa: S105 (not a secret)

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempts")
    at = models.DateTimeField(default=timezone.now)
    provider = models.CharField(max_length=32)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    provider_id = models.CharField(
        max_length=255, blank=True, help_text="the provider's id for what it accepted (SMS sid, APNs id, Expo ticket)"
    )

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.provider} {self.outcome} at {self.at:%Y-%m-%d %H:%M:%S}"
