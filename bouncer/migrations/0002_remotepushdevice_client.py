"""Devices on the bouncer belong to one API client of their server: ``RemotePushDevice.client_id``.

Until now the bouncer knew a device by (server, user id) only, so every
client's user "1" was one user to it. What happens to the rows already there:

* The local bouncer's devices (the ``RemoteServer`` with the fixed uuid the
  in-process bouncer uses, ``LOCAL_SERVER_UUID``) take the client of the
  server-side ``PushDevice`` they copy: ``device_id`` is that row's id, in the
  same database.
* Every other row is deleted: a remote server's clients are in the remote
  server's database, which the bouncer cannot read, and so are the local
  bouncer's rows whose ``PushDevice`` is gone (nothing would send to them).
  Those devices get no push until they are registered again, with their
  client: after upgrading, each remote server runs
  ``./manage.py register_push_devices``, which queues a registration of every
  active device it has (its push worker sends them, with the client id, to
  the bouncer). Upgrade the bouncer first, then the servers: a server that
  is not upgraded yet sends registrations and notifications without a client,
  which the upgraded bouncer refuses with a 400 naming ``client_id``.

Reversing drops the column; rows keep their devices (but not their clients).
"""

from django.db import migrations, models

# zerver.lib.push.bouncer_client.LOCAL_SERVER_UUID, spelled out: a migration must not change with the code.
LOCAL_SERVER_UUID = "00000000-0000-4000-8000-000000000001"
CHUNK = 2000


def assign_clients(apps, schema_editor):
    RemotePushDevice = apps.get_model("bouncer", "RemotePushDevice")
    PushDevice = apps.get_model("zerver", "PushDevice")
    local = RemotePushDevice.objects.filter(server__uuid=LOCAL_SERVER_UUID, client_id="")
    while True:
        rows = list(local.values_list("pk", "device_id")[:CHUNK])
        if not rows:
            break
        server_ids = [int(d) for _, d in rows if d.isdigit()]
        client_of = dict(PushDevice.objects.filter(pk__in=server_ids).values_list("pk", "client_id"))
        by_client: dict[str, list[int]] = {}
        orphans = []
        for pk, device_id in rows:
            client = client_of.get(int(device_id)) if device_id.isdigit() else None
            if client is None:
                orphans.append(pk)
            else:
                by_client.setdefault(str(client), []).append(pk)
        for client, pks in by_client.items():
            RemotePushDevice.objects.filter(pk__in=pks).update(client_id=client)
        RemotePushDevice.objects.filter(pk__in=orphans).delete()
    # What is left has no client that can be known here: see the docstring.
    RemotePushDevice.objects.filter(client_id="").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bouncer", "0001_initial"),
        ("zerver", "0002_push_devices"),
    ]

    operations = [
        migrations.AddField(
            model_name="remotepushdevice",
            name="client_id",
            field=models.CharField(
                default="", help_text="the remote server's id of the API client it belongs to", max_length=64
            ),
            preserve_default=False,
        ),
        migrations.RunPython(assign_clients, migrations.RunPython.noop, elidable=False),
        migrations.RemoveIndex(model_name="remotepushdevice", name="bouncer_rem_server__f7cb2b_idx"),
        migrations.AddIndex(
            model_name="remotepushdevice",
            index=models.Index(fields=["server", "client_id", "user_id"], name="bouncer_device_client_user"),
        ),
    ]
