"""Outgoing HTTP: pooled ``requests`` sessions for the providers and the bouncer, and reading their answers."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings


def make_session(pool_size: int = 10) -> requests.Session:
    """A session keeping up to ``pool_size`` connections alive per host.

    ``trust_env`` (proxies and credentials from the environment and ~/.netrc)
    follows ``HTTP_TRUST_ENV``: off by default, because requests would
    otherwise stat ~/.netrc on every request, a cost that shows at thousands
    of requests a second. Turn it on where the providers are reached through
    an HTTP(S)_PROXY.
    """
    session = requests.Session()
    session.trust_env = settings.HTTP_TRUST_ENV
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def retry_after_seconds(header: str | None) -> float:
    """An HTTP Retry-After header (seconds or an HTTP date) in seconds; 0 if absent or unreadable."""
    if not header:
        return 0.0
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(header) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return 0.0
