"""Outgoing HTTP: one way to make a pooled ``requests`` session for a provider or the bouncer."""

from __future__ import annotations

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
