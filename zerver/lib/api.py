"""The plumbing every API view shares: bearer-key auth, JSON in and out, errors."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from ninja.parser import Parser
from ninja.security import HttpBearer

from zerver.lib import ratelimit
from zerver.models import ApiClient


class ApiError(Exception):
    """An error answer: ``fields`` maps each bad input field to what is wrong with it."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields or {}

    def response(self) -> JsonResponse:
        body: dict[str, Any] = {"error": self.message}
        if self.fields:
            body["fields"] = self.fields
        response = JsonResponse(body, status=self.status)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="notifications"'
        return response


def authenticate(request: HttpRequest) -> ApiClient:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'")
    client = ApiClient.authenticate(key.strip())
    if client is None:
        ratelimit.record_auth_failure(ratelimit.source_address(request))
        raise ApiError(401, "invalid or revoked API key")
    return client


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object, or ApiError(400).

    Nesting deeper than ``API_MAX_JSON_DEPTH``, lone surrogates and NUL
    characters (which the database cannot store) are refused, naming each field.
    """
    try:
        body = json.loads(request.body or b"null")
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4,300 digits
        raise ApiError(400, "the request body is not valid JSON", {"body": str(e)}) from None
    except RecursionError:
        raise ApiError(400, "invalid request", {"body": "is nested too deeply"}) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", {"body": f"got {type(body).__name__}"})
    if errors := text_errors(body):
        raise ApiError(400, "invalid request", errors)
    return body


def text_errors(value: Any, path: str = "", limit: int | None = None) -> dict[str, str]:
    """What is wrong with the strings and the depth of a parsed JSON ``value``, by field path."""
    limit = settings.API_MAX_JSON_DEPTH if limit is None else limit
    errors: dict[str, str] = {}
    stack: list[tuple[str, Any, int]] = [(path, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        name = where or "body"
        if isinstance(item, str):
            if error := string_error(item):
                errors[name] = error
        elif isinstance(item, (dict, list)):
            if depth >= limit:
                errors[name] = f"is nested too deeply (at most {limit} levels)"
                continue
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and (error := string_error(key)):
                    errors[child_path] = f"key {error}"
                stack.append((child_path, child, depth + 1))
    return errors


def string_error(text: str) -> str | None:
    """Why ``text`` cannot be stored: a NUL character or a lone surrogate; None if it can."""
    if "\x00" in text:
        return "must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain lone surrogates (invalid Unicode)"
    return None


class BearerKey(HttpBearer):
    """ninja's ``auth`` for every API operation: the client of an ``Authorization: Bearer <key>`` header.

    An address that has presented too many wrong keys lately is refused (429) before its key is looked at;
    a known client over its request rate is refused (429) too. It raises, never returns None: the
    exception handlers of :func:`zerver.views.api.build_api` answer.
    """

    def __call__(self, request: HttpRequest) -> ApiClient:
        ratelimit.check_auth_failure(ratelimit.source_address(request))
        client = authenticate(request)
        ratelimit.check_client_request(client)
        return client

    def authenticate(self, request: HttpRequest, token: str) -> ApiClient | None:
        """Unused: ``__call__`` reads the header itself (HttpBearer requires the method)."""
        return None


class JsonBodyParser(Parser):
    """ninja's body parser: :func:`json_body`, so depth, surrogates and NUL are refused naming each field.

    ninja wraps a parser's exception in an ``HttpError``; the ApiError stays its ``__cause__``.
    """

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return json_body(request)
