"""The Django admin: staff look after clients, notifications, templates and the queues.

Secrets never appear in it: an API key is shown once, on the page that
creates it, and only its lookup part is kept; push tokens are shown masked, as ``token_masked`` in
``list_display`` and ``readonly_fields``, never as the field itself.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from workers.base import registered_queues
from zerver.actions import operations
from zerver.lib import dead_letters
from zerver.lib.queue import QueueClient, QueueUnavailable
from zerver.models import (
    ApiClient,
    Attempt,
    Notification,
    OutboxEvent,
    PushDevice,
    Status,
    Template,
    UserSettings,
    WorkerHeartbeat,
)


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "key_lookup",
        "created_at",
        "revoked_at",
        "active",
        "requests_per_minute",
        "notifications_per_minute",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "key_lookup"]
    readonly_fields = ["key_lookup", "created_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiClient | None = None) -> list[str]:
        limits = ["requests_per_minute", "notifications_per_minute"]
        return ["name", *limits] if obj is None else ["name", "key_lookup", "created_at", "revoked_at", *limits]

    @admin.display(boolean=True)
    def active(self, obj: ApiClient) -> bool:
        return obj.is_active

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        if not change:
            obj._new_key = obj.issue_key()  # type: ignore[attr-defined]  # for response_add, not stored
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiClient, post_url_continue: str | None = None) -> HttpResponse:
        """Show the new key on this one page (not in a message, which would sit in a cookie)."""
        key = getattr(obj, "_new_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        response = TemplateResponse(
            request,
            "admin/zerver/apiclient/key_created.html",
            {**self.admin_site.each_context(request), "opts": self.opts, "client": obj, "key": key, "title": "API key"},
        )
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke selected API clients", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} API client(s).")


def to_the_second(value: Any) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


class AttemptInline(admin.TabularInline):
    model = Attempt
    fields = ["time", "provider", "outcome", "error", "provider_id"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="at", ordering="at")
    def time(self, obj: Attempt) -> str:
        return to_the_second(obj.at)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Read-only: a notification's whole story, with its attempts. Only the actions change anything."""

    list_display = ["id", "type", "recipient", "status", "attempt_count", "short_error", "client", "created", "sent"]
    list_filter = ["status", "type", "client", "created_at"]  # by client: retry or cancel one tenant's only
    list_select_related = ["client"]
    search_fields = ["recipient"]
    search_help_text = "A recipient (or part of one), or a notification id."
    readonly_fields = [f.name for f in Notification._meta.fields]
    inlines = [AttemptInline]
    actions = ["retry_failed", "cancel_pending", "resend_sent"]
    change_list_template = "admin/zerver/notification/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # notifications come through the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list and its actions (obj None) may change notifications; no form ever edits one.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record of what was delivered is kept

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        return super().get_queryset(request).annotate(attempt_total=Count("attempts"))

    @admin.display(description="attempts", ordering="attempt_total")
    def attempt_count(self, obj: Notification) -> int:
        return obj.attempt_total  # type: ignore[attr-defined]  # annotated

    @admin.display(description="error")
    def short_error(self, obj: Notification) -> str:
        return obj.error if len(obj.error) <= 80 else obj.error[:79] + "…"

    @admin.display(description="created", ordering="created_at")
    def created(self, obj: Notification) -> str:
        return to_the_second(obj.created_at)

    @admin.display(description="sent", ordering="sent_at")
    def sent(self, obj: Notification) -> str:
        return to_the_second(obj.sent_at)

    @admin.action(description="Resend selected sent notifications (as new ones)", permissions=["change"])
    def resend_sent(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        copies = operations.resend(queryset.filter(status=Status.SENT))
        self.message_user(request, f"{len(copies)} notification(s) sent again as new ones, linked to the first.")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Notification], search_term: str
    ) -> tuple[QuerySet[Notification], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        try:
            by_id = queryset.filter(pk=uuid.UUID(search_term.strip()))
        except ValueError:
            return results, may_have_duplicates
        return results | by_id, may_have_duplicates

    @admin.action(description="Retry selected failed notifications", permissions=["change"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = operations.retry_failed(queryset.filter(status=Status.FAILED))
        self.message_user(request, f"{count} failed notification(s) queued for delivery again.")

    @admin.action(description="Cancel selected pending notifications", permissions=["change"])
    def cancel_pending(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = operations.cancel_pending(queryset.filter(status__in=[Status.PENDING, Status.RETRYING]))
        self.message_user(request, f"{count} notification(s) cancelled.")

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.dead_letters)
        return [path("dead-letters/", view, name="zerver_notification_dead_letters"), *super().get_urls()]

    def dead_letters(self, request: HttpRequest) -> TemplateResponse:
        """Read-only: ready, retrying and dead-lettered counts of every queue (``./manage.py dlq`` acts on them)."""
        client = QueueClient()
        try:
            rows = dead_letters.counts(client, registered_queues())
        except QueueUnavailable:
            rows = []
            messages.error(request, "RabbitMQ is unreachable: no counts.")
        finally:
            client.close()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "rows": rows,
            "title": "Queues",
            "delivery": delivery_summary(),
        }
        return TemplateResponse(request, "admin/zerver/dead_letters.html", context)


def delivery_summary() -> dict[str, Any]:
    """What an operator paged at night looks at first: expired and stranded notifications, open circuits."""
    from datetime import timedelta

    from django.conf import settings

    from zerver.lib.push import circuit
    from zerver.models.notifications import UNFINISHED_STATUSES

    stranded_before = timezone.now() - timedelta(seconds=settings.REAPER_STRANDED_SECONDS)
    return {
        "expired": Notification.objects.filter(status=Status.EXPIRED).count(),
        "stranded": Notification.objects.filter(
            status__in=UNFINISHED_STATUSES, updated_at__lte=stranded_before
        ).count(),
        "stranded_after": int(settings.REAPER_STRANDED_SECONDS),
        "circuits": [c for c in circuit.states() if c.open],
    }


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    """Each template is one client's; one without a client (from before) renders for no one until given one."""

    list_display = ["name", "client", "subject"]
    list_filter = ["client"]  # its "Empty" choice lists the unassigned ones
    list_select_related = ["client"]
    search_fields = ["name", "subject"]


@admin.register(UserSettings)
class UserSettingsAdmin(admin.ModelAdmin):
    list_display = ["user_id", "client", "email", "phone", "push_enabled", "email_enabled", "sms_enabled"]
    list_filter = ["client", "push_enabled", "email_enabled", "sms_enabled"]
    list_select_related = ["client"]
    search_fields = ["user_id", "email", "phone"]


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    """Events waiting for the broker: a growing list here means RabbitMQ or the relay is down."""

    list_display = ["id", "queue_name", "created_at", "attempts", "last_error"]
    list_filter = ["queue_name"]
    readonly_fields = ["queue_name", "event", "created_at", "attempts", "last_error"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """Delete the row of a worker that is gone for good (e.g. a removed shard) so /health stops counting it."""

    list_display = ["queue_name", "hostname", "pid", "started_at", "last_seen"]
    list_filter = ["queue_name", "hostname"]
    readonly_fields = ["queue_name", "hostname", "pid", "started_at", "last_seen"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(PushDevice)
class PushDeviceAdmin(admin.ModelAdmin):
    """Devices by user and platform; the token only ever masked (it is decrypted just to mask it)."""

    list_display = ["id", "client", "user_id", "platform", "app_id", "token_masked", "created_at", "active"]
    list_filter = ["platform", ("expired_at", admin.EmptyFieldListFilter), "client"]
    search_fields = ["user_id", "app_id"]
    fields = ["client", "user_id", "platform", "app_id", "token_masked", "created_at", "last_used_at", "expired_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # devices come through the API, which validates and encrypts the token

    @admin.display(description="token")
    def token_masked(self, obj: PushDevice) -> str:
        return obj.masked_token

    @admin.display(boolean=True)
    def active(self, obj: PushDevice) -> bool:
        return obj.is_active
