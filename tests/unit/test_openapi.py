"""The schema layer: the OpenAPI 3.1 document and docs page, and what the schemas answer."""

import json

import pytest

from zerver.lib.schemas import field_errors

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/v1/notifications/send": {"post"},
    "/api/v1/notifications/{notification_id}/status": {"get"},
    "/api/v1/devices": {"get", "post"},
    "/api/v1/devices/{device_id}": {"delete"},
    "/api/v1/messages": {"post"},
    "/api/v1/users/{user_id}/settings": {"put"},
}


def test_openapi_document_is_3_1_and_lists_every_operation_without_a_key(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert {path: set(ops) for path, ops in document["paths"].items()} == PATHS
    assert document["components"]["securitySchemes"]["BearerKey"] == {"type": "http", "scheme": "bearer"}


def test_every_operation_documents_the_error_shape(client):
    document = client.get("/api/v1/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status in ("400", "401", "429"):
                schema = operation["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (path, method, status)
    assert set(document["components"]["schemas"]["ErrorOut"]["required"]) == {"error"}


def test_send_request_schema_names_its_types(client):
    schema = client.get("/api/v1/openapi.json").json()["components"]["schemas"]["SendRequest"]
    assert schema["properties"]["type"]["enum"] == ["email", "sms", "push"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"type", "recipient"}


def test_docs_page_is_served(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert b"openapi.json" in response.content


def test_both_content_and_template_is_400_naming_content(api):
    body = {"type": "email", "recipient": "a@example.com", "content": "hi", "template": "welcome"}
    response = api.post("/api/v1/notifications/send", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"content"}


def test_empty_body_is_400_naming_the_body(api):
    response = api.post("/api/v1/devices", data=b"", content_type="application/json")
    assert response.status_code == 400
    assert "body" in response.json()["fields"]


def test_a_wrong_method_is_405_json(api):
    response = api.put("/api/v1/messages", data="{}", content_type="application/json")
    assert response.status_code == 405
    assert "error" in response.json()


def test_device_id_that_is_not_a_number_is_404(api):
    assert api.delete("/api/v1/devices/abc").status_code == 404


def test_field_errors_join_paths_and_keep_the_rules_words():
    errors = [
        {"type": "missing", "loc": ("body", "payload", "type"), "msg": "Field required"},
        {"type": "value_error", "loc": ("body", "payload", "recipient_ids", 3), "msg": "x", "ctx": {"error": "bad id"}},
        {"type": "extra_forbidden", "loc": ("body", "payload", "colour"), "msg": "Extra inputs are not permitted"},
        {"type": "content_or_template", "loc": (), "msg": "give either", "ctx": {"field": "content"}},
        {"type": "string_type", "loc": ("query", "user_id"), "msg": "Input should be a valid string"},
    ]
    assert field_errors(errors) == {
        "type": "is required",
        "recipient_ids.3": "bad id",
        "colour": "unknown field",
        "content": "give either",
        "user_id": "Input should be a valid string",
    }


@pytest.mark.parametrize("field", ["push_enabled", "email_enabled", "sms_enabled"])
def test_null_channel_switch_is_400_not_500(api, field):
    # Found by scripts/fuzz-api: a null switch reached the NOT NULL column.
    response = api.put("/api/v1/users/0/settings", data=json.dumps({field: None}), content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {field}


@pytest.mark.parametrize("body", [{"room_id": None}, {"sender_info": {"display_name": None}}])
def test_null_optional_message_fields_are_400(api, body):
    message = {"message_id": 1, "sender_id": 2, "recipient_ids": [3], **body}
    response = api.post("/api/v1/messages", data=json.dumps(message), content_type="application/json")
    assert response.status_code == 400
