"""The outbox relay outlives a database outage: it waits and carries on, it never exits."""

import threading

from django.db import OperationalError

from zerver.lib import outbox


def test_the_relay_waits_out_a_database_outage_and_carries_on(monkeypatch, settings):
    settings.REAPER_INTERVAL_SECONDS = 0  # this test is about the relay alone
    stop = threading.Event()
    calls = []

    def relay_once(min_age_seconds: float) -> int:
        calls.append(min_age_seconds)
        if len(calls) <= 2:
            raise OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1' (111)")
        stop.set()
        return 3

    monkeypatch.setattr(outbox, "relay_once", relay_once)
    monkeypatch.setattr(stop, "wait", lambda seconds: None)  # no real sleeping in a unit test
    outbox.relay(stop, interval=0.01)

    assert len(calls) == 3  # two failed rounds, then the one that published
