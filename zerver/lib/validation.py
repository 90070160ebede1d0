"""The rules a request's fields must follow, each in one place: ids, addresses, numbers, subjects, content.

Each returns why a value breaks it (or None); the request schemas (zerver.lib.schemas) and the
actions call them, so every way in answers with the same words.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from zerver.lib.api import string_error

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
