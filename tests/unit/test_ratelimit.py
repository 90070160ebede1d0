"""Rate limits as clients, remote servers and operators see them (counters in the real Redis, MariaDB)."""

import base64
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from prometheus_client import REGISTRY

from bouncer.models import RemoteServer
from tests.helpers import ROOT, child_env
from zerver.lib import ratelimit
from zerver.lib.ratelimit import RateLimited
from zerver.models import ApiClient, Notification, OutboxEvent

MINUTE = 60
T0 = 1_000_000 * MINUTE  # the start of some minute


@pytest.fixture
def clock(monkeypatch):
    """The limiter's clock, set by the test: ``clock.at(seconds)`` from the start of a minute."""
    state = SimpleNamespace(now=float(T0))
    state.at = lambda seconds: setattr(state, "now", T0 + seconds)
    monkeypatch.setattr(ratelimit, "now", lambda: state.now)
    return state


def rejections(reason):
    return REGISTRY.get_sample_value("rate_limit_rejections_total", {"reason": reason}) or 0.0


def refused(check, *args, **kwargs) -> RateLimited | None:
    try:
        check(*args, **kwargs)
    except RateLimited as e:
        return e
    return None


# --- The limiter -----------------------------------------------------------------------------------------


def test_requests_over_the_default_are_refused_with_the_time_to_wait(settings, clock):
    settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 3
    client = SimpleNamespace(pk=1, requests_per_minute=None)
    clock.at(30)
    for _ in range(3):
        ratelimit.check_client_request(client)

    error = refused(ratelimit.check_client_request, client)

    assert error is not None and error.reason == "client_requests" and error.limit == 3
    # The three age out over the next minute; one more fits once a third of them has gone (at 1:20).
    assert error.retry_after == 50
    clock.at(30 + 49)
    assert refused(ratelimit.check_client_request, client)
    clock.at(30 + 50)
    ratelimit.check_client_request(client)


def test_the_allowance_comes_back_gradually_not_all_at_once_at_the_minutes_edge(settings, clock):
    settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 4
    client = SimpleNamespace(pk=2)
    clock.at(59)
    for _ in range(4):
        ratelimit.check_client_request(client)
    clock.at(MINUTE)  # a fixed window would allow four more now
    assert refused(ratelimit.check_client_request, client)
    clock.at(MINUTE + 30)  # half of the last minute's four still count: two fit
    ratelimit.check_client_request(client)
    ratelimit.check_client_request(client)
    assert refused(ratelimit.check_client_request, client)


def test_a_clients_own_limit_beats_the_default(settings):
    settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 100
    own, default = SimpleNamespace(pk=3, requests_per_minute=2), SimpleNamespace(pk=4, requests_per_minute=None)
    ratelimit.check_client_request(own)
    ratelimit.check_client_request(own)
    assert refused(ratelimit.check_client_request, own)
    for _ in range(5):
        ratelimit.check_client_request(default)


