from django.apps import AppConfig


class ZerverConfig(AppConfig):
    name = "zerver"
    verbose_name = "Notification service"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from zerver import checks  # noqa: F401 (registers the production checks)
