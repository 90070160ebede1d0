from django.contrib import admin
from django.urls import include, path

from zerver.views import devices, messages, notifications, ops

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", ops.health),
    path("health/ready", ops.ready),
    path("health/live", ops.live),
    path("metrics", ops.prometheus_metrics, name="prometheus-django-metrics"),
    path("", include("bouncer.urls")),
    path("api/v1/notifications/send", notifications.send),
    path("api/v1/notifications/<str:notification_id>/status", notifications.status),
    path("api/v1/messages", messages.new_message),
    path("api/v1/devices", devices.devices),
    path("api/v1/devices/<int:device_id>", devices.device),
    path("api/v1/users/<str:user_id>/settings", messages.user_settings),
]

handler400 = "zerver.middleware.bad_request"
handler403 = "zerver.middleware.permission_denied"
handler404 = "zerver.middleware.page_not_found"
handler500 = "zerver.middleware.server_error"
