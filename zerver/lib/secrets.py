"""The deployment's own secrets: fresh ones for production, derived ones for development.

Production sets ``SECRET_KEY``, ``PUSH_TOKEN_KEYS`` and ``PUSH_TOKEN_HASH_KEY``
from the host's secrets (``./manage.py generate_secrets`` makes a set); with
``DEBUG`` on and nothing set, the settings fall back to the development key and
to push token keys derived from it, which the system checks in
:mod:`zerver.checks` refuse outside ``DEBUG``. This module imports no Django
settings, so the settings themselves can use it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet

DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105 (refused outside DEBUG)

# The settings every deployment must have of its own, in the order an env file lists them.
GENERATED_SETTINGS = ("SECRET_KEY", "PUSH_TOKEN_KEYS", "PUSH_TOKEN_HASH_KEY")


def dev_push_token_key(secret_key: str) -> str:
    """The development Fernet key for push tokens, derived from ``SECRET_KEY`` (never for production)."""
    return base64.urlsafe_b64encode(hashlib.sha256(f"push-tokens:{secret_key}".encode()).digest()).decode()


def dev_push_token_hash_key(secret_key: str) -> str:
    """The development HMAC key for push token lookups, derived from ``SECRET_KEY`` (never for production)."""
    return f"push-token-hash:{secret_key}"


def new_secrets() -> dict[str, str]:
    """A fresh value for each of :data:`GENERATED_SETTINGS`, as the environment spells them."""
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PUSH_TOKEN_KEYS": Fernet.generate_key().decode(),
        "PUSH_TOKEN_HASH_KEY": secrets.token_urlsafe(32),
    }


def env_lines(values: dict[str, str]) -> str:
    """``NAME=value`` lines, as an EnvironmentFile, docker's env_file and a shell's ``set -a; .`` read them."""
    return "".join(f"{name}={value}\n" for name, value in values.items())
