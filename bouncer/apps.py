from django.apps import AppConfig


class BouncerConfig(AppConfig):
    name = "bouncer"
    verbose_name = "Push bouncer"
    default_auto_field = "django.db.models.BigAutoField"
