"""SMTP sink with aiosmtpd: records every message, refuses what the rules say.

Each accepted message is recorded with its envelope (``mail_from``,
``rcpt_tos``) and parsed headers and parts (``subject``, ``from``, ``to``,
``text``, ``html``). Rules use SMTP reply codes as ``status`` (and the reply
text as ``error``, optional):

* a rule naming a recipient refuses it at RCPT (e.g. 550), so smtplib raises
  ``SMTPRecipientsRefused`` (or reports it in ``sendmail``'s result);
* a rule for every recipient (``match=None``) refuses the message at the end
  of DATA: ``Rule(status=421, times=N)`` answers 421 to the next N messages
  (smtplib: ``SMTPDataError``, an ``SMTPResponseException``, code 421);
* ``delay`` holds the reply to RCPT (named recipient) or DATA (everyone).

No TLS and no AUTH (AUTH is refused without TLS): point Django at it with
``EMAIL_HOST``/``EMAIL_PORT`` and ``EMAIL_USE_TLS=False``. The control API is
on a separate HTTP port (``SMTP_CONTROL_URL``).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from fakes.base import Fake, serve_app
from fakes.control import DEFAULT_RECORD_LIMIT, Controller, Decision, control_app

DEFAULT_TEXT = {
    421: "4.3.0 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox busy",
    451: "4.3.0 Local error in processing",
    452: "4.5.3 Too many recipients",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message too big",
    554: "5.7.1 Message rejected",
}


def reply(decision: Decision, default_code: int) -> str:
    """The SMTP reply line for a failing decision: ``status`` is the code, ``error`` the text."""
    error = decision.error or ""
    code = decision.status
    if code is None and error[:3].isdigit():
        code, error = int(error[:3]), error[3:].strip()
    code = code or default_code
    return f"{code} {error or DEFAULT_TEXT.get(code, 'Refused by the fake')}"


def parse(content: bytes) -> dict[str, Any]:
    """The parts of a message worth asserting on: headers, subject, text and HTML bodies."""
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return {
        "subject": message.get("Subject"),
        "from": message.get("From"),
        "to": message.get("To"),
        "message_id": message.get("Message-ID"),
        "message_headers": {k: str(v) for k, v in message.items()},
        "text": text.get_content() if text is not None else None,
        "html": html.get_content() if html is not None else None,
    }


class _Handler:
    """aiosmtpd hooks: refuse by the rules, record what was taken."""

    def __init__(self, control: Controller) -> None:
        self.control = control

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        decision = self.control.decide(address, specific_only=True)
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        if decision.fails:
            answer = reply(decision, 550)
            self.control.record("recipient", address, answer[:3], mail_from=envelope.mail_from)
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        decision = self.control.decide(None)
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        content = envelope.original_content or b""
        details: dict[str, Any] = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos)}
        key = ",".join(envelope.rcpt_tos)
        if decision.fails:
            answer = reply(decision, 451)
            self.control.record("message", key, answer[:3], **details)
            return answer
        self.control.record("message", key, "ok", size=len(content), **details, **parse(content))
        return "250 2.0.0 OK: queued"


class SmtpFake(Fake):
    """The SMTP sink, with its control API on ``control_port``."""

    name = "smtp"

    def __init__(self, record_limit: int = DEFAULT_RECORD_LIMIT) -> None:
        super().__init__(record_limit)
        self.control_port = 0
        self._server: asyncio.Server | None = None
        self._control_runner: web.AppRunner | None = None

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0, control_port: int = 0) -> None:
        self.host = host
        loop = asyncio.get_running_loop()
        handler = _Handler(self.control)
        self._server = await loop.create_server(
            # A fixed hostname: the default (socket.getfqdn()) can take seconds to resolve.
            lambda: SMTP(handler, hostname="fake-smtp.localhost", loop=loop, ident="fake SMTP"),
            host,
            port,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._control_runner, self.control_port = await serve_app(control_app(self.control), host, control_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None

    def env(self) -> dict[str, str]:
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": self.host,
            "EMAIL_PORT": str(self.port),
            "SMTP_CONTROL_URL": self.control_url,
        }
