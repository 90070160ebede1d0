from django.contrib import admin
from django.urls import include, path

from zerver.views import ops
from zerver.views.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", ops.health),
    path("health/ready", ops.ready),
    path("health/live", ops.live),
    path("metrics", ops.prometheus_metrics, name="prometheus-django-metrics"),
    path("", include("bouncer.urls")),
    path("api/v1/", api.urls),
]

handler400 = "zerver.middleware.bad_request"
handler403 = "zerver.middleware.permission_denied"
handler404 = "zerver.middleware.page_not_found"
handler500 = "zerver.middleware.server_error"
