"""Expo push: ``POST /--/api/v2/push/send`` and ``POST /--/api/v2/push/getReceipts`` on plain HTTP.

Like exp.host: a JSON list of up to 100 messages (or one message object; a
message's ``to`` may itself list tokens, each counting as one notification),
gzip request bodies accepted, an optional ``Authorization: Bearer`` access
token (required when the fake is given one). The answer is ``{"data": [ticket,
...]}`` in message order (``{"data": ticket}`` for a single object), each
ticket ``{"status": "ok", "id": ...}`` or ``{"status": "error", "message": ...,
"details": {"error": "DeviceNotRegistered"}}``. Whole-request failures are
``{"errors": [{"code": ..., "message": ...}]}`` with an HTTP status:
PUSH_TOO_MANY_NOTIFICATIONS (400), VALIDATION_ERROR (400), UNAUTHORIZED (401),
TOO_MANY_REQUESTS (429, Retry-After), INTERNAL_SERVER_ERROR (5xx).

Rules: an ``error`` rule fails one message's ticket (``"DeviceNotRegistered"``,
``"MessageTooBig"``, ``"MessageRateExceeded"``, ``"InvalidCredentials"``), or,
spelled ``"receipt:DeviceNotRegistered"``, gives an ok ticket whose receipt
later says so; a ``status``-only rule fails the whole request. A token that
does not look like ``ExponentPushToken[...]``/``ExpoPushToken[...]`` gets a
DeviceNotRegistered ticket.

The client setting is a base URL: ``EXPO_URL`` (the paths stay Expo's).
"""

from __future__ import annotations

import gzip
import json
import re
import uuid
import zlib
from collections import OrderedDict
from typing import Any

from aiohttp import web

from fakes.base import HttpFake, json_response, retry_after_header
from fakes.control import DEFAULT_RECORD_LIMIT

SEND_PATH = "/--/api/v2/push/send"
RECEIPTS_PATH = "/--/api/v2/push/getReceipts"
MAX_NOTIFICATIONS = 100
MAX_RECEIPT_IDS = 1000
MAX_RECEIPTS_KEPT = 500_000
TOKEN_RE = re.compile(r"(ExponentPushToken|ExpoPushToken)\[[^\[\]]+\]")
RECEIPT_PREFIX = "receipt:"
REQUEST_ERRORS = {400: "VALIDATION_ERROR", 401: "UNAUTHORIZED", 429: "TOO_MANY_REQUESTS"}

TICKET_MESSAGES = {
    "DeviceNotRegistered": "{token} is not a registered push notification recipient",
    "MessageTooBig": "Message too big",
    "MessageRateExceeded": "Message rate exceeded for {token}",
    "InvalidCredentials": "Could not find valid push credentials for {token}",
}


def request_error(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"errors": [{"code": code, "message": message}]}, status, headers)


def ticket_error(error: str, token: str) -> dict[str, Any]:
    message = TICKET_MESSAGES.get(error, "{token}: " + error).format(token=json.dumps(token))
    return {"status": "error", "message": message, "details": {"error": error}}


