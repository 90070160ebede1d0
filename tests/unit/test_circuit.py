"""The provider circuit breaker, over the real cache (Redis in the tests, as in production)."""

import pytest

from zerver.lib.push import circuit


@pytest.fixture
def clock(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(circuit.time, "time", lambda: now[0])
    return now


def test_opens_after_consecutive_failures_holds_then_lets_one_probe_through(settings, clock):
    settings.CIRCUIT_FAILURE_THRESHOLD = 3
    settings.CIRCUIT_COOLDOWN_SECONDS = 30
    name = "expo:test-open"
    for _ in range(2):
        circuit.record_failure(name)
    assert circuit.allow(name) == 0.0  # two failures: still closed
    circuit.record_failure(name)
    assert circuit.allow(name) == pytest.approx(30.0)
    [state] = [s for s in circuit.states() if s.name == name]
    assert state.open and state.failures == 3

    clock[0] += 31
    assert circuit.allow(name) == 0.0  # the probe
    assert circuit.allow(name) > 0  # everyone else waits for the probe's answer
    circuit.record_success(name)
    assert circuit.allow(name) == 0.0
    assert not next(s for s in circuit.states() if s.name == name).open


def test_a_failed_probe_opens_it_again(settings, clock):
    settings.CIRCUIT_FAILURE_THRESHOLD = 1
    settings.CIRCUIT_COOLDOWN_SECONDS = 10
    name = "apns:test-probe"
    circuit.record_failure(name)
    clock[0] += 11
    assert circuit.allow(name) == 0.0
    circuit.record_failure(name)
    assert circuit.allow(name) == pytest.approx(10.0)


def test_a_success_between_failures_resets_the_count(settings, clock):
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    name = "fcm:test-reset"
    circuit.record_failure(name)
    circuit.record_success(name)
    circuit.record_failure(name)
    assert circuit.allow(name) == 0.0
