"""Templates belong to one API client: ``Template.client``, unique by (client, name).

Until now every client rendered every template in the database. The rule for
the templates already there:

* With exactly one API client, every template becomes that client's.
* Otherwise, a template becomes its users': the clients that have sent a
  notification with its name (``Notification.template``). The first of them
  (by id) takes the row, each other gets a copy, so none of them breaks and
  no client gains a template it never used.
* A template no client has used (or any template, with no client at all) is
  left without a client: it renders for no one until an operator gives it a
  client in the admin (filter "client: empty"). Nothing is deleted, nothing
  is shared.

The built-in templates on disk (``zerver/templates/notifications/``) are not
rows and stay every client's. Reversing keeps one row per name (the oldest)
and deletes the copies, so the name can be unique again.
"""

import django.db.models.deletion
from django.db import migrations, models


def assign_clients(apps, schema_editor):
    ApiClient = apps.get_model("zerver", "ApiClient")
    Notification = apps.get_model("zerver", "Notification")
    Template = apps.get_model("zerver", "Template")
    clients = list(ApiClient.objects.order_by("pk").values_list("pk", flat=True)[:2])
    if len(clients) == 1:
        Template.objects.filter(client__isnull=True).update(client_id=clients[0])
        return
    for template in Template.objects.filter(client__isnull=True).order_by("pk"):
        users = list(
            Notification.objects.filter(template=template.name)
            .order_by("client_id")
            .values_list("client_id", flat=True)
            .distinct()
        )
        if not users:
            continue
        template.client_id = users[0]
        template.save(update_fields=["client"])
        for client_id in users[1:]:
            Template.objects.create(
                client_id=client_id, name=template.name, subject=template.subject, text=template.text, html=template.html
            )


def keep_one_per_name(apps, schema_editor):
    Template = apps.get_model("zerver", "Template")
    seen = set()
    for template in Template.objects.order_by("pk"):
        if template.name in seen:
            template.delete()
        seen.add(template.name)


class Migration(migrations.Migration):
    dependencies = [
        ("zerver", "0006_apiclient_rate_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="template",
            name="client",
            field=models.ForeignKey(
                help_text="the API client whose template this is",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="templates",
                to="zerver.apiclient",
            ),
        ),
        migrations.AlterField(
            model_name="template",
            name="name",
            field=models.SlugField(max_length=100),
        ),
        migrations.RunPython(assign_clients, keep_one_per_name, elidable=False),
        migrations.AddConstraint(
            model_name="template",
            constraint=models.UniqueConstraint(fields=("client", "name"), name="unique_template_per_client"),
        ),
    ]
