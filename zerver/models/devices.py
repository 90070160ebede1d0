"""The phones (and their apps) a client's users receive push notifications on."""

from __future__ import annotations

import re

from django.db import models
from django.utils import timezone

from zerver.lib.push import tokens
from zerver.models.clients import ApiClient


class Platform(models.TextChoices):
    APNS = "apns", "Apple (APNs)"
    FCM = "fcm", "Android (FCM)"
    EXPO = "expo", "Expo"


# Matched whole (fullmatch), so a trailing newline is not part of a valid token.
TOKEN_FORMATS = {
    Platform.APNS: (re.compile(r"(?:[0-9a-fA-F]{2}){32,100}"), "an APNs token is 64 or more hex digits"),
    Platform.FCM: (re.compile(r"[A-Za-z0-9_:\-]{32,4096}"), "an FCM registration token is 32+ of A-Z a-z 0-9 _ : -"),
    Platform.EXPO: (
        re.compile(r"Expo(?:nent)?PushToken\[[^\]\s]{1,200}\]"),
        "an Expo token is ExponentPushToken[...]",
    ),
}


def token_error(platform: str, token: str) -> str | None:
    pattern, rule = TOKEN_FORMATS[Platform(platform)]
    return None if pattern.fullmatch(token) else rule


class PushDevice(models.Model):
    """A device registered by a client for one of its users.

    ``token`` is a property: the column holds only ciphertext and a keyed
    hash (see zerver.lib.push.tokens); APNs tokens are kept lower-case hex.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="devices")
    user_id = models.CharField(max_length=64, db_index=True)
    platform = models.CharField(max_length=4, choices=Platform.choices)
    app_id = models.CharField(max_length=255, help_text="APNs topic (bundle id), FCM or Expo project")
    token_ciphertext = models.TextField(editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "platform", "token_hash"], name="unique_device_token_per_client")
        ]
        indexes = [models.Index(fields=["client", "user_id"])]

    def __str__(self) -> str:
        return f"{self.platform} device {self.pk} of user {self.user_id}"

    @staticmethod
    def normalize(platform: str, token: str) -> str:
        return token.lower() if platform == Platform.APNS else token

    @property
    def token(self) -> str:
        """The decrypted token: only for sending, never for a log or a response."""
        return tokens.decrypt(self.token_ciphertext)

    @token.setter
    def token(self, value: str) -> None:
        value = self.normalize(self.platform, value)
        self.token_ciphertext = tokens.encrypt(value)
        self.token_hash = tokens.token_hash(value)

    @property
    def masked_token(self) -> str:
        return tokens.mask(self.token)

    @property
    def is_active(self) -> bool:
        return self.expired_at is None
