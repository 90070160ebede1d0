from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Importing a worker module registers its queues (@assign_queue).
        from workers import email, fan_out, push_notifications, sms, test_workers  # noqa: F401
