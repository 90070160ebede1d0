import os
from collections.abc import Iterator

import pytest
import redis
from django.conf import settings

from fakes.runner import Fakes, start_fakes
from zerver.lib import sandbox
from zerver.lib.queue import QueueClient, shard_queue_names

# The fault suite stops and restarts its servers: it runs on private ones, by `python -m tests.faults`.
collect_ignore = [] if os.environ.get("FAULT_SUITE") else ["faults"]


@pytest.fixture(scope="session", autouse=True)
def rabbitmq_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host of this test run's own, deleted at the end.

    Test runs side by side (two checkouts, a developer and CI) then never
    consume each other's messages. Without rabbitmqctl (a remote broker) the
    configured vhost is used as it is.
    """
    if not sandbox.can_make_vhosts() or os.environ.get("TEST_RABBITMQ_SHARED_VHOST"):
        yield ""
        return
    with sandbox.private_vhost("tests") as vhost:
        yield vhost


@pytest.fixture
def broker() -> Iterator[QueueClient]:
    """A client on the real RabbitMQ, for publishing and looking into queues."""
    client = QueueClient()
    yield client
    client.close()


@pytest.fixture
def test_queue(broker, settings, tmp_path) -> Iterator[str]:
    """The ``test`` queue, emptied, with its worker writing to a fresh file.

    Yields the path of that file.
    """
    settings.TEST_WORKER_OUTPUT = str(tmp_path / "consumed.jsonl")

    def clean() -> None:
        for name in {"test", *shard_queue_names("test")}:
            broker.delete(name)

    clean()
    yield settings.TEST_WORKER_OUTPUT
    clean()


@pytest.fixture(autouse=True)
def _clear_rate_limits() -> Iterator[None]:
    """Each test starts with no rate-limit counters: this run's keys in Redis (its own prefix) are deleted.

    Not ``cache.clear()``: that would empty the Redis database of every other run too.
    """
    cache = settings.CACHES["default"]
    if not cache["BACKEND"].endswith("RedisCache"):
        yield
        return
    server = redis.Redis.from_url(cache["LOCATION"])

    def clear() -> None:
        keys = list(server.scan_iter(match=f"{cache['KEY_PREFIX']}:*", count=1000))
        if keys:
            server.delete(*keys)

    clear()
    yield
    clear()
    server.close()


@pytest.fixture(scope="session")
def fakes() -> Iterator[Fakes]:
    """The provider fakes (APNs, FCM, Expo, SMTP, SMS), started once in this process on free ports."""
    running = start_fakes()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset_fakes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test that uses the fakes starts with no rules, records or counters."""
    if "fakes" not in request.fixturenames:
        yield
        return
    running = request.getfixturevalue("fakes")
    running.reset()
    yield
    running.reset()


def with_api_key(client):
    """Django's test client holding a fresh API key; ``client.client_row`` is its ApiClient."""
    from zerver.models import ApiClient

    row, key = ApiClient.create("app")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    client.client_row = row
    return client


@pytest.fixture
def api(client, db):
    """An API caller (test client with a key) inside the test's transaction."""
    return with_api_key(client)
