"""One home for keeping secrets out of text: the masker, the scrubber and the logging filter.

Push tokens, API keys, provider credentials and broker or database passwords
must never reach a database text column, an API answer, a log line, a metric
label or a page. Where a secret has to be told apart from another, it is shown
by :func:`mask`: a recognisable prefix and the length (``abcd…(64)``), never
enough to use it. Text that comes from elsewhere (a provider's error message,
an exception) goes through :func:`scrub` before it is stored or logged: it
masks every secret this deployment is configured with, anything shaped like a
push token (Expo ``ExponentPushToken[…]``, APNs hex, FCM registration tokens),
bearer credentials and the password of a URL (``amqp://user:***@host``).
:class:`ScrubFilter` does the same to every log record, as a safety net.

Phone numbers are personal data rather than secrets; :func:`mask_phone` keeps
their own shape, enough to tell two apart in a log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

ELLIPSIS = "…"
# Secrets shorter than this are not searched for in text (they would match ordinary words).
MIN_SCRUBBED_LENGTH = 6

EXPO_TOKEN = re.compile(r"(Expo(?:nent)?PushToken\[)([^\]\s]{1,200})(\])")
# APNs tokens are 64+ hex digits; FCM registration tokens long runs of A-Z a-z 0-9 _ : -. Anything that
# long without a space is a credential or a digest, never something a person needs to read whole.
LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9_:\-])[A-Za-z0-9_:\-]{64,}(?![A-Za-z0-9_:\-])")
URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/?#\s@]*:)([^@\s/]+)(@)")
BEARER = re.compile(r"(?i)\b(Bearer|Basic|Token)(\s+)([A-Za-z0-9._~+/=\-]{8,})")


def mask(secret: str | None, keep: int = 4) -> str:
    """``'abcdef…'`` (64 chars) -> ``'abcd…(64)'``: a recognisable prefix and the length, nothing more.

    A secret too short to spare a prefix shows only its length.
    """
    if not secret:
        return "-"
    shown = secret[:keep] if len(secret) >= 4 * keep else ""
    return f"{shown}{ELLIPSIS}({len(secret)})"


def mask_phone(number: str) -> str:
    """``+14155550100`` -> ``+1415*****00``: enough to tell numbers apart in a log."""
    return number[:5] + "*" * max(0, len(number) - 7) + number[-2:]


def configured_secrets() -> list[str]:
    """Every secret value in the settings: keys, provider credentials, the broker's and database's passwords."""
    from django.conf import settings

    if not settings.configured:
        return []
    values: list[str] = [settings.SECRET_KEY, *settings.PUSH_TOKEN_KEYS, settings.PUSH_TOKEN_HASH_KEY]
    for name in (
        "PUSH_BOUNCER_API_KEY",
        "EXPO_ACCESS_TOKEN",
        "EMAIL_HOST_PASSWORD",
        "SMS_AUTH_TOKEN",
        "SMS_ACCOUNT_SID",
    ):
        values.append(getattr(settings, name, ""))
    values.append(url_password(getattr(settings, "RABBITMQ_URL", "")))
    values.extend(str(db.get("PASSWORD") or "") for db in settings.DATABASES.values())
    return [v for v in values if v and len(v) >= MIN_SCRUBBED_LENGTH]


def url_password(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""
    return unquote(password) if password else ""


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every secret in it masked: those given, those configured, and anything token-shaped."""
    if not text:
        return text
    for secret in sorted({*secrets, *configured_secrets()}, key=len, reverse=True):
        if secret and len(secret) >= MIN_SCRUBBED_LENGTH and secret in text:
            text = text.replace(secret, mask(secret))
    text = EXPO_TOKEN.sub(lambda m: mask(m.group(0)), text)
    text = LONG_TOKEN.sub(lambda m: mask(m.group(0)), text)
    text = URL_PASSWORD.sub(r"\1***\3", text)
    return BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{mask(m.group(3))}", text)


class ScrubFilter(logging.Filter):
    """A logging filter (see ``LOGGING`` in the settings) that scrubs a record's message and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string is the logging module's to report
            return True
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        return True
