"""System checks that keep a production process from starting on development secrets or half a provider.

Registered by :class:`zerver.apps.ZerverConfig`, so they run on ``./manage.py
check`` (and ``check --deploy``), ``runserver`` and ``migrate``; the long-running
processes (the WSGI app, ``process_queue``, ``outbox_relay``,
``check_expo_receipts``) also run them explicitly with
:func:`require_production_settings`, which no ``--skip-checks`` turns off.
With ``DEBUG`` on they report nothing.

A provider counts as enabled when any of its settings is given, and then
needs all of them:

- e-mail: ``EMAIL_HOST`` (SMTP); ``EMAIL_HOST_USER`` and ``EMAIL_HOST_PASSWORD``
  come together or not at all;
- SMS: ``SMS_BACKEND=twilio`` needs ``SMS_ACCOUNT_SID``, ``SMS_AUTH_TOKEN``, ``SMS_FROM_NUMBER``;
- APNs: any ``APNS_*`` credential or topic needs either token auth
  (``APNS_AUTH_KEY_FILE``, ``APNS_KEY_ID``, ``APNS_TEAM_ID``) or certificate
  auth (``APNS_CLIENT_CERT``), files that exist, and ``APNS_TOPIC``;
- FCM: ``FCM_SERVICE_ACCOUNT_FILE`` or ``FCM_URL`` needs the service account file, existing;
- Expo: ``EXPO_ACCESS_TOKEN`` is optional (Expo asks for one only when the project turns it on);
- the push bouncer: ``PUSH_BOUNCER_URL`` needs ``PUSH_BOUNCER_SERVER_UUID`` and ``PUSH_BOUNCER_API_KEY``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import CheckMessage, Error, register, run_checks
from django.core.management.base import CommandError

from zerver.lib.secrets import DEV_SECRET_KEY, dev_push_token_hash_key, dev_push_token_key

# The tag of these checks: `./manage.py check --tag production`.
PRODUCTION = "production"

MAKE_SECRETS = "Run `./manage.py generate_secrets --env-file PATH` and load that file from the host's secrets."


@register(PRODUCTION)
def check_secrets(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """``SECRET_KEY`` and the push token keys: set, and not the development ones."""
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    secret_key = settings.SECRET_KEY
    if not secret_key or secret_key == DEV_SECRET_KEY:
        errors.append(Error("SECRET_KEY is unset or the development default.", hint=MAKE_SECRETS, id="zerver.E001"))
    keys = list(settings.PUSH_TOKEN_KEYS)
    if not keys:
        errors.append(Error("PUSH_TOKEN_KEYS is unset.", hint=MAKE_SECRETS, id="zerver.E002"))
    elif dev_push_token_key(secret_key) in keys or secret_key in keys:
        errors.append(
            Error("PUSH_TOKEN_KEYS holds a key derived from SECRET_KEY.", hint=MAKE_SECRETS, id="zerver.E003")
        )
    for position, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            errors.append(
                Error(
                    f"PUSH_TOKEN_KEYS: key {position} is not a Fernet key (32 url-safe base64-encoded bytes).",
                    hint=MAKE_SECRETS,
                    id="zerver.E004",
                )
            )
    hash_key = settings.PUSH_TOKEN_HASH_KEY
    if not hash_key:
        errors.append(Error("PUSH_TOKEN_HASH_KEY is unset.", hint=MAKE_SECRETS, id="zerver.E005"))
    elif hash_key in (secret_key, dev_push_token_hash_key(secret_key)) or hash_key in keys:
        errors.append(
            Error(
                "PUSH_TOKEN_HASH_KEY is derived from SECRET_KEY or reuses a token key.",
                hint=MAKE_SECRETS + " (Changing it makes devices register again.)",
                id="zerver.E006",
            )
        )
    return errors


@register(PRODUCTION)
def check_hosts(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """No wildcard host: ``ALLOWED_HOSTS`` names the service's own names."""
    if settings.DEBUG or not any("*" in host for host in settings.ALLOWED_HOSTS):
        return []
    return [
        Error(
            "ALLOWED_HOSTS contains '*'.",
            hint="Set ALLOWED_HOSTS to the comma-separated host names the service answers to, "
            "e.g. ALLOWED_HOSTS=push.example.com.",
            id="zerver.E007",
        )
    ]


