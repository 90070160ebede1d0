from django.urls import path

from bouncer.views import HANDLERS, server_view

urlpatterns = [path(f"api/v1/remotes/push/{name}", server_view(handler)) for name, handler in HANDLERS.items()]
