"""Push token keys rotate: a new key first, `rotate_token_keys`, and the old key can go."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from model_bakery import baker

from bouncer.models import RemotePushDevice, RemoteServer
from zerver.models import ApiClient, PushDevice

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
APNS = "ab" * 32
EXPO = "ExponentPushToken[rotation-test-token]"


def rotate(batch_size: int = 500) -> str:
    out = StringIO()
    call_command("rotate_token_keys", batch_size=batch_size, stdout=out)
    return out.getvalue()


def test_a_token_written_under_the_old_key_reads_under_the_new_one_alone_after_rotation(settings):
    settings.PUSH_TOKEN_KEYS = [OLD]
    device = PushDevice(client=baker.make(ApiClient), user_id="1", platform="apns", app_id="a")
    device.token = APNS
    device.save()
    server, _ = RemoteServer.create("rotation.example.com")
    remote = RemotePushDevice(server=server, device_id="1", user_id="1", platform="expo", app_id="p")
    remote.token = EXPO
    remote.save()
    token_hash = device.token_hash

    settings.PUSH_TOKEN_KEYS = [NEW, OLD]  # the new key first, the old one still there to read with
    assert PushDevice.objects.get().token == APNS
    output = rotate(batch_size=1)
    assert "PushDevice: re-encrypted 1, already under the newest key 0" in output
    assert "RemotePushDevice: re-encrypted 1, already under the newest key 0" in output

    settings.PUSH_TOKEN_KEYS = [NEW]  # the old key dropped
    device = PushDevice.objects.get()
    assert (device.token, device.token_hash) == (APNS, token_hash)  # lookups by hash still find it
    assert RemotePushDevice.objects.get().token == EXPO


def test_rotating_twice_changes_nothing_the_second_time(settings):
    settings.PUSH_TOKEN_KEYS = [OLD]
    client = baker.make(ApiClient)
    for n in range(3):
        device = PushDevice(client=client, user_id=str(n), platform="apns", app_id="a")
        device.token = f"{n:02d}" * 32
        device.save()
    settings.PUSH_TOKEN_KEYS = [NEW, OLD]
    assert "PushDevice: re-encrypted 3, already under the newest key 0" in rotate(batch_size=2)
    ciphertexts = list(PushDevice.objects.order_by("pk").values_list("token_ciphertext", flat=True))

    assert "PushDevice: re-encrypted 0, already under the newest key 3" in rotate(batch_size=2)
    assert list(PushDevice.objects.order_by("pk").values_list("token_ciphertext", flat=True)) == ciphertexts


def test_without_rotation_dropping_the_old_key_loses_the_token(settings):
    """What the command is for: a row left under a dropped key cannot be read."""
    from cryptography.fernet import InvalidToken

    settings.PUSH_TOKEN_KEYS = [OLD]
    device = PushDevice(client=baker.make(ApiClient), user_id="1", platform="apns", app_id="a")
    device.token = APNS
    device.save()
    settings.PUSH_TOKEN_KEYS = [NEW]
    with pytest.raises(InvalidToken):
        PushDevice.objects.get().token  # noqa: B018