def _missing(*names: str) -> list[str]:
    return [name for name in names if not getattr(settings, name)]


def _absent_files(*names: str) -> list[str]:
    return [name for name in names if getattr(settings, name) and not os.path.isfile(getattr(settings, name))]


def _provider_error(provider: str, problem: str, hint: str, number: int) -> Error:
    return Error(f"{provider} is enabled but {problem}.", hint=hint, id=f"zerver.E{number:03d}")


@register(PRODUCTION)
def check_providers(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """Each enabled provider has all of its credentials (the rules are in the module docstring)."""
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    if settings.EMAIL_HOST and bool(settings.EMAIL_HOST_USER) != bool(settings.EMAIL_HOST_PASSWORD):
        missing = ", ".join(_missing("EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD"))
        hint = "Set both from the SMTP provider's credentials, or neither for a relay without login."
        errors.append(_provider_error("E-mail (EMAIL_HOST)", f"{missing} is unset", hint, 10))
    if settings.SMS_BACKEND == "twilio" and (
        missing := _missing("SMS_ACCOUNT_SID", "SMS_AUTH_TOKEN", "SMS_FROM_NUMBER")
    ):
        hint = "Set them from the Twilio console (account SID, auth token, a sending number in E.164)."
        errors.append(_provider_error("SMS (SMS_BACKEND=twilio)", f"{', '.join(missing)} is unset", hint, 11))
    apns = ("APNS_AUTH_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID", "APNS_CLIENT_CERT", "APNS_TOPIC")
    if any(getattr(settings, name) for name in apns):
        token_auth = not _missing("APNS_AUTH_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID")
        hint = (
            "Give token auth (APNS_AUTH_KEY_FILE: the .p8 key from Apple, APNS_KEY_ID, APNS_TEAM_ID) or "
            "certificate auth (APNS_CLIENT_CERT: a PEM with certificate and key), and APNS_TOPIC (the bundle id)."
        )
        if not token_auth and not settings.APNS_CLIENT_CERT:
            missing = ", ".join(_missing("APNS_AUTH_KEY_FILE", "APNS_KEY_ID", "APNS_TEAM_ID"))
            errors.append(_provider_error("APNs", f"{missing} is unset and so is APNS_CLIENT_CERT", hint, 12))
        if absent := _absent_files("APNS_AUTH_KEY_FILE", "APNS_CLIENT_CERT", "APNS_CA_FILE"):
            errors.append(_provider_error("APNs", f"the file in {', '.join(absent)} does not exist", hint, 13))
        if not settings.APNS_TOPIC:
            errors.append(_provider_error("APNs", "APNS_TOPIC is unset", hint, 14))
    if settings.FCM_SERVICE_ACCOUNT_FILE or settings.FCM_URL:
        hint = "Set FCM_SERVICE_ACCOUNT_FILE to the service account JSON key from the Firebase console."
        if not settings.FCM_SERVICE_ACCOUNT_FILE:
            errors.append(_provider_error("FCM (FCM_URL)", "FCM_SERVICE_ACCOUNT_FILE is unset", hint, 15))
        elif _absent_files("FCM_SERVICE_ACCOUNT_FILE"):
            errors.append(_provider_error("FCM", "the file in FCM_SERVICE_ACCOUNT_FILE does not exist", hint, 16))
    if settings.PUSH_BOUNCER_URL and (missing := _missing("PUSH_BOUNCER_SERVER_UUID", "PUSH_BOUNCER_API_KEY")):
        hint = "Register this server on the bouncer (`./manage.py create_remote_server NAME` there) and set both."
        errors.append(
            _provider_error("The push bouncer (PUSH_BOUNCER_URL)", f"{', '.join(missing)} is unset", hint, 17)
        )
    return errors


def production_errors() -> list[CheckMessage]:
    """What of :data:`PRODUCTION`'s checks fails, errors only."""
    return [m for m in run_checks(tags=[PRODUCTION], include_deployment_checks=True) if m.is_serious()]


def describe(messages: list[CheckMessage]) -> str:
    return "refusing to start:\n" + "\n".join(f"  {m}" for m in messages)


def require_production_settings() -> None:
    """Raise :class:`CommandError` naming every failed check: the first call of a long-running command."""
    if errors := production_errors():
        raise CommandError(describe(errors))
