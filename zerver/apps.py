from django.apps import AppConfig


class ZerverConfig(AppConfig):
    name = "zerver"
    default_auto_field = "django.db.models.BigAutoField"
