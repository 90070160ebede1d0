"""Expo push over HTTPS with a pooled ``requests`` session.

Up to 100 messages a request to ``/--/api/v2/push/send``; large bodies are
gzipped. Tickets are read as Expo documents them: ``ok`` is delivered (to
Expo: the receipt, checked later by :func:`check_receipts`, can still say
DeviceNotRegistered), ``DeviceNotRegistered`` expires the token, any other
error fails the message; a request that fails (network, 429, 5xx) retries.
"""

from __future__ import annotations

import gzip
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from django.conf import settings

from zerver.lib.http import make_session, retry_after_seconds
from zerver.lib.push.common import DELIVERED, EXPIRED, FAILED, RETRY, PushMessage, PushResult, is_remove

logger = logging.getLogger(__name__)

SEND_PATH = "/--/api/v2/push/send"
RECEIPTS_PATH = "/--/api/v2/push/getReceipts"
MAX_PER_REQUEST = 100
MAX_RECEIPTS_PER_REQUEST = 1000
GZIP_ABOVE_BYTES = 1024
PARALLEL_REQUESTS = 4


def expo_message(message: PushMessage) -> dict[str, Any]:
    payload = message.payload
    if is_remove(payload):
        return {
            "to": message.token,
            "data": {"event": "remove", "message_ids": payload["remove"]},
            "_contentAvailable": True,
            "priority": "normal",
        }
    out: dict[str, Any] = {"to": message.token, "priority": payload.get("priority", "high")}
    for ours, theirs in (
        ("title", "title"),
        ("body", "body"),
        ("data", "data"),
        ("badge", "badge"),
        ("sound", "sound"),
        ("category", "categoryId"),
        ("collapse_key", "collapseId"),
    ):
        if payload.get(ours) not in (None, ""):
            out[theirs] = payload[ours]
    return out


class ExpoBackend:
    platform = "expo"

    def __init__(self) -> None:
        self.base_url = settings.EXPO_URL.rstrip("/")
        self.session = make_session(PARALLEL_REQUESTS * 2)
        self.session.headers.update({"Accept": "application/json", "Accept-Encoding": "gzip, deflate"})
        if settings.EXPO_ACCESS_TOKEN:
            self.session.headers["Authorization"] = f"Bearer {settings.EXPO_ACCESS_TOKEN}"
        self.pool = ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix="expo")

    def post(self, path: str, body: Any) -> requests.Response:
        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if len(data) > GZIP_ABOVE_BYTES:
            data, headers["Content-Encoding"] = gzip.compress(data, compresslevel=5), "gzip"
        return self.session.post(
            self.base_url + path, data=data, headers=headers, timeout=settings.PUSH_PROVIDER_TIMEOUT
        )

    def send(self, messages: list[PushMessage]) -> list[PushResult]:
        chunks = [messages[i : i + MAX_PER_REQUEST] for i in range(0, len(messages), MAX_PER_REQUEST)]
        results: list[PushResult] = []
        for chunk_results in self.pool.map(self.send_chunk, chunks):
            results.extend(chunk_results)
        return results

    def send_chunk(self, chunk: list[PushMessage]) -> list[PushResult]:
        try:
            response = self.post(SEND_PATH, [expo_message(m) for m in chunk])
        except requests.RequestException as e:
            return [PushResult(RETRY, f"Expo unreachable: {type(e).__name__}")] * len(chunk)
        if response.status_code == 429 or response.status_code >= 500:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            return [PushResult(RETRY, f"Expo answered {response.status_code}", wait)] * len(chunk)
        try:
            body = response.json()
        except ValueError:
            return [PushResult(RETRY, f"Expo answered {response.status_code} without JSON")] * len(chunk)
        tickets = body.get("data")
        if response.status_code != 200 or not isinstance(tickets, list) or len(tickets) != len(chunk):
            errors = body.get("errors") or [{"code": "", "message": response.text[:200]}]
            reason = "; ".join(f"{e.get('code', '')} {e.get('message', '')}".strip() for e in errors)
            return [PushResult(FAILED, f"Expo refused the request: {reason}")] * len(chunk)
        return [ticket_result(ticket) for ticket in tickets]

    def get_receipts(self, ticket_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Receipts by ticket id (up to 1,000 per request); raises on a failed request."""
        receipts: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ticket_ids), MAX_RECEIPTS_PER_REQUEST):
            response = self.post(RECEIPTS_PATH, {"ids": ticket_ids[i : i + MAX_RECEIPTS_PER_REQUEST]})
            response.raise_for_status()
            receipts.update(response.json().get("data", {}))
        return receipts


def ticket_result(ticket: dict[str, Any]) -> PushResult:
    if ticket.get("status") == "ok":
        return PushResult(DELIVERED, extra={"ticket_id": ticket.get("id", ""), "provider_id": ticket.get("id", "")})
    error = (ticket.get("details") or {}).get("error", "")
    message = f"{error or 'error'}: {ticket.get('message', '')}".strip()
    return PushResult(EXPIRED if error == "DeviceNotRegistered" else FAILED, message)
