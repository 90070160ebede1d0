"""Where and how each of a client's users wants to be notified."""

from django.db import models

from zerver.models.clients import ApiClient


class UserSettings(models.Model):
    """A client's user: contact addresses and which channels a new message reaches.

    ``user_id`` is the client's own id for the user (an integer or a UUID as
    text): the service keeps no user accounts of its own.
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE)
    user_id = models.CharField(max_length=64)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, e.g. +14155550100")
    push_enabled = models.BooleanField(default=True)
    email_enabled = models.BooleanField(default=True)
    sms_enabled = models.BooleanField(default=False)

    class Meta:
        verbose_name = "user settings"
        verbose_name_plural = "user settings"
        constraints = [models.UniqueConstraint(fields=["client", "user_id"], name="unique_user_per_client")]

    def __str__(self) -> str:
        return f"{self.client} / {self.user_id}"
