"""Behaviour control shared by every fake: what it received, and how it should misbehave.

Each fake owns one :class:`Controller`. Tests and the development stack reach
it in-process (``fakes.expo.control.add_rule(...)``) or over HTTP under the
reserved prefix ``/_fake/`` (see :func:`add_control_routes`), so a test that
runs the service in another process can steer the fake just as well.

A :class:`Rule` says which requests it applies to (``match``: a token or
recipient, or ``None`` for all), how often (``rate``, deterministic: the n-th
matching request fails when ``floor(n * rate)`` steps up, or drawn from
``random.Random(seed)`` when a seed is given), for how long (``times``: the
next N applications, then the rule is spent) and what happens: an ``error``
named in the provider's own vocabulary (``"Unregistered"``, ``"UNREGISTERED"``,
``"DeviceNotRegistered"``...), or a bare HTTP/SMTP ``status`` that the fake
turns into its native error for that status, with an optional ``retry_after``,
and/or a ``delay`` in seconds before answering.

Records are bounded: counters are always kept (the benchmark sends hundreds of
thousands of messages), full records only for the last ``record_limit``.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

CONTROL_PREFIX = "/_fake"
DEFAULT_RECORD_LIMIT = 10_000


@dataclass
class Rule:
    """How to answer requests for ``match`` (a token, recipient or None for every request)."""

    match: str | None = None
    error: str | None = None
    status: int | None = None
    rate: float = 1.0
    times: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    seed: int | None = None
    id: str = ""
    # Bookkeeping: how many matching requests the rule saw, and how many it changed.
    seen: int = 0
    applied: int = 0
    _random: random.Random | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], not {self.rate}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must not be negative")
        if self.seed is not None:
            self._random = random.Random(self.seed)

    @property
    def spent(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def fires(self) -> bool:
        """Count one matching request; True when this one is to be changed."""
        self.seen += 1
        if self._random is not None:
            hit = self._random.random() < self.rate
        else:
            hit = math.floor(self.seen * self.rate) > math.floor((self.seen - 1) * self.rate)
        if hit:
            self.applied += 1
        return hit

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("_random")
        return out


@dataclass
class Decision:
    """What a fake does with one request: answer normally, or fail with ``error``/``status``."""

    error: str | None = None
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    rule_id: str | None = None

    @property
    def fails(self) -> bool:
        return self.error is not None or self.status is not None


RULE_FIELDS = {"match", "error", "status", "rate", "times", "retry_after", "delay", "seed"}


class Controller:
    """The rules and records of one fake. Thread-safe: fakes run in their own event loop thread."""

    def __init__(self, name: str, record_limit: int = DEFAULT_RECORD_LIMIT) -> None:
        self.name = name
        self.record_limit = record_limit
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self.rules: list[Rule] = []
        self._records: deque[dict[str, Any]] = deque(maxlen=record_limit or None)
        self.counts: Counter[str] = Counter()

    # Rules -----------------------------------------------------------------------

    def add_rule(self, rule: Rule | None = None, /, **fields: Any) -> Rule:
        """Add a rule (a :class:`Rule`, or its fields as keywords); rules added first are tried first."""
        if rule is None:
            unknown = set(fields) - RULE_FIELDS
            if unknown:
                raise ValueError(f"unknown rule fields: {sorted(unknown)}")
            rule = Rule(**fields)
        with self._lock:
            rule.id = rule.id or f"{self.name}-{next(self._ids)}"
            self.rules.append(rule)
        return rule

    def remove_rule(self, rule_id: str) -> bool:
        with self._lock:
            before = len(self.rules)
            self.rules = [r for r in self.rules if r.id != rule_id]
            return len(self.rules) < before

    def decide(self, key: str | None, *, specific_only: bool = False, only: str | None = None) -> Decision:
        """Apply the rules to one request for ``key`` (a token or recipient).

        Delays of every matching rule add up; the first rule that fires with
        an error or status decides the answer. ``specific_only`` considers only
        rules naming ``key`` (SMTP refuses recipients one by one). ``only="error"``
        or ``only="status"`` considers only rules naming an error, or the others
        (Expo answers a whole batch by HTTP status but each message by error).
        """
        decision = Decision()
        with self._lock:
            for rule in self.rules:
                if rule.spent:
                    continue
                if (only == "error" and rule.error is None) or (only == "status" and rule.error is not None):
                    continue
                if rule.match is None:
                    if specific_only:
                        continue
                elif rule.match != key:
                    continue
                if rule.error is None and rule.status is None:
                    if rule.fires():
                        decision.delay += rule.delay
                    continue
                if decision.fails or not rule.fires():
                    continue
                decision.error, decision.status = rule.error, rule.status
                decision.retry_after, decision.rule_id = rule.retry_after, rule.id
                decision.delay += rule.delay
        return decision

    # Records ---------------------------------------------------------------------

    def record(self, kind: str, key: str | None, outcome: str, **details: Any) -> None:
        """Note one message: ``outcome`` is ``"ok"`` or the error it was answered with."""
        entry = {"kind": kind, "key": key, "outcome": outcome, "at": time.time(), **details}
        with self._changed:
            self.counts[kind] += 1
            self.counts[f"{kind}:{outcome}"] += 1
            self.counts["total"] += 1
            if self.record_limit:
                self._records.append(entry)
            self._changed.notify_all()

    def received(self, kind: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        """The kept records, oldest first, optionally only of one kind or for one token/recipient."""
        with self._lock:
            records = list(self._records)
        return [r for r in records if (kind is None or r["kind"] == kind) and (key is None or r["key"] == key)]

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "name": self.name,
                "counts": dict(self.counts),
                "kept": len(self._records),
                "rules": [r.to_dict() for r in self.rules],
            }

    def wait_for(self, count: int, kind: str | None = None, timeout: float = 10.0) -> int:
        """Block until ``count`` messages (of ``kind``) were received; return the count reached."""
        counter = kind or "total"
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.counts[counter] < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: {self.counts[counter]} of {count} {counter} after {timeout}s")
                self._changed.wait(left)
            return self.counts[counter]

    def reset(self) -> None:
        """Forget rules, records and counters (between tests)."""
        with self._lock:
            self.rules.clear()
            self._records.clear()
            self.counts.clear()


# --- The HTTP control API ----------------------------------------------------------


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=str), status=status, content_type="application/json")


def add_control_routes(app: web.Application, control: Controller) -> None:
    """Serve ``control`` under ``/_fake/`` on an aiohttp app.

    * ``GET /_fake/received?kind=&key=&limit=``: the kept records (newest last).
    * ``GET /_fake/stats``: counters, kept records, rules.
    * ``GET /_fake/rules``; ``POST /_fake/rules`` with a rule object or a list of them
      (fields of :class:`Rule`), answering the created rules; ``DELETE /_fake/rules/<id>``.
    * ``POST /_fake/reset``: forget rules, records and counters.
    """

    async def received(request: web.Request) -> web.Response:
        records = control.received(request.query.get("kind"), request.query.get("key"))
        limit = int(request.query.get("limit", 0))
        return _json(records[-limit:] if limit else records)

    async def stats(request: web.Request) -> web.Response:
        return _json(control.stats())

    async def rules(request: web.Request) -> web.Response:
        return _json(control.stats()["rules"])

    async def add_rules(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            specs = body if isinstance(body, list) else [body]
            created = [control.add_rule(**spec) for spec in specs]
        except (ValueError, TypeError) as e:
            return _json({"error": str(e)}, status=400)
        return _json([r.to_dict() for r in created], status=201)

    async def delete_rule(request: web.Request) -> web.Response:
        found = control.remove_rule(request.match_info["rule_id"])
        return _json({"deleted": found}, status=200 if found else 404)

    async def reset(request: web.Request) -> web.Response:
        control.reset()
        return _json({"reset": True})

    app.router.add_get(f"{CONTROL_PREFIX}/received", received)
    app.router.add_get(f"{CONTROL_PREFIX}/stats", stats)
    app.router.add_get(f"{CONTROL_PREFIX}/rules", rules)
    app.router.add_post(f"{CONTROL_PREFIX}/rules", add_rules)
    app.router.add_delete(f"{CONTROL_PREFIX}/rules/{{rule_id}}", delete_rule)
    app.router.add_post(f"{CONTROL_PREFIX}/reset", reset)


def control_app(control: Controller) -> web.Application:
    """A stand-alone control app, for fakes whose own protocol is not HTTP/1.1 (APNs, SMTP)."""
    app = web.Application()
    add_control_routes(app, control)
    return app
