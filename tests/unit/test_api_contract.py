"""The API's contract at its edges: every error is JSON naming the bad fields, never a 500 or HTML.

One test per request the fuzzer found answering 500, and the limits around them.
"""

import json
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import override_settings
from model_bakery import baker

from zerver.models import OutboxEvent, PushDevice, Template, UserSettings

pytestmark = pytest.mark.django_db

SEND = "/api/v1/notifications/send"


def post(api, path, raw, method="post"):
    return getattr(api, method)(
        path, data=raw if isinstance(raw, (str, bytes)) else json.dumps(raw), content_type="application/json"
    )


def assert_fields(response, status, *fields):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json().get("fields", {})) == set(fields), response.json()


def test_json_nested_a_thousand_deep_is_400(api):
    raw = '{"type": "push", "recipient": "1", "content": ' + "[" * 1000 + "]" * 1000 + "}"
    assert_fields(post(api, SEND, raw), 400, "body")


def test_json_nested_past_the_limit_names_the_field(api):
    data = {}
    for _ in range(40):
        data = {"x": data}
    response = post(api, SEND, {"type": "push", "recipient": "1", "content": {"title": "t", "data": data}})
    assert response.status_code == 400
    assert any(f.startswith("content.data.x") for f in response.json()["fields"])


@pytest.mark.parametrize("field", ["recipient", "content", "subject", "idempotency_key"])
def test_lone_surrogate_in_any_string_is_400_naming_it(api, field):
    body = {"type": "email", "recipient": "a@example.com", "content": "hi", field: "x\ud800"}
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as \\ud800
    assert_fields(post(api, SEND, raw), 400, field)


def test_nul_byte_is_400_naming_the_field(api):
    response = post(api, SEND, {"type": "email", "recipient": "a@example.com", "content": "a\x00b"})
    assert_fields(response, 400, "content")


def test_surrogate_in_a_key_is_400(api):
    raw = '{"type": "push", "recipient": "1", "content": {"title": "t", "data": {"\\udc00": "v"}}}'
    response = post(api, SEND, raw)
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "content.data.\udc00": "key must not contain lone surrogates (invalid Unicode)"
    }


def test_email_address_of_256_characters_is_400(api):
    address = "a" * 60 + "@" + ("b" * 60 + ".") * 3 + "c" * 12 + ".com"
    assert len(address) > 254
    assert_fields(post(api, SEND, {"type": "email", "recipient": address, "content": "hi"}), 400, "recipient")


def test_email_local_part_over_64_is_400(api):
    response = post(api, SEND, {"type": "email", "recipient": "a" * 65 + "@example.com", "content": "hi"})
    assert_fields(response, 400, "recipient")


def test_rendered_subject_over_255_is_400_at_accept_time(api):
    baker.make(Template, name="long", subject="{{ s }}", text="body")
    response = post(
        api, SEND, {"type": "email", "recipient": "a@example.com", "template": "long", "variables": {"s": "x" * 300}}
    )
    assert_fields(response, 400, "template")
    assert not OutboxEvent.objects.exists()


def test_rendered_subject_with_a_line_break_is_400(api):
    baker.make(Template, name="crlf", subject="{{ s }}", text="body")
    response = post(
        api,
        SEND,
        {
            "type": "email",
            "recipient": "a@example.com",
            "template": "crlf",
            "variables": {"s": "hi\r\nBcc: x@example.com"},
        },
    )
    assert_fields(response, 400, "template")


def test_given_subject_with_a_line_break_is_400(api):
    response = post(api, SEND, {"type": "email", "recipient": "a@example.com", "content": "x", "subject": "a\nb"})
    assert_fields(response, 400, "subject")


@pytest.mark.parametrize("name", ["t" * 101, "a\x00b", "../../etc", "a b"])
def test_bad_template_names_are_400(api, name):
    response = post(api, SEND, {"type": "email", "recipient": "a@example.com", "template": name})
    assert_fields(response, 400, "template")


def test_every_bad_field_is_named(api):
    response = post(
        api,
        SEND,
        {"type": "sms", "recipient": "+14155550100\n", "content": 5, "subject": 3, "idempotency_key": "", "extra": 1},
    )
    assert_fields(response, 400, "recipient", "content", "subject", "idempotency_key", "extra")


def test_sms_recipient_with_a_trailing_newline_is_400(api):
    assert_fields(post(api, SEND, {"type": "sms", "recipient": "+14155550100\n", "content": "hi"}), 400, "recipient")


def test_huge_integer_is_400_not_500(api):
    raw = '{"type": "push", "recipient": ' + "9" * 5000 + ', "content": "hi"}'
    assert_fields(post(api, SEND, raw), 400, "body")


# --- user settings -------------------------------------------------------------


def settings_url(user_id="u1"):
    return f"/api/v1/users/{user_id}/settings"


