"""Fixtures of the fault suite: the private servers, the provider fakes and the service's processes.

Run it with ``python -m tests.faults`` (``.ci/run`` does): it starts the
private RabbitMQ node and MariaDB these tests stop, kill and restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.servers import PrivateMariaDB, PrivateRabbitMQ
from tests.helpers import ROOT, child_env, wait_for
from tests.integration.conftest import api, providers, service_queues  # noqa: F401 (fixtures)
from zerver.models import Notification

pytestmark = pytest.mark.integration

FINAL = ("sent", "failed", "cancelled")


@pytest.fixture(scope="session")
def rabbitmq() -> PrivateRabbitMQ:
    return PrivateRabbitMQ.from_env()


@pytest.fixture(scope="session")
def mariadb() -> PrivateMariaDB:
    return PrivateMariaDB.from_env()


class Processes:
    """The service's long-running processes (workers, the relay) as supervisord would run them."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.running: dict[str, subprocess.Popen] = {}
        self.exits: list[tuple[str, int]] = []

    def start(self, name: str, *args: str, **env: str) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "a")
        process = subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=child_env(**{**self.env, **env}),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running[name] = process
        return process

    def worker(self, queue: str) -> subprocess.Popen:
        return self.start(queue, "process_queue", f"--queue_name={queue}")

    def relay(self) -> subprocess.Popen:
        return self.start("relay", "outbox_relay", "--interval", "0.2")

    def exited(self) -> list[str]:
        """The processes that exited by themselves (a crash a supervisor would have had to restart)."""
        return [name for name, p in self.running.items() if p.poll() is not None]

    def stop_all(self) -> None:
        for process in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process in self.running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def processes(providers, service_queues, settings, tmp_path) -> Iterator[Processes]:  # noqa: F811
    env = {
        **providers.env(),
        "SMS_FROM_NUMBER": "+15005550006",
        "DEFAULT_FROM_EMAIL": "alerts@example.com",
        "QUEUE_RETRY_BASE_SECONDS": str(settings.QUEUE_RETRY_BASE_SECONDS),
        "QUEUE_RETRY_MAX_SECONDS": str(settings.QUEUE_RETRY_MAX_SECONDS),
        "QUEUE_RETRY_AFTER_MAX_SECONDS": str(settings.QUEUE_RETRY_AFTER_MAX_SECONDS),
        "QUEUE_MAX_RETRIES": str(settings.QUEUE_MAX_RETRIES),
        "WORKER_METRICS_BASE_PORT": "0",
        "LOG_LEVEL": "INFO",
    }
    running = Processes(env, tmp_path)
    yield running
    running.stop_all()


def post(api, path: str, body: dict[str, Any]) -> dict[str, Any]:  # noqa: F811
    response = api.post(path, data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 201, 202), response.content
    return response.json()


def wait_final(ids: list[str], timeout: float) -> dict[str, int]:
    """Until every notification is final; returns the count per status."""

    def done() -> bool:
        return Notification.objects.filter(pk__in=ids).exclude(status__in=FINAL).count() == 0

    try:
        wait_for(done, timeout=timeout, what=f"{len(ids)} notifications final")
    except AssertionError:
        statuses = Counter(Notification.objects.filter(pk__in=ids).values_list("status", flat=True))
        raise AssertionError(f"not all final after {timeout} s: {dict(statuses)}") from None
    return dict(Counter(Notification.objects.filter(pk__in=ids).values_list("status", flat=True)))


def deliveries(records: list[dict[str, Any]], key: Any) -> Counter:
    """How often the fake accepted each notification (by ``key(record)``)."""
    return Counter(key(r) for r in records if r.get("outcome", "ok") == "ok")