class ExpoFake(HttpFake):
    """The Expo fake; ``access_token``, when set, is required as a bearer token."""

    name = "expo"

    def __init__(self, record_limit: int = DEFAULT_RECORD_LIMIT, access_token: str | None = None) -> None:
        super().__init__(record_limit)
        self.access_token = access_token
        self.receipts: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def env(self) -> dict[str, str]:
        env = {"EXPO_URL": self.url}
        if self.access_token:
            env["EXPO_ACCESS_TOKEN"] = self.access_token
        return env

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(SEND_PATH, self.send)
        app.router.add_post(RECEIPTS_PATH, self.get_receipts)

    async def _body(self, request: web.Request) -> Any:
        """The decoded JSON body; gzip (or deflate) is undone here if the server has not done it."""
        raw = await request.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        elif request.headers.get("Content-Encoding", "").lower() == "deflate" and raw[:1] == b"\x78":
            raw = zlib.decompress(raw)
        return json.loads(raw)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if self.access_token is None:
            return None
        if request.headers.get("Authorization") == f"Bearer {self.access_token}":
            return None
        return request_error("UNAUTHORIZED", "The bearer token is invalid.", 401)

    async def send(self, request: web.Request) -> web.Response:
        headers = dict(request.headers)
        refused = self._unauthorized(request)
        if refused is not None:
            self.control.record("request", None, "UNAUTHORIZED", status=401, headers=headers)
            return refused
        try:
            body = await self._body(request)
        except (ValueError, OSError, EOFError) as e:
            return request_error("VALIDATION_ERROR", f"The request body is not valid JSON: {e}", 400)
        single = isinstance(body, dict)
        messages = [body] if single else body
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return request_error("VALIDATION_ERROR", '"value" must be an object or an array of objects', 400)
        # One notification per (message, token): "to" may be one token or a list of them.
        notifications = [
            (m, to) for m in messages for to in (m.get("to") if isinstance(m.get("to"), list) else [m.get("to")])
        ]
        if len(notifications) > MAX_NOTIFICATIONS:
            self.control.record("request", None, "PUSH_TOO_MANY_NOTIFICATIONS", status=400, count=len(notifications))
            return request_error(
                "PUSH_TOO_MANY_NOTIFICATIONS",
                f"You are trying to send more than {MAX_NOTIFICATIONS} push notifications in one request",
                400,
            )
        decision = self.control.decide(None, only="status")
        await self.pause(decision.delay)
        if decision.fails:
            status = decision.status or 500
            code = decision.error or REQUEST_ERRORS.get(status, "INTERNAL_SERVER_ERROR")
            self.control.record("request", None, code, status=status, count=len(notifications))
            message = "An unknown error occurred." if status >= 500 else f"{code} (fake rule)"
            return request_error(code, message, status, retry_after_header(decision.retry_after))
        tickets = [self._ticket(message, token, headers) for message, token in notifications]
        self.control.record("request", None, "ok", status=200, count=len(notifications))
        return json_response({"data": tickets[0] if single and len(tickets) == 1 else tickets})

    def _ticket(self, message: dict[str, Any], token: Any, headers: dict[str, str]) -> dict[str, Any]:
        token = token if isinstance(token, str) else json.dumps(token)
        if not TOKEN_RE.fullmatch(token):
            ticket = {
                "status": "error",
                "message": f"{json.dumps(token)} is not a valid Expo push token",
                "details": {"error": "DeviceNotRegistered"},
            }
            self.control.record("notification", token, "DeviceNotRegistered", message=message, headers=headers)
            return ticket
        decision = self.control.decide(token, only="error")
        error = decision.error
        if error and not error.startswith(RECEIPT_PREFIX):
            self.control.record("notification", token, error, message=message, headers=headers)
            return ticket_error(error, token)
        ticket_id = str(uuid.uuid4())
        receipt: dict[str, Any] = {"status": "ok"}
        if error:
            receipt_error = error.removeprefix(RECEIPT_PREFIX)
            receipt = ticket_error(receipt_error, token)
        self.receipts[ticket_id] = receipt
        if len(self.receipts) > MAX_RECEIPTS_KEPT:
            self.receipts.popitem(last=False)
        self.control.record("notification", token, error or "ok", message=message, headers=headers, id=ticket_id)
        return {"status": "ok", "id": ticket_id}

    async def get_receipts(self, request: web.Request) -> web.Response:
        refused = self._unauthorized(request)
        if refused is not None:
            return refused
        try:
            body = await self._body(request)
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise TypeError
        except (ValueError, OSError, EOFError, KeyError, TypeError):
            return request_error("VALIDATION_ERROR", '"ids" must be an array of strings', 400)
        if len(ids) > MAX_RECEIPT_IDS:
            message = f"You are trying to get more than {MAX_RECEIPT_IDS} push receipts in one request"
            return request_error("PUSH_TOO_MANY_RECEIPTS", message, 400)
        self.control.record("receipts", None, "ok", ids=len(ids))
        # Unknown ids (never issued, or expired) are left out, as Expo does.
        return json_response({"data": {i: self.receipts[i] for i in ids if i in self.receipts}})
