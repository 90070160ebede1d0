"""The bouncer's HTTP API for remote servers (HTTP basic auth: server uuid, API key).

Every call names the server's API client (``client_id``, the server's own id
for it): registrations, unregistrations and each notification or remove
item, so that one client's user never gets another's pushes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from bouncer import service
from bouncer.models import RemoteServer
from zerver.lib import ratelimit
from zerver.lib.api import ApiError, json_body
from zerver.models.devices import Platform, token_error

Handler = Callable[[RemoteServer, dict[str, Any]], dict[str, Any]]


def server_view(handler: Handler) -> Callable[[HttpRequest], HttpResponse]:
    """The HTTP face of a handler; the local bouncer calls the handler itself."""

    @csrf_exempt
    @wraps(handler)
    def view(request: HttpRequest) -> HttpResponse:
        try:
            if request.method != "POST":
                raise ApiError(405, "use POST")
            ratelimit.check_auth_failure(ratelimit.source_address(request))
            server = authenticate_server(request)
            ratelimit.check_server_request(server)
            return JsonResponse(handler(server, json_body(request)))
        except ApiError as e:
            return e.response()
        except ratelimit.RateLimited as e:
            return ratelimit.rate_limited_response(e)

    return view


def authenticate_server(request: HttpRequest) -> RemoteServer:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    try:
        server_uuid, _, api_key = base64.b64decode(credentials).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        server_uuid = api_key = ""
    server = RemoteServer.authenticate(server_uuid, api_key) if scheme.lower() == "basic" else None
    if server is None:
        ratelimit.record_auth_failure(ratelimit.source_address(request))
        raise ApiError(401, "unknown server or wrong API key")
    return server


def is_id(value: Any) -> bool:
    """A non-empty string or an integer: what a server's ids of clients, users and devices look like."""
    return isinstance(value, (str, int)) and not isinstance(value, bool) and value != ""


def require(body: dict[str, Any], *fields: str) -> None:
    errors = {f: "is required" for f in fields if not is_id(body.get(f))}
    if errors:
        raise ApiError(400, "invalid request", errors)


def register(server: RemoteServer, body: dict[str, Any]) -> dict[str, Any]:
    require(body, "client_id", "device_id", "user_id", "platform", "app_id", "token")
    if body["platform"] not in Platform.values:
        raise ApiError(400, "invalid request", {"platform": f"must be one of {', '.join(Platform.values)}"})
    if error := token_error(body["platform"], str(body["token"])):
        raise ApiError(400, "invalid request", {"token": error})
    try:
        service.register_device(
            server,
            client_id=str(body["client_id"]),
            device_id=str(body["device_id"]),
            user_id=str(body["user_id"]),
            platform=body["platform"],
            app_id=str(body["app_id"]),
            token=str(body["token"]),
        )
    except service.DeviceOfAnotherClient as e:
        raise ApiError(409, "device registered for another client", {"client_id": str(e)}) from None
    return {"result": "registered"}


def unregister(server: RemoteServer, body: dict[str, Any]) -> dict[str, Any]:
    require(body, "client_id", "device_id")
    known = service.unregister_device(server, str(body["client_id"]), str(body["device_id"]))
    return {"result": "unregistered" if known else "unknown"}


def notify(server: RemoteServer, body: dict[str, Any]) -> dict[str, Any]:
    items = body.get("notifications")
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and "id" in i and "user_id" in i and isinstance(i.get("payload"), dict) for i in items
    ):
        raise ApiError(
            400, "invalid request", {"notifications": "a list of {id, client_id, user_id, payload[, device_ids]}"}
        )
    if not all(is_id(i.get("client_id")) for i in items):
        raise ApiError(400, "invalid request", {"client_id": "is required in every notification"})
    return {"results": service.notify(server, items)}


HANDLERS: dict[str, Handler] = {"register": register, "unregister": unregister, "notify": notify}
