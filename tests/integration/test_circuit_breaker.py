"""A provider that keeps failing: its circuit opens, pushes are held without calling it, then a probe resumes."""

import time

import pytest

from tests.helpers import running, wait_for
from tests.integration.test_push import expo_token, push, register, settled
from workers.base import get_worker
from zerver.lib.push import circuit
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE
from zerver.models import Notification

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_queues")]


def test_expo_failing_opens_its_circuit_holds_the_pushes_and_a_probe_resumes(api, providers, settings, client):
    settings.CIRCUIT_FAILURE_THRESHOLD = 2
    settings.CIRCUIT_COOLDOWN_SECONDS = 1.5
    settings.HEALTH_EXPECTED_WORKERS = []
    register(api, "7", "expo", expo_token(1))
    outage = providers.expo.control.add_rule(status=503)

    with running(get_worker(MOBILE_NOTIFICATIONS_QUEUE)):
        ids = [push(api, "7", body="n0")]
        wait_for(lambda: any(s.name == "expo" and s.open for s in circuit.states()), what="the circuit to open")
        calls = len(providers.expo.control.received("request"))
        ids += [push(api, "7", body=f"n{n}") for n in range(1, 4)]
        time.sleep(1.0)  # within the cool-down: these are held, Expo is not called
        assert len(providers.expo.control.received("request")) == calls
        health = client.get("/health").json()["checks"]["circuits"]
        assert health["ok"] is False and health["circuits"][0]["circuit"] == "expo"

        providers.expo.control.remove_rule(outage.id)
        results = [settled(api, i) for i in ids]

    assert [r["status"] for r in results] == ["sent"] * 4
    assert not next(s for s in circuit.states() if s.name == "expo").open
    held = [a for r in results for a in r["attempts"] if "circuit open" in (a["error"] or "")]
    assert held, "no push was held while the circuit was open"
    assert Notification.objects.filter(status="failed").count() == 0
