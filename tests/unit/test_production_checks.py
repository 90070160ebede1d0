"""Outside DEBUG the service refuses to start on development secrets, a wildcard host or half a provider."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from zerver.checks import production_errors
from zerver.lib.secrets import DEV_SECRET_KEY, dev_push_token_hash_key, dev_push_token_key

ROOT = Path(django_settings.BASE_DIR)
SECRET_NAMES = ("SECRET_KEY", "PUSH_TOKEN_KEYS", "PUSH_TOKEN_HASH_KEY")


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` on the production settings, with none of the test suite's secrets."""
    clean = {k: v for k, v in os.environ.items() if k not in SECRET_NAMES and not k.startswith(("APNS_", "FCM_"))}
    clean.update({"DJANGO_SETTINGS_MODULE": "settings.base", "DEBUG": "0", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def ids(settings) -> set[str]:
    return {m.id for m in production_errors()}


def test_check_deploy_fails_on_the_defaults_naming_each_setting_and_passes_with_generated_secrets(tmp_path):
    failed = manage("check", "--deploy")
    assert failed.returncode != 0
    for name in SECRET_NAMES:
        assert name in failed.stderr
    assert "generate_secrets" in failed.stderr

    env_file = tmp_path / "secrets.env"
    assert manage("generate_secrets", "--env-file", str(env_file)).returncode == 0
    assert env_file.stat().st_mode & 0o777 == 0o600
    generated = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert set(generated) == set(SECRET_NAMES)
    passed = manage("check", "--deploy", **generated)
    assert passed.returncode == 0, passed.stderr
    assert "zerver.E" not in passed.stderr


def test_the_workers_and_the_relay_refuse_to_start_on_the_defaults():
    for command in (["process_queue", "--list"], ["outbox_relay", "--once"], ["check_expo_receipts"]):
        result = manage(*command, "--skip-checks")
        assert result.returncode != 0 and "refusing to start" in result.stderr, command
        assert "SECRET_KEY" in result.stderr


def test_the_wsgi_app_refuses_to_start_on_the_defaults():
    result = manage("shell", "-c", "import zerver.wsgi")
    assert result.returncode != 0 and "PUSH_TOKEN_KEYS" in result.stderr


def test_generate_secrets_keeps_an_existing_file_unless_forced(tmp_path):
    env_file = tmp_path / "secrets.env"
    env_file.write_text("SECRET_KEY=keep-me\n")
    with pytest.raises(CommandError, match="exists"):
        call_command("generate_secrets", env_file=str(env_file))
    assert env_file.read_text() == "SECRET_KEY=keep-me\n"
    call_command("generate_secrets", env_file=str(env_file), force=True, stderr=StringIO())
    assert "keep-me" not in env_file.read_text()
    first, second = StringIO(), StringIO()
    call_command("generate_secrets", stdout=first)
    call_command("generate_secrets", stdout=second)
    assert first.getvalue() != second.getvalue()  # fresh each time


def test_the_test_settings_pass(settings):
    settings.DEBUG = False
    assert production_errors() == []


def test_keys_derived_from_the_secret_key_are_refused(settings):
    settings.DEBUG = False
    settings.PUSH_TOKEN_KEYS = [dev_push_token_key(settings.SECRET_KEY)]
    settings.PUSH_TOKEN_HASH_KEY = dev_push_token_hash_key(settings.SECRET_KEY)
    assert {"zerver.E003", "zerver.E006"} <= ids(settings)
    settings.PUSH_TOKEN_KEYS = ["not-a-fernet-key"]
    assert "zerver.E004" in ids(settings)
    settings.SECRET_KEY = DEV_SECRET_KEY
    assert "zerver.E001" in ids(settings)


def test_a_wildcard_host_is_refused(settings):
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["push.example.com", "*"]
    [error] = production_errors()
    assert "ALLOWED_HOSTS" in error.msg and "ALLOWED_HOSTS=" in error.hint


def test_an_enabled_provider_without_its_credentials_is_refused(settings, tmp_path):
    settings.DEBUG = False
    settings.SMS_BACKEND = "twilio"
    settings.SMS_ACCOUNT_SID = "AC123"
    settings.EMAIL_HOST, settings.EMAIL_HOST_USER = "smtp.example.com", "mailer"
    settings.APNS_KEY_ID, settings.APNS_TOPIC = "KEY123", "com.example.app"
    settings.FCM_SERVICE_ACCOUNT_FILE = str(tmp_path / "missing.json")
    settings.PUSH_BOUNCER_URL = "https://push.example.com"
    messages = {m.id: f"{m.msg} {m.hint}" for m in production_errors()}
    assert "SMS_AUTH_TOKEN" in messages["zerver.E011"] and "SMS_FROM_NUMBER" in messages["zerver.E011"]
    assert "EMAIL_HOST_PASSWORD" in messages["zerver.E010"]
    assert "APNS_AUTH_KEY_FILE" in messages["zerver.E012"] and "APNS_CLIENT_CERT" in messages["zerver.E012"]
    assert "FCM_SERVICE_ACCOUNT_FILE" in messages["zerver.E016"]
    assert "PUSH_BOUNCER_API_KEY" in messages["zerver.E017"]

    settings.SMS_AUTH_TOKEN, settings.SMS_FROM_NUMBER = "sms-secret", "+15005550006"
    settings.EMAIL_HOST_PASSWORD = "mail-secret"
    settings.APNS_KEY_ID = ""
    settings.APNS_CLIENT_CERT = str(tmp_path / "apns.pem")
    Path(settings.APNS_CLIENT_CERT).write_text("pem")
    Path(settings.FCM_SERVICE_ACCOUNT_FILE).write_text("{}")
    settings.PUSH_BOUNCER_SERVER_UUID, settings.PUSH_BOUNCER_API_KEY = "uuid", "bouncer-key"
    assert production_errors() == []


def test_debug_reports_nothing(settings):
    settings.DEBUG = True
    settings.SECRET_KEY = DEV_SECRET_KEY
    settings.ALLOWED_HOSTS = ["*"]
    settings.SMS_BACKEND = "twilio"
    assert production_errors() == []
