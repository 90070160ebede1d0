"""Push tokens at rest: encrypted, looked up by a keyed hash, never shown whole.

A push token lets anyone who holds it (and the app's credentials) reach a
phone, so the database keeps it encrypted with Fernet (AES-128-CBC + HMAC).
``PUSH_TOKEN_KEYS`` lists Fernet keys, newest first: new tokens are encrypted
with the first, any of them decrypts, and :func:`rotate` re-encrypts old rows
with the first, so a key can be retired. Uniqueness and lookups use an
HMAC of the token, which reveals nothing without ``PUSH_TOKEN_HASH_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

from zerver.lib.masking import mask as mask  # tokens are shown only masked


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.PUSH_TOKEN_KEYS))


def encrypt(token: str) -> str:
    return fernet().encrypt(token.encode()).decode()


def decrypt(ciphertext: str) -> str:
    """Only at the moment of sending; the result must never be logged."""
    return fernet().decrypt(ciphertext.encode()).decode()


def rotate(ciphertext: str) -> str:
    """The same token encrypted under the newest key."""
    return fernet().rotate(ciphertext.encode()).decode()


def token_hash(token: str) -> str:
    return hmac.new(settings.PUSH_TOKEN_HASH_KEY.encode(), token.encode(), hashlib.sha256).hexdigest()
