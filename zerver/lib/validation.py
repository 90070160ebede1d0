"""Validating notification requests: every bad field is named, none is guessed at."""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from zerver.lib.api import ApiError, string_error
from zerver.models import NotificationType

E164 = re.compile(r"\+[1-9]\d{6,14}")
MAX_USER_ID = 64
MAX_EMAIL = 254  # RFC 5321: a path is at most 256 octets with its angle brackets
MAX_EMAIL_LOCAL_PART = 64
MAX_SUBJECT = 255
MAX_BADGE = 2**31 - 1
TEMPLATE_NAME = re.compile(r"[-a-zA-Z0-9_]{1,100}")  # the Template.name slug; also a directory name on disk
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


def user_id_error(user_id: Any) -> str | None:
    """Why ``user_id`` is not a user id (a string or an integer of at most 64 characters), or None."""
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or not str(user_id).strip():
        return "must be a user id (a string or an integer)"
    if len(str(user_id)) > MAX_USER_ID:
        return f"a user id has at most {MAX_USER_ID} characters"
    return string_error(str(user_id))


def email_error(address: Any) -> str | None:
    """Why ``address`` is not an e-mail address: Django's EmailValidator and RFC 5321's lengths."""
    if not isinstance(address, str):
        return "must be a string"
    if len(address) > MAX_EMAIL:
        return f"an e-mail address has at most {MAX_EMAIL} characters"
    if len(address.rpartition("@")[0]) > MAX_EMAIL_LOCAL_PART:
        return f"the part before @ has at most {MAX_EMAIL_LOCAL_PART} characters"
    try:
        validate_email(address)
    except ValidationError:
        return "is not a valid e-mail address"
    return None


def phone_number(number: Any) -> str | None:
    """``number`` in E.164 form if it is a possible phone number written in E.164, else None."""
    if not isinstance(number, str) or not E164.fullmatch(number):
        return None
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


PHONE_RULE = "must be a phone number in E.164 form, e.g. +14155550100"


def recipient_error(type_: str, recipient: Any) -> str | None:
    if type_ == "push":
        return user_id_error(recipient) and "must be the user id (a string or an integer of at most 64 characters)"
    if type_ == "email":
        return email_error(recipient)
    if type_ == "sms" and phone_number(recipient) is None:
        return PHONE_RULE
    return None


def subject_error(subject: Any) -> str | None:
    """Why ``subject`` cannot be a subject line: at most 255 characters, no line break."""
    if not isinstance(subject, str) or len(subject) > MAX_SUBJECT:
        return f"must be a string of at most {MAX_SUBJECT} characters"
    if "\r" in subject or "\n" in subject:
        return "must be one line (no CR or LF)"
    return None


def content_error(type_: str, content: Any) -> str | None:
    if type_ == "push" and isinstance(content, dict):
        for key, value in content.items():
            expected = PUSH_FIELDS.get(key)
            if expected is None:
                return f"unknown push field {key!r}; allowed: {', '.join(PUSH_FIELDS)}"
            if not isinstance(value, expected) or isinstance(value, bool):
                return f"{key!r} must be a {expected.__name__}"
            if key == "badge" and not 0 <= value <= MAX_BADGE:
                return f"'badge' is from 0 to {MAX_BADGE}"
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


# A notification's time to live: at least long enough for one try, at most APNs' own limit (28 days).
MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 28 * 86400


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
    elif has_template and (not isinstance(body["template"], str) or not TEMPLATE_NAME.fullmatch(body["template"])):
        errors["template"] = "must be a template name (1 to 100 of a-z A-Z 0-9 - _)"
    if not isinstance(body.get("variables", {}), dict):
        errors["variables"] = "must be an object"
    subject = body.get("subject", "")
    if error := subject_error(subject):
        errors["subject"] = error
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 255):
        errors["idempotency_key"] = "must be a string of 1 to 255 characters"
    ttl = body.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS
    ):
        errors["ttl"] = f"must be a number of seconds from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} (28 days)"
    unknown = set(body) - {
        "type",
        "recipient",
        "content",
        "template",
        "variables",
        "subject",
        "idempotency_key",
        "ttl",
    }
    for field in sorted(unknown):
        errors[field] = "unknown field"
    if errors:
        raise ApiError(400, "invalid request", errors)
    return {
        "type": type_,
        "recipient": phone_number(body["recipient"]) if type_ == "sms" else str(body["recipient"]),
        "content": body.get("content"),
        "subject": subject,
        "template": body.get("template", ""),
        "variables": body.get("variables", {}),
        "idempotency_key": key,
        "ttl": ttl,
    }