def test_null_email_and_phone_clear_them(api):
    assert post(api, settings_url(), {"email": "a@example.com", "phone": "+14155550100"}, "put").status_code == 200
    response = post(api, settings_url(), {"email": None, "phone": None}, "put")
    assert response.status_code == 200
    row = UserSettings.objects.get(user_id="u1")
    assert (row.email, row.phone) == ("", "")


def test_settings_validate_every_field(api):
    response = post(
        api,
        settings_url(),
        {"email": "not-an-address", "phone": "+1415555\n", "push_enabled": "yes", "other": 1},
        "put",
    )
    assert_fields(response, 400, "email", "phone", "push_enabled", "other")
    assert not UserSettings.objects.exists()


def test_settings_phone_is_stored_in_e164(api):
    assert post(api, settings_url(), {"phone": "+447700900123"}, "put").status_code == 200
    assert UserSettings.objects.get().phone == "+447700900123"


def test_settings_user_id_longer_than_its_column_is_400(api):
    assert_fields(post(api, settings_url("u" * 65), {"push_enabled": True}, "put"), 400, "user_id")


# --- messages ------------------------------------------------------------------


def test_messages_cap_recipients(api):
    with override_settings(MESSAGES_MAX_RECIPIENTS=10):
        response = post(api, "/api/v1/messages", {"message_id": 1, "sender_id": 2, "recipient_ids": list(range(11))})
    assert_fields(response, 400, "recipient_ids")
    assert not OutboxEvent.objects.exists()


def test_messages_validate_every_recipient(api):
    response = post(
        api, "/api/v1/messages", {"message_id": 1, "sender_id": 2, "recipient_ids": [3, None, "x" * 65, {"a": 1}]}
    )
    assert_fields(response, 400, "recipient_ids.1", "recipient_ids.2", "recipient_ids.3")


def test_messages_accept_a_good_message(api):
    response = post(
        api,
        "/api/v1/messages",
        {
            "message_id": 1,
            "sender_id": 2,
            "recipient_ids": [3, "4"],
            "message_content": "hi",
            "sender_info": {"display_name": "Ann"},
        },
    )
    assert response.status_code == 202


# --- devices -------------------------------------------------------------------


def test_token_with_a_trailing_newline_is_400(api):
    response = post(
        api, "/api/v1/devices", {"user_id": "1", "platform": "apns", "token": "ab" * 32 + "\n", "app_id": "com.example"}
    )
    assert_fields(response, 400, "token")
    assert not PushDevice.objects.exists()


def test_list_devices_with_an_over_long_user_id_is_400(api):
    response = api.get("/api/v1/devices", {"user_id": "u" * 65})
    assert_fields(response, 400, "user_id")


# --- the edge: body size, URL length, Host, Django's pages, the database ------------


def test_body_over_the_limit_is_413_json(api):
    with override_settings(API_MAX_BODY_BYTES=1000):
        response = post(api, SEND, {"type": "email", "recipient": "a@example.com", "content": "x" * 2000})
    assert response.status_code == 413
    assert "error" in response.json()


def test_url_over_the_limit_is_414_json(api):
    response = api.get("/api/v1/devices?user_id=" + "u" * 5000)
    assert response.status_code == 414
    assert "error" in response.json()


@pytest.mark.parametrize("path", ["/api/v1/devices", "/admin/", "/health", "/nowhere"])
@override_settings(DEBUG=True, ALLOWED_HOSTS=["localhost"])
def test_a_bad_host_is_400_json_never_a_debug_page(client, path):
    response = client.get(path, HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json() == {"error": "the Host header is not allowed"}
    assert b"RABBITMQ" not in response.content


@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/nowhere", 404),
        ("get", "/api/v1/notifications/send", 405),
        ("post", "/api/v1/devices/1", 405),
        ("get", "/api/v1/notifications/00000000-0000-0000-0000-000000000000/status", 404),
        ("get", "/api/v1/remotes/push/nowhere", 404),
    ],
)
def test_every_error_status_under_api_is_json(api, debug, method, path, status):
    with override_settings(DEBUG=debug):
        response = getattr(api, method)(path)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_no_key_is_401_json_with_www_authenticate(client):
    response = client.get("/api/v1/devices?user_id=1")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "error" in response.json()


def test_database_down_is_503_json_with_retry_after(api):
    with mock.patch("zerver.views.notifications.send_notification", side_effect=OperationalError(2003, "down")):
        response = post(api, SEND, {"type": "email", "recipient": "a@example.com", "content": "hi"})
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert "error" in response.json()


def test_an_unhandled_exception_is_500_json_without_a_traceback(api):
    api.raise_request_exception = False
    with (
        override_settings(DEBUG=True),
        mock.patch("zerver.views.notifications.send_notification", side_effect=KeyError("secret-detail")),
    ):
        response = post(api, SEND, {"type": "email", "recipient": "a@example.com", "content": "hi"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
