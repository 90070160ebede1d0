"""The push bouncer's own records: the servers it serves and their users' devices.

The bouncer holds the provider credentials, so servers that use it never
need them; it keeps each server's device tokens (encrypted, like the
server's own) and sends to them when the server asks.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from django.db import models
from django.utils import timezone

from zerver.lib.push import tokens
from zerver.models.devices import Platform


class RemoteServer(models.Model):
    """A deployment that sends pushes through this bouncer; authenticates with uuid + API key."""

    uuid = models.UUIDField(unique=True, default=uuid.uuid4)
    hostname = models.CharField(max_length=255)
    api_key_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.hostname} ({self.uuid})"

    @classmethod
    def create(cls, hostname: str, server_uuid: uuid.UUID | None = None) -> tuple[RemoteServer, str]:
        """A new server and its API key (shown once, stored hashed)."""
        key = secrets.token_urlsafe(32)
        server = cls.objects.create(uuid=server_uuid or uuid.uuid4(), hostname=hostname, api_key_hash=_hash(key))
        return server, key

    @classmethod
    def authenticate(cls, server_uuid: str, api_key: str) -> RemoteServer | None:
        try:
            server = cls.objects.filter(uuid=uuid.UUID(server_uuid), deactivated_at__isnull=True).first()
        except ValueError:
            return None
        if server is None or not hmac.compare_digest(server.api_key_hash, _hash(api_key)):
            return None
        return server


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class RemotePushDevice(models.Model):
    """A device as a remote server registered it; ``device_id`` is the server's own id for it.

    ``client_id`` is the server's own id of the API client (the tenant) whose
    user the device belongs to: the same ``user_id`` of two clients is two
    different people, so a device is found by (server, client, user), never by
    user alone. The bouncer has no table of the server's clients; it only
    keeps them apart.
    """

    server = models.ForeignKey(RemoteServer, on_delete=models.CASCADE, related_name="devices")
    client_id = models.CharField(max_length=64, help_text="the remote server's id of the API client it belongs to")
    device_id = models.CharField(max_length=64)
    user_id = models.CharField(max_length=64)
    platform = models.CharField(max_length=4, choices=Platform.choices)
    app_id = models.CharField(max_length=255)
    token_ciphertext = models.TextField(editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server", "device_id"], name="unique_remote_device")]
        indexes = [models.Index(fields=["server", "client_id", "user_id"], name="bouncer_device_client_user")]

    def __str__(self) -> str:
        return f"{self.platform} device {self.device_id} of {self.server.hostname}"

    @property
    def token(self) -> str:
        """Decrypted only at the moment of sending; never logged."""
        return tokens.decrypt(self.token_ciphertext)

    @token.setter
    def token(self, value: str) -> None:
        self.token_ciphertext = tokens.encrypt(value)
        self.token_hash = tokens.token_hash(value)


class ExpoTicket(models.Model):
    """An Expo push ticket whose receipt is still to be read (it may say DeviceNotRegistered)."""

    device = models.ForeignKey(RemotePushDevice, on_delete=models.CASCADE, related_name="expo_tickets")
    ticket_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return self.ticket_id
