"""Rate limits: per API client, per remote server of the bouncer, and failed authentication per address.

What is limited, per minute (``settings.RATE_LIMIT_*``; an ApiClient's own figures, set in the admin,
win over the defaults):

======================  =====================================  ==================================
reason (metric label)   counted                                checked by
======================  =====================================  ==================================
``client_requests``     each authenticated API request         :func:`check_client_request`
``client_notifications`` each notification asked for; a chat   :func:`check_client_notifications`
                        message counts each of its recipients
``server_requests``     each authenticated bouncer request     :func:`check_server_request`
``auth_failures``       each failed authentication, per        :func:`record_auth_failure`,
                        source address (API and bouncer)       :func:`check_auth_failure`
======================  =====================================  ==================================

Over a limit a check raises :class:`RateLimited`, which :func:`rate_limited_response` turns into
``429 {"error": "rate limited", "reason": ..., "retry_after": N}`` with a ``Retry-After: N`` header, and
``rate_limit_rejections_total{reason}`` counts it. What was refused is not counted against the limit, so
a client that keeps retrying too early gets in as soon as its earlier traffic has aged out.

An address with too many failed authentications is refused before its key is even looked at, a correct
key included, until the failures age out: a flood costs one cache read a request, and a guessed key
cannot be confirmed while the address is blocked. (The key comparisons themselves stay constant-time, in
the models.) Behind a reverse proxy ``REMOTE_ADDR`` is the proxy's address, so all callers would share
one allowance: let the proxy pass the caller's address on as ``REMOTE_ADDR``.

How it counts: a sliding-window counter over Django's cache, two fixed one-minute windows weighted by
how far the current one has gone (``previous * (1 - elapsed) + current``), as Cloudflare describes it.
That needs only atomic ``incr``/``add``, which every cache backend has (Redis: INCRBY, SET NX EX), keeps
one integer per key and minute, and has no burst of twice the limit at a window's edge as a plain
fixed window does. The counters are shared by every process using the same cache: with ``REDIS_URL`` set
(production) that is Redis; without it (development) Django's per-process memory cache. If the cache
cannot be reached, requests are let through (with a warning in the log): a down Redis must not take the
API down with it.

django-ratelimit was considered and not used: its counters can only be incremented by one (a fan-out
counts N), it is tied to a request object (the bouncer and the notification action check without
one), and it exposes no time to wait for ``Retry-After``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from prometheus_client import Counter
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

PERIOD_SECONDS = 60  # every limit is per minute
CLIENT_REQUESTS = "client_requests"
CLIENT_NOTIFICATIONS = "client_notifications"
SERVER_REQUESTS = "server_requests"
AUTH_FAILURES = "auth_failures"
REASONS = (CLIENT_REQUESTS, CLIENT_NOTIFICATIONS, SERVER_REQUESTS, AUTH_FAILURES)

rejections = Counter("rate_limit_rejections", "Requests refused by a rate limit, by the limit's reason.", ["reason"])
for _reason in REASONS:
    rejections.labels(_reason)  # exported as 0 from the start, so a rate() over it is defined


class RateLimited(Exception):
    """Over a limit: ``retry_after`` whole seconds (at least 1) until the same request would fit.

    That can be more than a minute (at most ``60 * (1 + count / limit)`` s): this minute's count still
    weighs on the next one, fading as it goes.

    ``reason`` is one of :data:`REASONS`; ``fields`` names an input that can never fit (a fan-out
    with more recipients than the limit allows in a minute).
    """

    def __init__(self, reason: str, retry_after: int, limit: int, fields: dict[str, str] | None = None) -> None:
        super().__init__(f"rate limited ({reason}): retry after {retry_after}s")
        self.reason = reason
        self.retry_after = retry_after
        self.limit = limit
        self.fields = fields or {}


def rate_limited_response(error: RateLimited) -> JsonResponse:
    """The 429 answer to ``error``: JSON with ``retry_after`` and the same in a ``Retry-After`` header."""
    body: dict[str, Any] = {"error": "rate limited", "reason": error.reason}
    if error.fields:
        body["fields"] = error.fields
    body["retry_after"] = error.retry_after
    response = JsonResponse(body, status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


def source_address(request: HttpRequest) -> str:
    """The address failed authentications are counted by."""
    return request.META.get("REMOTE_ADDR") or "unknown"


# --- The checks ------------------------------------------------------------------------------------------


def check_client_request(client: Any) -> None:
    """Count one API request of ``client`` (an ApiClient); RateLimited if over its limit."""
    limit = _own_or_default(client, "requests_per_minute", settings.RATE_LIMIT_REQUESTS_PER_MINUTE)
    consume(CLIENT_REQUESTS, str(client.pk), limit)


def check_client_notifications(client: Any, count: int, field: str = "recipients") -> None:
    """Count ``count`` notifications ``client`` asks for at once; RateLimited (none counted) if over.

    ``field`` is named in the answer when ``count`` alone is more than the limit allows in a minute.
    """
    limit = _own_or_default(client, "notifications_per_minute", settings.RATE_LIMIT_NOTIFICATIONS_PER_MINUTE)
    consume(CLIENT_NOTIFICATIONS, str(client.pk), limit, count, field=field)


def check_server_request(server: Any) -> None:
    """Count one bouncer request of ``server`` (anything with a ``uuid`` or a ``pk``); RateLimited if over."""
    ident = getattr(server, "uuid", None) or server.pk
    consume(SERVER_REQUESTS, str(ident), settings.RATE_LIMIT_BOUNCER_REQUESTS_PER_MINUTE)


def check_auth_failure(address: str) -> None:
    """RateLimited if ``address`` has failed to authenticate too often lately; counts nothing.

    Call it before looking at the credentials, so a blocked address is refused cheaply.
    """
    _check_room(AUTH_FAILURES, address, settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE)


def record_auth_failure(address: str) -> None:
    """Count one failed authentication from ``address``."""
    if settings.RATE_LIMITS_ENABLED:
        _incr(_key(AUTH_FAILURES, address, _position()[0]), 1)


# --- The counter -----------------------------------------------------------------------------------------


def consume(reason: str, ident: str, limit: int, count: int = 1, field: str | None = None) -> None:
    """Count ``count`` events of ``ident`` against ``limit`` a minute; RateLimited, and nothing counted, if over.

    The increment is atomic, so processes racing for the last of the allowance never both get it.
    """
    if not settings.RATE_LIMITS_ENABLED or count <= 0:
        return
    window, elapsed = _position()
    if count > limit:
        fields = {field: f"{count} at once is more than the limit of {limit} a minute"} if field else None
        _reject(reason, PERIOD_SECONDS, limit, fields)
    current = _incr(_key(reason, ident, window), count)
    if current is None:
        return  # the cache is unreachable: let it through
    previous = _get(_key(reason, ident, window - 1))
    before = current - count
    if _over(previous, before, elapsed, limit, count):
        _incr(_key(reason, ident, window), -count)
        _reject(reason, _retry_after(previous, before, elapsed, limit, count), limit)


def _check_room(reason: str, ident: str, limit: int) -> None:
    """RateLimited if one more event of ``ident`` would not fit in ``limit``; counts nothing."""
    if not settings.RATE_LIMITS_ENABLED:
        return
    window, elapsed = _position()
    previous, current = _get(_key(reason, ident, window - 1)), _get(_key(reason, ident, window))
    if _over(previous, current, elapsed, limit, 1):
        _reject(reason, _retry_after(previous, current, elapsed, limit, 1), limit)


def _over(previous: int, current: int, elapsed: float, limit: int, count: int) -> bool:
    """Whether ``count`` more would go over ``limit``; ``elapsed`` is the fraction of the current window gone."""
    return previous * (1 - elapsed) + current + count > limit


def _retry_after(previous: int, current: int, elapsed: float, limit: int, count: int) -> int:
    """Whole seconds until ``count`` more would fit, if nothing else is counted meanwhile.

    Within this window the previous one's weight shrinks until ``previous * (1 - t) + current + count``
    fits; if ``current + count`` alone is too many, in the next window ``current`` becomes the previous
    one and shrinks the same way.
    """
    room = limit - current - count
    if room >= 0 and previous > 0:
        fits_at = 1 - room / previous
    else:
        fits_at = 1 + max(0.0, 1 - (limit - count) / current) if current > 0 else 1
    return max(1, math.ceil(round((fits_at - elapsed) * PERIOD_SECONDS, 6)))  # round: no 51 s for 50.000001


def _reject(reason: str, retry_after: int, limit: int, fields: dict[str, str] | None = None) -> None:
    rejections.labels(reason).inc()
    raise RateLimited(reason, retry_after, limit, fields)


def now() -> float:
    """The clock the windows follow (every web process reads the same wall clock)."""
    return time.time()


def _position() -> tuple[int, float]:
    """The current window's number and the fraction of it gone, from one reading of the clock."""
    window, seconds = divmod(now(), PERIOD_SECONDS)
    return int(window), seconds / PERIOD_SECONDS


def _key(reason: str, ident: str, window: int) -> str:
    return f"ratelimit:{reason}:{ident}:{window}"


def _own_or_default(obj: Any, field: str, default: int) -> int:
    own = getattr(obj, field, None)
    return default if own is None else own


def _incr(key: str, delta: int) -> int | None:
    """Add ``delta`` to the counter ``key`` (made, for two windows, if missing); its new value, None on failure."""
    try:
        try:
            return cache.incr(key, delta)
        except ValueError:  # no such key yet
            if cache.add(key, delta, timeout=2 * PERIOD_SECONDS + 5):
                return delta
            return cache.incr(key, delta)  # another process made it meanwhile
    except (RedisError, OSError) as e:
        logger.warning("rate limits not applied: the cache is unreachable (%s)", type(e).__name__)
        return None


def _get(key: str) -> int:
    try:
        return int(cache.get(key) or 0)
    except (RedisError, OSError) as e:
        logger.warning("rate limits not applied: the cache is unreachable (%s)", type(e).__name__)
        return 0
