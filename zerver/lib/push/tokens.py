"""Push tokens at rest: encrypted, looked up by a keyed hash, never shown whole.

A push token lets anyone who holds it (and the app's credentials) reach a
phone, so the database keeps it encrypted with Fernet (AES-128-CBC + HMAC).
``PUSH_TOKEN_KEYS`` lists Fernet keys, newest first: new tokens are encrypted
with the first, any of them decrypts, and :func:`rotate` re-encrypts old rows
with the first, so a key can be retired (``./manage.py rotate_token_keys`` does it for every
stored token, with :func:`rotate_rows`). Uniqueness and lookups use an
HMAC of the token, which reveals nothing without ``PUSH_TOKEN_HASH_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

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


def is_current(ciphertext: str) -> bool:
    """Whether ``ciphertext`` is already under the newest of ``PUSH_TOKEN_KEYS``."""
    try:
        Fernet(settings.PUSH_TOKEN_KEYS[0]).decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def rotate_rows(queryset: QuerySet, batch_size: int = 500) -> tuple[int, int]:
    """Re-encrypt each row's ``token_ciphertext`` under the newest key, in batches by primary key.

    Rows already under it are left alone, so a second run (or one that was
    interrupted) changes nothing twice. Returns (re-encrypted, already current).
    """
    rotated = current = 0
    last_pk = None
    while True:
        page = queryset.order_by("pk")
        if last_pk is not None:
            page = page.filter(pk__gt=last_pk)
        rows = list(page.only("pk", "token_ciphertext")[:batch_size])
        if not rows:
            return rotated, current
        last_pk = rows[-1].pk
        stale = [row for row in rows if not is_current(row.token_ciphertext)]
        for row in stale:
            row.token_ciphertext = rotate(row.token_ciphertext)
        with transaction.atomic():
            type(rows[0]).objects.bulk_update(stale, ["token_ciphertext"])
        rotated += len(stale)
        current += len(rows) - len(stale)
