"""SMS: how a text is encoded and segmented, and the backends that send it."""

from __future__ import annotations

import logging
import uuid

import requests
from django.conf import settings

from zerver.lib.delivery import SendError
from zerver.lib.http import make_session, retry_after_seconds
from zerver.lib.masking import mask_phone

logger = logging.getLogger(__name__)

# GSM 03.38: the basic character set, and the extension table whose characters take two septets.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")


def segments(text: str) -> dict[str, int | str]:
    """Encoding, length in units, and segment count of an SMS body.

    GSM-7 fits 160 septets in one message and 153 per segment of a longer
    one; anything outside GSM-7 makes the whole message UCS-2: 70 UTF-16
    code units, 67 per segment.
    """
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text):
        encoding, units, single, multi = "GSM-7", sum(2 if c in GSM7_EXTENDED else 1 for c in text), 160, 153
    else:
        encoding, units, single, multi = "UCS-2", len(text.encode("utf-16-le")) // 2, 70, 67
    count = 1 if units <= single else -(-units // multi)
    return {"encoding": encoding, "length": units, "segments": count}


# --- Backends ------------------------------------------------------------------


class ConsoleBackend:
    """Development: logs the message instead of sending it."""

    name = "console"

    def send(self, to: str, body: str) -> str:
        logger.info("SMS to %s (%d characters): %s", mask_phone(to), len(body), body)
        return f"console-{uuid.uuid4().hex}"


class TwilioBackend:
    """A Twilio-compatible REST API: a form POST per message, HTTP basic auth.

    429 and 5xx answers and network errors are transient (Retry-After is
    honoured); other 4xx answers are permanent.
    """

    name = "twilio"

    def __init__(self, base_url: str, account_sid: str, auth_token: str, from_number: str, timeout: float) -> None:
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self.from_number = from_number
        self.timeout = timeout
        self.session = make_session()
        self.session.auth = (account_sid, auth_token)

    def send(self, to: str, body: str) -> str:
        try:
            response = self.session.post(
                self.url, data={"To": to, "From": self.from_number, "Body": body}, timeout=self.timeout
            )
        except requests.RequestException as e:
            raise SendError(f"SMS API unreachable: {type(e).__name__}", transient=True) from e
        if response.status_code in (200, 201):
            return response.json().get("sid", "")
        try:
            detail = response.json()
            message = f"{detail.get('code', '')} {detail.get('message', '')}".strip()
        except ValueError:
            message = response.text[:200]
        transient = response.status_code == 429 or response.status_code >= 500
        raise SendError(
            f"SMS API {response.status_code}: {message}",
            transient=transient,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )


def get_backend() -> ConsoleBackend | TwilioBackend:
    if settings.SMS_BACKEND == "twilio":
        return TwilioBackend(
            settings.SMS_API_URL,
            settings.SMS_ACCOUNT_SID,
            settings.SMS_AUTH_TOKEN,
            settings.SMS_FROM_NUMBER,
            settings.SMS_TIMEOUT,
        )
    if settings.SMS_BACKEND == "console":
        return ConsoleBackend()
    raise ValueError(f"unknown SMS_BACKEND {settings.SMS_BACKEND!r}")
