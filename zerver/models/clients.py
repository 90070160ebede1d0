"""API clients: the applications allowed to call the service."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

KEY_PREFIX = "nk_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiClient(models.Model):
    """An application with an API key. Only a hash of the key is stored.

    Keys look like ``nk_<lookup>_<secret>``: the lookup part finds the row
    with an index, the hash of the whole key is compared in constant time.
    """

    name = models.CharField(max_length=100)
    key_lookup = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Rate limits of this client's own (zerver.lib.ratelimit); empty: the settings' defaults.
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="API requests a minute. Empty: the default (RATE_LIMIT_REQUESTS_PER_MINUTE).",
    )
    notifications_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Notifications a minute, each recipient of a chat message counted. "
        "Empty: the default (RATE_LIMIT_NOTIFICATIONS_PER_MINUTE).",
    )

    class Meta:
        verbose_name = "API client"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def create(cls, name: str) -> tuple[ApiClient, str]:
        """A new client and its key; the key is not stored and cannot be shown again."""
        client = cls(name=name)
        key = client.issue_key()
        client.save()
        return client, key

    def issue_key(self) -> str:
        """Give this (unsaved) client a new key and return it; only its lookup part and hash are kept."""
        lookup = secrets.token_hex(8)
        key = f"{KEY_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
        self.key_lookup, self.key_hash = lookup, hash_key(key)
        return key

    @classmethod
    def authenticate(cls, key: str) -> ApiClient | None:
        """The active client owning ``key``, or None."""
        if not key.startswith(KEY_PREFIX):
            return None
        lookup = key[len(KEY_PREFIX) :].split("_", 1)[0]
        client = cls.objects.filter(key_lookup=lookup, revoked_at__isnull=True).first()
        if client is None or not hmac.compare_digest(client.key_hash, hash_key(key)):
            return None
        return client

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