MESSAGE_FIELDS = {"message_id", "sender_id", "recipient_ids", "message_content", "sender_info", "room_id"}


def validate_message(body: dict[str, Any], max_recipients: int) -> dict[str, Any]:
    """The cleaned body of ``POST /api/v1/messages``, or an ApiError(400) naming every bad field."""
    errors: dict[str, str] = {}
    for field in ("message_id", "sender_id"):
        if field not in body:
            errors[field] = "is required"
        elif error := user_id_error(body[field]):
            errors[field] = error.replace("user id", "id")
    if "room_id" in body and (error := user_id_error(body["room_id"])):
        errors["room_id"] = error.replace("user id", "id")
    recipients = body.get("recipient_ids")
    if "recipient_ids" not in body:
        errors["recipient_ids"] = "is required"
    elif not isinstance(recipients, list):
        errors["recipient_ids"] = "must be a list of user ids"
    elif len(recipients) > max_recipients:
        errors["recipient_ids"] = f"at most {max_recipients} recipients in one message"
    else:
        for i, recipient in enumerate(recipients):
            if error := user_id_error(recipient):
                errors[f"recipient_ids.{i}"] = error
    if not isinstance(body.get("message_content", ""), str):
        errors["message_content"] = "must be a string"
    elif len(body.get("message_content", "")) > MAX_CONTENT["push"]:
        errors["message_content"] = f"is too long: at most {MAX_CONTENT['push']} characters"
    info = body.get("sender_info", {})
    if not isinstance(info, dict):
        errors["sender_info"] = "must be an object with display_name and/or username"
    else:
        for key, value in info.items():
            if key not in {"display_name", "username"}:
                errors[f"sender_info.{key}"] = "unknown field"
            elif not isinstance(value, str) or len(value) > MAX_SUBJECT:
                errors[f"sender_info.{key}"] = f"must be a string of at most {MAX_SUBJECT} characters"
    errors |= {field: "unknown field" for field in sorted(set(body) - MESSAGE_FIELDS)}
    if errors:
        raise ApiError(400, "invalid request", errors)
    return body


SETTINGS_FLAGS = ("push_enabled", "email_enabled", "sms_enabled")
SETTINGS_FIELDS = ("email", "phone", *SETTINGS_FLAGS)


def validate_user_settings(user_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The cleaned changes of ``PUT /api/v1/users/<user_id>/settings``, or an ApiError(400).

    ``null`` (or ``""``) for ``email`` or ``phone`` clears it; a phone number is stored in E.164.
    """
    errors: dict[str, str] = {}
    if error := user_id_error(user_id):
        errors["user_id"] = error
    changes: dict[str, Any] = {}
    for flag in SETTINGS_FLAGS:
        if flag in body:
            if isinstance(body[flag], bool):
                changes[flag] = body[flag]
            else:
                errors[flag] = "must be true or false"
    if "email" in body:
        if body["email"] in (None, ""):
            changes["email"] = ""
        elif error := email_error(body["email"]):
            errors["email"] = error
        else:
            changes["email"] = body["email"]
    if "phone" in body:
        if body["phone"] in (None, ""):
            changes["phone"] = ""
        elif (number := phone_number(body["phone"])) is None:
            errors["phone"] = PHONE_RULE
        else:
            changes["phone"] = number
    errors |= {field: "unknown field" for field in sorted(set(body) - set(SETTINGS_FIELDS))}
    if errors:
        raise ApiError(400, "invalid request", errors)
    return changes
