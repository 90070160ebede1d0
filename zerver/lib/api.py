"""The plumbing every API view shares: bearer-key auth, JSON in and out, errors."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

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
    try:
        body = json.loads(request.body or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, "the request body is not valid JSON", {"body": str(e)}) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", {"body": f"got {type(body).__name__}"})
    return body


ApiView = Callable[..., HttpResponse]


def api_view(*methods: str) -> Callable[[ApiView], ApiView]:
    """An authenticated, rate-limited JSON endpoint: the view is called as ``view(request, client, **kwargs)``.

    An address that has presented too many wrong keys lately is refused (429) before its key is looked at.
    """

    def decorate(view: ApiView) -> ApiView:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            try:
                ratelimit.check_auth_failure(ratelimit.source_address(request))
                client = authenticate(request)
                ratelimit.check_client_request(client)
                if request.method not in methods:
                    raise ApiError(405, f"use {' or '.join(methods)}")
                return view(request, client, **kwargs)
            except ApiError as e:
                return e.response()
            except ratelimit.RateLimited as e:
                return ratelimit.rate_limited_response(e)

        return wrapper

    return decorate
