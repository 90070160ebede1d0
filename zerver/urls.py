from django.contrib import admin
from django.urls import path

from zerver.views import messages, notifications, ops

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", ops.health),
    path("metrics", ops.prometheus_metrics, name="prometheus-django-metrics"),
    path("api/v1/notifications/send", notifications.send),
    path("api/v1/notifications/<str:notification_id>/status", notifications.status),
    path("api/v1/messages", messages.new_message),
    path("api/v1/users/<str:user_id>/settings", messages.user_settings),
]
