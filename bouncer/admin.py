"""The bouncer's servers and devices in the admin; tokens masked, API keys never shown."""

from django.contrib import admin
from django.http import HttpRequest

from bouncer.models import ExpoTicket, RemotePushDevice, RemoteServer
from zerver.lib.push.tokens import mask


@admin.register(RemoteServer)
class RemoteServerAdmin(admin.ModelAdmin):
    list_display = ["hostname", "uuid", "created_at", "deactivated_at"]
    search_fields = ["hostname", "uuid"]
    readonly_fields = ["uuid", "created_at"]
    fields = ["hostname", "uuid", "created_at", "deactivated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # ./manage.py create_remote_server prints the key once


@admin.register(RemotePushDevice)
class RemotePushDeviceAdmin(admin.ModelAdmin):
    list_display = [
        "device_id",
        "server",
        "client_id",
        "user_id",
        "platform",
        "token_masked",
        "last_used_at",
        "expired_at",
    ]
    list_filter = ["platform", ("expired_at", admin.EmptyFieldListFilter), "server"]
    search_fields = ["client_id", "user_id", "device_id"]
    fields = [
        "server",
        "client_id",
        "device_id",
        "user_id",
        "platform",
        "app_id",
        "token_masked",
        "created_at",
        "expired_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="token")
    def token_masked(self, obj: RemotePushDevice) -> str:
        return mask(obj.token)


admin.site.register(ExpoTicket)
