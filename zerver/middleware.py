"""JSON errors at the edge: no HTML, no debug page and no traceback from the API or the bouncer.

:class:`JsonErrorMiddleware` is the first middleware. For every path, a
request whose ``Host`` is not allowed gets 400 JSON before anything else runs
(Django's debug page would list the settings, secrets among them). For API
paths (``/api/``, which holds the bouncer's ``/api/v1/remotes/``) it also
answers:

- 413 for a body over ``API_MAX_BODY_BYTES`` (by ``Content-Length``, or
  Django's ``RequestDataTooBig``), 414 for a URL over ``API_MAX_URL_LENGTH``;
- 503 with ``Retry-After`` when the database is unreachable;
- 500 ``{"error": "internal server error"}`` for any other unhandled
  exception (logged, never shown);
- and any other error answer that is not JSON (Django's 404, 405, 400, 403
  pages) as ``{"error": <reason>}`` with the same status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
DATABASE_RETRY_AFTER_SECONDS = 5


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIX)


def json_error(status: int, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def exception_response(exception: Exception) -> JsonResponse:
    """The JSON answer to an exception a view did not handle."""
    if isinstance(exception, RequestDataTooBig):
        return json_error(413, f"the request body is over {settings.API_MAX_BODY_BYTES} bytes")
    if isinstance(exception, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", type(exception).__name__)
        return json_error(
            503, "the database is unavailable; try again later", Retry_After=str(DATABASE_RETRY_AFTER_SECONDS)
        )
    logger.error("unhandled %s in an API view", type(exception).__name__, exc_info=exception)
    return json_error(500, "internal server error")


class JsonErrorMiddleware:
    """See the module docstring; must come first in ``MIDDLEWARE``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            request.get_host()
        except DisallowedHost:
            return json_error(400, "the Host header is not allowed")
        if not is_api_path(request.path_info):
            return self.get_response(request)
        if len(request.get_full_path()) > settings.API_MAX_URL_LENGTH:
            return json_error(414, f"the URL is over {settings.API_MAX_URL_LENGTH} characters")
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return json_error(400, "the Content-Length header is not a number")
        if length > settings.API_MAX_BODY_BYTES:
            return json_error(413, f"the request body is over {settings.API_MAX_BODY_BYTES} bytes")
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            # Django's own error pages (404, 405, 403, a SuspiciousOperation's 400, the debug 500).
            reason = response.reason_phrase.lower() if response.status_code != 500 else "internal server error"
            json_response = json_error(response.status_code, reason)
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    json_response[header] = response[header]
            return json_response
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_api_path(request.path_info):
            return None
        return exception_response(exception)


def _handler(status: int, message: str) -> Callable[..., HttpResponse]:
    from django.views import defaults

    default = {400: defaults.bad_request, 403: defaults.permission_denied, 404: defaults.page_not_found}.get(status)

    def handler(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if is_api_path(request.path_info) or default is None:
            return json_error(status, message)
        return default(request, exception)

    handler.__doc__ = f"Django's handler{status}: JSON under /api/, Django's page elsewhere."
    return handler


bad_request = _handler(400, "bad request")
permission_denied = _handler(403, "forbidden")
page_not_found = _handler(404, "not found")


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's handler500: JSON for every path (it takes no exception argument)."""
    if is_api_path(request.path_info):
        return json_error(500, "internal server error")
    from django.views import defaults

    return defaults.server_error(request)
