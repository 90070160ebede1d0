"""A circuit breaker per provider and app credential: stop calling a provider that keeps failing.

After ``CIRCUIT_FAILURE_THRESHOLD`` consecutive transient failures (a whole
request answered 5xx/429, a timeout, no connection) the circuit opens for
``CIRCUIT_COOLDOWN_SECONDS``: its notifications are held (retried later,
never failed) without a call. Then one caller, in whichever process, probes:
success closes the circuit, failure opens it for another cool-down.

The state lives in Django's cache (Redis in production), so every worker
process, the web app's ``/health`` and the admin see the same circuits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from prometheus_client import Counter, Gauge

logger = logging.getLogger(__name__)

# Every circuit ever opened, so /health and the admin can list them without scanning the cache.
INDEX_KEY = "circuit:index"

opened_total = Counter("push_circuit_opened", "Times a provider circuit opened.", ["circuit"])
held_total = Counter("push_circuit_held", "Notifications held (not sent) while their circuit was open.", ["circuit"])
open_gauge = Gauge(
    "push_circuit_open", "1 while the provider circuit is open (as this process last saw it).", ["circuit"]
)


@dataclass(frozen=True)
class CircuitState:
    name: str
    open: bool
    failures: int
    retry_in: float


def _keys(name: str) -> tuple[str, str, str]:
    return f"circuit:{name}:failures", f"circuit:{name}:open_until", f"circuit:{name}:probe"


def allow(name: str) -> float:
    """0 when ``name`` may be called now; else the seconds until it may (the circuit is open)."""
    _, open_key, probe_key = _keys(name)
    open_until = cache.get(open_key)
    if open_until is None:
        return 0.0
    wait = float(open_until) - time.time()
    if wait > 0:
        return wait
    # Half-open: one caller probes; the others keep holding until it has answered.
    if cache.add(probe_key, 1, timeout=max(1, int(settings.CIRCUIT_COOLDOWN_SECONDS))):
        return 0.0
    return max(1.0, settings.CIRCUIT_COOLDOWN_SECONDS / 2)


def held(name: str, count: int) -> None:
    held_total.labels(name).inc(count)


def record_success(name: str) -> None:
    failures_key, open_key, probe_key = _keys(name)
    if cache.get(open_key) is not None:
        logger.info("circuit %s closed: the provider answers again", name)
    cache.delete_many([failures_key, open_key, probe_key])
    open_gauge.labels(name).set(0)


def record_failure(name: str) -> None:
    """One more consecutive transient failure; opens the circuit at the threshold (or when a probe fails)."""
    failures_key, open_key, probe_key = _keys(name)
    cache.add(failures_key, 0, timeout=None)
    failures = cache.incr(failures_key)
    probing = cache.get(probe_key) is not None
    if failures >= settings.CIRCUIT_FAILURE_THRESHOLD or probing:
        cooldown = settings.CIRCUIT_COOLDOWN_SECONDS
        cache.set(open_key, time.time() + cooldown, timeout=None)
        cache.delete(probe_key)
        index = set(cache.get(INDEX_KEY) or ())
        if name not in index:
            cache.set(INDEX_KEY, sorted(index | {name}), timeout=None)
        opened_total.labels(name).inc()
        open_gauge.labels(name).set(1)
        logger.warning("circuit %s open for %.0f s after %d consecutive transient failures", name, cooldown, failures)


def states() -> list[CircuitState]:
    """Every circuit that has opened, as it is now (closed ones included, with their failure count)."""
    out = []
    now = time.time()
    for name in cache.get(INDEX_KEY) or ():
        failures_key, open_key, _ = _keys(name)
        open_until = cache.get(open_key)
        retry_in = max(0.0, float(open_until) - now) if open_until is not None else 0.0
        out.append(CircuitState(name, open_until is not None, int(cache.get(failures_key) or 0), round(retry_in, 1)))
    return out