def test_the_counters_are_shared_by_processes(settings):
    """Another process (as another gunicorn worker would be) spends the same allowance."""
    settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 2
    client = SimpleNamespace(pk=5)
    ratelimit.check_client_request(client)
    script = (
        "import django; django.setup()\n"
        "from types import SimpleNamespace\n"
        "from django.conf import settings\n"
        "settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 2\n"
        "from zerver.lib import ratelimit\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        ratelimit.check_client_request(SimpleNamespace(pk=5))\n"
        "        print('allowed')\n"
        "    except ratelimit.RateLimited:\n"
        "        print('refused')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["allowed", "refused"]
    assert refused(ratelimit.check_client_request, client)


def test_a_refused_batch_is_not_counted(settings):
    settings.RATE_LIMIT_NOTIFICATIONS_PER_MINUTE = 6
    client = SimpleNamespace(pk=6)
    ratelimit.check_client_notifications(client, 3)
    assert refused(ratelimit.check_client_notifications, client, 5)
    ratelimit.check_client_notifications(client, 3)  # the refused five took nothing
    assert refused(ratelimit.check_client_notifications, client, 1)


def test_a_batch_bigger_than_a_minutes_allowance_names_its_field(settings):
    settings.RATE_LIMIT_NOTIFICATIONS_PER_MINUTE = 10
    error = refused(ratelimit.check_client_notifications, SimpleNamespace(pk=7), 11, field="recipient_ids")
    assert error is not None and error.retry_after == MINUTE
    assert error.fields == {"recipient_ids": "11 at once is more than the limit of 10 a minute"}


def test_failed_authentications_block_the_address_only(settings):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 3
    for _ in range(3):
        ratelimit.check_auth_failure("192.0.2.1")
        ratelimit.record_auth_failure("192.0.2.1")
    error = refused(ratelimit.check_auth_failure, "192.0.2.1")
    assert error is not None and error.reason == "auth_failures"
    ratelimit.check_auth_failure("192.0.2.2")
    ratelimit.check_auth_failure("2001:db8::1")


def test_rejections_are_counted_by_reason(settings):
    settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 1
    settings.RATE_LIMIT_BOUNCER_REQUESTS_PER_MINUTE = 1
    before = {r: rejections(r) for r in ratelimit.REASONS}
    client, server = SimpleNamespace(pk=8), SimpleNamespace(pk=1, uuid="b7e0c1d2")
    ratelimit.check_client_request(client)
    ratelimit.check_server_request(server)
    for _ in range(2):
        refused(ratelimit.check_client_request, client)
    refused(ratelimit.check_server_request, server)

    after = {r: rejections(r) - before[r] for r in ratelimit.REASONS}
    assert after == {"client_requests": 2, "client_notifications": 0, "server_requests": 1, "auth_failures": 0}


def test_nothing_is_limited_when_rate_limits_are_off(settings):
    settings.RATE_LIMITS_ENABLED = False
    settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 1
    for _ in range(3):
        ratelimit.check_client_request(SimpleNamespace(pk=9))
        ratelimit.record_auth_failure("192.0.2.3")
    ratelimit.check_auth_failure("192.0.2.3")


def test_an_unreachable_cache_lets_requests_through(settings, caplog):
    settings.RATE_LIMIT_REQUESTS_PER_MINUTE = 1
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    for _ in range(3):
        ratelimit.check_client_request(SimpleNamespace(pk=10))
    assert "the cache is unreachable (ConnectionError)" in caplog.text


# --- Through the API, the bouncer and the admin ------------------------------------------------------------


def send(api, **extra):
    body = {"type": "email", "recipient": "ann@example.com", "subject": "Hi", "content": "Hello!"}
    return api.post("/api/v1/notifications/send", data=json.dumps(body), content_type="application/json", **extra)


def message(api, recipient_ids, sender_id=99):
    body = {"message_id": 1, "sender_id": sender_id, "recipient_ids": recipient_ids, "message_content": "hi"}
    return api.post("/api/v1/messages", data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_the_api_answers_429_json_with_retry_after_over_a_clients_request_limit(api):
    ApiClient.objects.filter(pk=api.client_row.pk).update(requests_per_minute=2)
    assert send(api).status_code == 202
    assert api.get(f"/api/v1/notifications/{'0' * 32}/status").status_code == 404  # counted all the same

    response = send(api)

    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "rate limited" and body["reason"] == "client_requests"
    # Up to 1.5 minutes with a limit of 2: the two count, fading, into the next minute too.
    assert 1 <= body["retry_after"] <= 1.5 * MINUTE and response["Retry-After"] == str(body["retry_after"])
    assert Notification.objects.count() == 1


@pytest.mark.django_db
def test_a_chat_message_counts_each_recipient_against_the_notification_limit(api):
    ApiClient.objects.filter(pk=api.client_row.pk).update(notifications_per_minute=5)
    # Four recipients (the sender among the ids is not one) and one notification: five.
    assert message(api, [1, 2, 3, 4, 99]).status_code == 202
    assert send(api).status_code == 202

    over = message(api, [5])
    assert over.status_code == 429 and over.json()["reason"] == "client_notifications"
    assert send(api).status_code == 429
    assert OutboxEvent.objects.count() == 2  # the message's fan-out and the one notification


@pytest.mark.django_db
def test_a_message_to_more_recipients_than_a_minute_allows_names_the_field(api):
    ApiClient.objects.filter(pk=api.client_row.pk).update(notifications_per_minute=3)
    response = message(api, [1, 2, 3, 4])
    assert response.status_code == 429
    assert response.json()["fields"] == {"recipient_ids": "4 at once is more than the limit of 3 a minute"}
    assert not OutboxEvent.objects.exists()


@pytest.mark.django_db
def test_a_repeated_idempotency_key_is_not_counted_as_a_notification(api):
    ApiClient.objects.filter(pk=api.client_row.pk).update(notifications_per_minute=1)
    body = {"type": "email", "recipient": "a@b.co", "content": "x", "idempotency_key": "k1"}
    post = lambda: api.post("/api/v1/notifications/send", data=json.dumps(body), content_type="application/json")  # noqa: E731
    assert post().status_code == 202
    assert post().status_code == 200  # the duplicate, not refused


@pytest.mark.django_db
def test_an_address_with_too_many_wrong_keys_is_refused_even_with_a_right_key(api, settings):
    """A blocked address is refused before its key is looked at: a guessed key cannot be confirmed."""
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 3
    right = api.defaults["HTTP_AUTHORIZATION"]
    for _ in range(3):
        assert send(api, HTTP_AUTHORIZATION="Bearer nk_0123456789abcdef_wrong").status_code == 401

    blocked = send(api, HTTP_AUTHORIZATION=right)

    assert blocked.status_code == 429 and blocked.json()["reason"] == "auth_failures"
    assert int(blocked["Retry-After"]) >= 1
    assert send(api, HTTP_AUTHORIZATION=right, REMOTE_ADDR="192.0.2.9").status_code == 202


@pytest.mark.django_db
def test_a_request_without_a_key_is_not_a_failed_authentication(api, settings):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 1
    for _ in range(3):
        assert send(api, HTTP_AUTHORIZATION="").status_code == 401
    assert send(api).status_code == 202


def bouncer_notify(client, server=None, key=None, **extra):
    if server is not None:
        extra["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{server.uuid}:{key}".encode()).decode()
    return client.post(
        "/api/v1/remotes/push/notify", data=json.dumps({"notifications": []}), content_type="application/json", **extra
    )


@pytest.mark.django_db
def test_the_bouncer_limits_each_remote_server(client, settings):
    settings.RATE_LIMIT_BOUNCER_REQUESTS_PER_MINUTE = 2
    (one, one_key), (other, other_key) = RemoteServer.create("a.example.com"), RemoteServer.create("b.example.com")
    assert [bouncer_notify(client, one, one_key).status_code for _ in range(3)] == [200, 200, 429]
    over = bouncer_notify(client, one, one_key)
    assert over.json()["reason"] == "server_requests" and int(over["Retry-After"]) >= 1
    assert bouncer_notify(client, other, other_key).status_code == 200


@pytest.mark.django_db
def test_the_bouncer_refuses_an_address_with_too_many_failed_authentications(client, settings):
    settings.RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = 2
    server, key = RemoteServer.create("a.example.com")
    assert [bouncer_notify(client, server, "wrong").status_code for _ in range(2)] == [401, 401]
    blocked = bouncer_notify(client, server, key)
    assert blocked.status_code == 429 and blocked.json()["reason"] == "auth_failures"
    assert bouncer_notify(client, server, key, REMOTE_ADDR="192.0.2.9").status_code == 200


@pytest.mark.django_db
def test_the_admin_shows_and_edits_a_clients_limits(client):
    client.force_login(User.objects.create_user("ops", password="pw", is_staff=True, is_superuser=True))
    row, _ = ApiClient.create("app")
    page = client.get(f"/admin/zerver/apiclient/{row.pk}/change/")
    assert b'name="requests_per_minute"' in page.content and b'name="notifications_per_minute"' in page.content

    form = {"name": "app", "requests_per_minute": "120", "notifications_per_minute": ""}
    assert client.post(f"/admin/zerver/apiclient/{row.pk}/change/", form).status_code == 302
    row.refresh_from_db()
    assert (row.requests_per_minute, row.notifications_per_minute) == (120, None)

    zero = client.post(f"/admin/zerver/apiclient/{row.pk}/change/", {**form, "requests_per_minute": "0"})
    assert zero.status_code == 200 and b"greater than or equal to 1" in zero.content
