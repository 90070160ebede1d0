"""The API under ``/api/v1/``: one NinjaAPI over the routers of the view modules, its OpenAPI and docs.

Every operation is authenticated by :class:`zerver.lib.api.BearerKey` and
reads its body with :class:`zerver.lib.api.JsonBodyParser`. The exception
handlers here are the only place errors become answers, all of the shape
``{"error": ..., "fields": {...}}``: an :class:`ApiError` as it says, a
pydantic validation error as 400 ``invalid request`` naming every bad field
(:func:`zerver.lib.schemas.field_errors`), a rate limit as 429.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from zerver.lib import ratelimit
from zerver.lib.api import ApiError, BearerKey, JsonBodyParser
from zerver.lib.schemas import field_errors
from zerver.views import devices, messages, notifications


def build_api() -> NinjaAPI:
    """The NinjaAPI mounted at ``/api/v1/``: OpenAPI at ``openapi.json``, docs at ``docs``."""
    api = NinjaAPI(
        title="Notification delivery service",
        version="1",
        description='Push, e-mail and SMS notifications. Errors: `{"error": ..., "fields": {field: why}}`.',
        auth=BearerKey(),
        parser=JsonBodyParser(),
        urls_namespace="api-v1",
        openapi_url="/openapi.json",
        docs_url="/docs",
    )
    for module in (notifications, devices, messages):
        api.add_router("", module.router)

    @api.exception_handler(ApiError)
    def api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
        return exc.response()

    @api.exception_handler(ValidationError)
    def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        return ApiError(400, "invalid request", field_errors(exc.errors) or {"body": "is not valid"}).response()

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        if isinstance(exc.__cause__, ApiError):  # raised by the body parser
            return exc.__cause__.response()
        return ApiError(exc.status_code, str(exc)).response()

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return ApiError(401, "missing API key: send 'Authorization: Bearer <key>'").response()

    @api.exception_handler(ratelimit.RateLimited)
    def rate_limited(request: HttpRequest, exc: ratelimit.RateLimited) -> HttpResponse:
        return ratelimit.rate_limited_response(exc)

    return api


api = build_api()
