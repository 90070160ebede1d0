import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("zerver", "0005_notification_expiry"),
    ]

    operations = [
        migrations.AddField(
            model_name="apiclient",
            name="requests_per_minute",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="API requests a minute. Empty: the default (RATE_LIMIT_REQUESTS_PER_MINUTE).",
                null=True,
                validators=[django.core.validators.MinValueValidator(1)],
            ),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="notifications_per_minute",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Notifications a minute, each recipient of a chat message counted. Empty: the default (RATE_LIMIT_NOTIFICATIONS_PER_MINUTE).",
                null=True,
                validators=[django.core.validators.MinValueValidator(1)],
            ),
        ),
    ]
