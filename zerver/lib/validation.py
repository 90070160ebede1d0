"""Validating notification requests: every bad field is named, none is guessed at."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from zerver.lib.api import ApiError
from zerver.models import NotificationType

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
MAX_USER_ID = 64
MAX_CONTENT = {"email": 200_000, "sms": 1600, "push": 16_384}
PUSH_FIELDS = {
    "title": str,
    "body": str,
    "data": dict,
    "badge": int,
    "sound": str,
    "category": str,
    "priority": str,
    "collapse_key": str,
}


def recipient_error(type_: str, recipient: Any) -> str | None:
    if type_ == "push":
        if isinstance(recipient, bool) or not isinstance(recipient, (str, int)) or not str(recipient).strip():
            return "must be the user id (a string or an integer) the devices are registered for"
        if len(str(recipient)) > MAX_USER_ID:
            return f"a user id has at most {MAX_USER_ID} characters"
        return None
    if not isinstance(recipient, str):
        return "must be a string"
    if type_ == "email":
        try:
            validate_email(recipient)
        except ValidationError:
            return "is not a valid e-mail address"
    elif type_ == "sms" and not E164.match(recipient):
        return "must be a phone number in E.164 form, e.g. +14155550100"
    return None


def content_error(type_: str, content: Any) -> str | None:
    if type_ == "push" and isinstance(content, dict):
        for key, value in content.items():
            expected = PUSH_FIELDS.get(key)
            if expected is None:
                return f"unknown push field {key!r}; allowed: {', '.join(PUSH_FIELDS)}"
            if not isinstance(value, expected) or isinstance(value, bool):
                return f"{key!r} must be a {expected.__name__}"
        if not content.get("body") and not content.get("title"):
            return "a push needs a title or a body"
        if content.get("priority", "high") not in {"high", "normal"}:
            return "'priority' is 'high' or 'normal'"
        size = len(str(content))
    elif isinstance(content, str):
        if not content.strip():
            return "must not be empty"
        size = len(content)
    else:
        return "must be a string" + (" or a push object" if type_ == "push" else "")
    if size > MAX_CONTENT[type_]:
        return f"is too long: {size} characters, at most {MAX_CONTENT[type_]} for {type_}"
    return None


def validate_send(body: dict[str, Any]) -> dict[str, Any]:
    """The cleaned request of ``POST /api/v1/notifications/send``, or an ApiError(400)."""
    errors: dict[str, str] = {}
    type_ = body.get("type")
    if type_ not in NotificationType.values:
        errors["type"] = f"must be one of {', '.join(NotificationType.values)}"
    if "recipient" not in body:
        errors["recipient"] = "is required"
    elif type_ in NotificationType.values and (error := recipient_error(type_, body["recipient"])):
        errors["recipient"] = error
    has_content, has_template = "content" in body, "template" in body
    if has_content == has_template:
        errors["content"] = "give either 'content' or 'template' (with 'variables')"
    elif has_content and type_ in NotificationType.values and (error := content_error(type_, body["content"])):
        errors["content"] = error
    elif has_template and (not isinstance(body["template"], str) or not body["template"]):
        errors["template"] = "must be a template name"
    if not isinstance(body.get("variables", {}), dict):
        errors["variables"] = "must be an object"
    subject = body.get("subject", "")
    if not isinstance(subject, str) or len(subject) > 255:
        errors["subject"] = "must be a string of at most 255 characters"
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 255):
        errors["idempotency_key"] = "must be a string of 1 to 255 characters"
    unknown = set(body) - {"type", "recipient", "content", "template", "variables", "subject", "idempotency_key"}
    for field in sorted(unknown):
        errors[field] = "unknown field"
    if errors:
        raise ApiError(400, "invalid request", errors)
    return {
        "type": type_,
        "recipient": str(body["recipient"]),
        "content": body.get("content"),
        "subject": subject,
        "template": body.get("template", ""),
        "variables": body.get("variables", {}),
        "idempotency_key": key,
    }
