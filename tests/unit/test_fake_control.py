"""The rules and records shared by the provider fakes (fakes/control.py), without any server."""

import threading

import pytest

from fakes.control import Controller, Rule


def outcomes(control: Controller, key: str | None, n: int, **kwargs) -> list[str | None]:
    return [control.decide(key, **kwargs).error for _ in range(n)]


def test_rate_without_seed_fails_exactly_that_share_spread_evenly():
    control = Controller("t")
    control.add_rule(error="E", rate=0.3)

    decided = outcomes(control, "tok", 100)

    assert decided.count("E") == 30
    assert decided[:10].count("E") == 3  # spread out, not bunched at one end


def test_rate_with_seed_is_reproducible():
    def run() -> list[str | None]:
        control = Controller("t")
        control.add_rule(error="E", rate=0.5, seed=42)
        return outcomes(control, None, 50)

    first = run()
    assert first == run()
    assert 10 < first.count("E") < 40


def test_times_spends_the_rule_and_match_limits_it_to_one_key():
    control = Controller("t")
    control.add_rule(status=429, times=2, retry_after=1)
    control.add_rule(match="gone", error="Unregistered")

    first, second, third = (control.decide("other") for _ in range(3))
    assert (first.status, first.retry_after, second.status) == (429, 1, 429)
    assert not third.fails
    assert control.decide("gone").error == "Unregistered"
    assert not control.decide("other").fails


def test_first_failing_rule_wins_and_delays_add_up():
    control = Controller("t")
    control.add_rule(delay=0.2)
    control.add_rule(error="A", delay=0.1)
    control.add_rule(error="B")

    decision = control.decide("x")

    assert decision.error == "A"
    assert decision.delay == pytest.approx(0.3)


def test_specific_only_and_only_filters():
    control = Controller("t")
    wildcard = control.add_rule(status=421)
    control.add_rule(match="bob", status=550)
    control.add_rule(error="DeviceNotRegistered", match="tok")

    assert control.decide("alice", specific_only=True).status is None
    assert control.decide("bob", specific_only=True).status == 550
    assert control.decide("tok", only="error").error == "DeviceNotRegistered"
    assert control.decide("tok", only="status").status == 421
    assert control.remove_rule(wildcard.id)
    assert not control.remove_rule(wildcard.id)
    assert not control.decide(None).fails


def test_bad_rules_are_refused():
    control = Controller("t")
    with pytest.raises(ValueError, match="unknown rule fields"):
        control.add_rule(code=500)
    with pytest.raises(ValueError, match="rate"):
        control.add_rule(Rule(error="E", rate=1.5))


def test_records_are_bounded_but_counters_are_not():
    control = Controller("t", record_limit=5)
    for i in range(12):
        control.record("message", f"k{i}", "ok" if i % 3 else "E")

    assert [r["key"] for r in control.received()] == [f"k{i}" for i in range(7, 12)]
    assert control.counts["message"] == 12
    assert control.counts["message:E"] == 4
    assert control.received(key="k11")[0]["outcome"] == "ok"
    control.reset()
    assert control.received() == [] and control.stats()["counts"] == {}


def test_wait_for_wakes_on_records_from_another_thread():
    control = Controller("t")
    timer = threading.Timer(0.05, lambda: [control.record("message", None, "ok") for _ in range(3)])
    timer.start()

    assert control.wait_for(3, "message", timeout=5) == 3
    with pytest.raises(TimeoutError):
        control.wait_for(4, "message", timeout=0.05)
