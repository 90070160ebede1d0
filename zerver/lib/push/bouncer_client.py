"""Talking to the push bouncer: over HTTP when ``PUSH_BOUNCER_URL`` is set, in-process otherwise.

Errors follow Zulip's split: anything that may pass (no connection, a
timeout, 429, 5xx) raises :class:`PushNotificationBouncerRetryLaterError`, a
RetryLater, so the worker framework retries with backoff (at least the
bouncer's Retry-After); any other 4xx is :class:`PushNotificationBouncerError`
and will not get better by retrying.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

import requests
from django.conf import settings

from workers.base import RetryLater
from zerver.lib.api import ApiError
from zerver.lib.http import make_session, retry_after_seconds

# The RemoteServer row that stands for this deployment when the bouncer runs in-process.
LOCAL_SERVER_UUID = uuid.UUID("00000000-0000-4000-8000-000000000001")


class PushNotificationBouncerError(Exception):
    """The bouncer refused the request; retrying it as it is will not help."""


class PushNotificationBouncerRetryLaterError(RetryLater):
    """The bouncer could not be reached or is overloaded; try again later."""


@cache
def _session() -> requests.Session:
    return make_session(16)


def send_to_push_bouncer(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    """Call bouncer ``endpoint`` (register, unregister, notify) and return its JSON answer."""
    if not settings.PUSH_BOUNCER_URL:
        return _local(endpoint, body)
    url = f"{settings.PUSH_BOUNCER_URL.rstrip('/')}/api/v1/remotes/push/{endpoint}"
    try:
        response = _session().post(
            url,
            json=body,
            auth=(settings.PUSH_BOUNCER_SERVER_UUID, settings.PUSH_BOUNCER_API_KEY),
            timeout=settings.PUSH_BOUNCER_TIMEOUT,
        )
    except requests.RequestException as e:
        raise PushNotificationBouncerRetryLaterError(f"push bouncer unreachable: {type(e).__name__}") from e
    if response.status_code == 429 or response.status_code >= 500:
        raise PushNotificationBouncerRetryLaterError(
            f"push bouncer answered {response.status_code}",
            delay=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if response.status_code >= 400:
        try:
            detail = response.json()
        except ValueError:
            detail = response.text[:300]
        raise PushNotificationBouncerError(f"push bouncer answered {response.status_code}: {detail}")
    return response.json()


def _local(endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    from bouncer.models import RemoteServer
    from bouncer.views import HANDLERS

    server = RemoteServer.objects.filter(uuid=LOCAL_SERVER_UUID).first()
    if server is None:
        server, _ = RemoteServer.create("local", server_uuid=LOCAL_SERVER_UUID)
    try:
        return HANDLERS[endpoint](server, body)
    except ApiError as e:
        raise PushNotificationBouncerError(f"push bouncer refused: {e.message} {e.fields}") from e
