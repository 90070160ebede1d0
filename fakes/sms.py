"""SMS: a Twilio-compatible ``POST /2010-04-01/Accounts/<sid>/Messages.json``.

Form-encoded ``To``, ``From`` (or ``MessagingServiceSid``) and ``Body`` with
HTTP basic auth ``<sid>:<auth token>``; the fake answers 201 with a message
resource like Twilio's (``sid`` "SM...", ``status`` "queued", ``num_segments``
counted as GSM-7 or UCS-2 would be), or a Twilio error ``{"code", "message",
"more_info", "status"}``: 401/20003 without valid credentials, 400/21211 for
a ``To`` that is not E.164, 21602/21603/21604 for missing fields. Rules name an
error by its Twilio code (``error="21610"``: unsubscribed recipient) or by
status (429 answers 20429 with Retry-After, 500 answers 20500).

The client setting is a base URL (``SMS_API_URL``) plus ``SMS_ACCOUNT_SID`` and
``SMS_AUTH_TOKEN``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import secrets
from email.utils import formatdate
from typing import Any

from aiohttp import web

from fakes.base import HttpFake, json_response, retry_after_header
from fakes.control import DEFAULT_RECORD_LIMIT

API_VERSION = "2010-04-01"
E164_RE = re.compile(r"\+[1-9]\d{6,14}")
MAX_BODY = 1600
# The GSM 03.38 basic character set (its extension table counts as two characters).
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")

# Twilio error code: (HTTP status, message).
ERRORS = {
    20003: (401, "Authenticate"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit."),
}
ERROR_FOR_STATUS = {400: 21211, 401: 20003, 429: 20429, 500: 20500, 503: 20500}


def segments(body: str) -> int:
    """How many SMS segments Twilio bills ``body`` as: GSM-7 160/153, else UCS-2 70/67."""
    if all(c in GSM7 or c in GSM7_EXTENDED for c in body):
        length = sum(2 if c in GSM7_EXTENDED else 1 for c in body)
        single, multi = 160, 153
    else:
        length = sum(2 if ord(c) > 0xFFFF else 1 for c in body)
        single, multi = 70, 67
    return 1 if length <= single else math.ceil(length / multi)


def twilio_error(
    code: int, status: int | None = None, headers: dict[str, str] | None = None, **fmt: str
) -> web.Response:
    default_status, message = ERRORS.get(code, (400, "Error {code}"))
    status = status or default_status
    body = {
        "code": code,
        "message": message.format(code=code, **fmt),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_response(body, status, headers)


class SmsFake(HttpFake):
    """The SMS fake; ``account_sid``/``auth_token`` are the credentials it accepts."""

    name = "sms"

    def __init__(self, record_limit: int = DEFAULT_RECORD_LIMIT) -> None:
        super().__init__(record_limit)
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)

    def env(self) -> dict[str, str]:
        return {
            "SMS_BACKEND": "twilio",
            "SMS_API_URL": self.url,
            "SMS_ACCOUNT_SID": self.account_sid,
            "SMS_AUTH_TOKEN": self.auth_token,
        }

    @property
    def messages_url(self) -> str:
        return f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"/{API_VERSION}/Accounts/{{sid}}/Messages.json", self.create_message)

    def _authenticated(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        url_sid = request.match_info["sid"]
        return user == self.account_sid == url_sid and secrets.compare_digest(password, self.auth_token)

    async def create_message(self, request: web.Request) -> web.Response:
        headers = dict(request.headers)
        if not self._authenticated(request):
            self.control.record("message", None, "20003", status=401, headers=headers)
            return twilio_error(20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        form = {k: str(v) for k, v in (await request.post()).items()}
        to, sender, body = form.get("To", ""), form.get("From") or form.get("MessagingServiceSid", ""), form.get("Body")
        code = None
        if not to:
            code = 21604
        elif not E164_RE.fullmatch(to):
            code = 21211
        elif not sender:
            code = 21603
        elif not body:
            code = 21602
        elif len(body) > MAX_BODY:
            code = 21617
        if code is not None:
            self.control.record("message", to or None, str(code), status=400, headers=headers, form=form)
            return twilio_error(code, to=to)
        decision = self.control.decide(to)
        await self.pause(decision.delay)
        if decision.fails:
            code = int(decision.error) if decision.error else ERROR_FOR_STATUS.get(decision.status or 500, 20500)
            status = decision.status or ERRORS.get(code, (400, ""))[0]
            self.control.record("message", to, str(code), status=status, headers=headers, form=form)
            return twilio_error(code, status, retry_after_header(decision.retry_after), to=to)
        resource = self.resource(to, sender, body or "")
        self.control.record("message", to, "ok", status=201, headers=headers, form=form, sid=resource["sid"])
        return json_response(resource, 201)

    def resource(self, to: str, sender: str, body: str) -> dict[str, Any]:
        """A message resource as Twilio answers it on creation."""
        sid = "SM" + secrets.token_hex(16)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        now = formatdate(usegmt=True)
        from_service = sender.startswith("MG")
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": None if from_service else sender,
            "messaging_service_sid": sender if from_service else None,
            "num_media": "0",
            "num_segments": str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if from_service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
