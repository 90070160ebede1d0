"""The API's request and response schemas (pydantic v2, through django-ninja): its OpenAPI document.

Each rule lives once, in :mod:`zerver.lib.validation`; the validators here
call it, so a bad field is answered with the same words whichever way it
comes. Validators run in ``before`` mode: the rule sees the raw JSON value
and its own message is the one the client reads (pydantic's type errors
only say what the rule has not already said). A field that depends on
another (a recipient on ``type``, a token on ``platform``) comes after it, so
the earlier one is in ``info.data`` once it is valid.

:func:`field_errors` turns pydantic's errors into the API's ``fields``
object: one entry per bad field, by its dotted path.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Any, Literal

from django.conf import settings
from ninja import Schema
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from zerver.lib import validation
from zerver.models import NotificationType, Platform
from zerver.models.devices import token_error


def _user_id(value: Any) -> Any:
    if error := validation.user_id_error(value):
        raise ValueError(error)
    return str(value)


def _id(value: Any) -> Any:
    if error := validation.user_id_error(value):
        raise ValueError(error.replace("user id", "id"))
    return value


def one_of(values: list[str]) -> BeforeValidator:
    """A choice among ``values``, refused naming them all."""

    def check(value: Any) -> Any:
        if value not in values:
            raise ValueError(f"must be one of {', '.join(values)}")
        return value

    return BeforeValidator(check)


UserId = Annotated[StrictStr | StrictInt, BeforeValidator(_user_id)]
"""A user id: a string or an integer of at most 64 characters (stored as a string)."""
AnyId = Annotated[StrictStr | StrictInt, BeforeValidator(_id)]
"""A message, sender or room id: like a user id, kept as given."""


class Closed(Schema):
    """A request object: a field it does not define is an error ("unknown field")."""

    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------


class PushContent(Schema):
    """A push's content: at least a title or a body."""

    title: StrictStr | None = None
    body: StrictStr | None = None
    data: dict[str, Any] | None = None
    badge: StrictInt | None = Field(None, ge=0, le=validation.MAX_BADGE)
    sound: StrictStr | None = None
    category: StrictStr | None = None
    priority: Literal["high", "normal"] | None = None
    collapse_key: StrictStr | None = None


class SendRequest(Closed):
    """``POST /api/v1/notifications/send``: give either ``content`` or ``template`` (with ``variables``)."""

    type: Annotated[Literal["email", "sms", "push"], one_of(NotificationType.values)]
    recipient: StrictStr | StrictInt = Field(
        description="an e-mail address, an E.164 phone number or a user id, by type"
    )
    content: StrictStr | PushContent | None = Field(None, description="text, or for a push a push object")
    template: StrictStr | None = Field(None, description="a template name (1 to 100 of a-z A-Z 0-9 - _)")
    variables: dict[str, Any] = Field(default_factory=dict)
    subject: StrictStr = Field("", max_length=validation.MAX_SUBJECT)
    idempotency_key: StrictStr | None = Field(None, min_length=1, max_length=255)
    ttl: float | None = Field(
        None,
        ge=validation.MIN_TTL_SECONDS,
        le=validation.MAX_TTL_SECONDS,
        description="seconds delivery may take (default per channel)",
    )

    @field_validator("recipient", mode="before")
    @classmethod
    def _recipient(cls, value: Any, info: ValidationInfo) -> Any:
        type_ = info.data.get("type")
        if type_ is None:
            return value
        if error := validation.recipient_error(type_, value):
            raise ValueError(error)
        return validation.phone_number(value) if type_ == "sms" else str(value)

    @field_validator("content", mode="before")
    @classmethod
    def _content(cls, value: Any, info: ValidationInfo) -> Any:
        type_ = info.data.get("type")
        if value is not None and type_ is not None and (error := validation.content_error(type_, value)):
            raise ValueError(error)
        return value

    @field_validator("template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not validation.TEMPLATE_NAME.fullmatch(value)):
            raise ValueError("must be a template name (1 to 100 of a-z A-Z 0-9 - _)")
        return value

    @field_validator("variables", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must be an object")
        return value

    @field_validator("subject", mode="before")
    @classmethod
    def _subject(cls, value: Any) -> Any:
        if error := validation.subject_error(value):
            raise ValueError(error)
        return value

    @field_validator("idempotency_key", mode="before")
    @classmethod
    def _idempotency_key(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 255):
            raise ValueError("must be a string of 1 to 255 characters")
        return value

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> Any:
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not validation.MIN_TTL_SECONDS <= value <= validation.MAX_TTL_SECONDS
        ):
            raise ValueError(
                f"must be a number of seconds from {validation.MIN_TTL_SECONDS} to "
                f"{validation.MAX_TTL_SECONDS} (28 days)"
            )
        return value

    @model_validator(mode="after")
    def _content_or_template(self) -> SendRequest:
        if (self.content is None) == (self.template is None):
            raise PydanticCustomError(
                "content_or_template", "give either 'content' or 'template' (with 'variables')", {"field": "content"}
            )
        return self

    def cleaned(self) -> dict[str, Any]:
        """The request as :func:`zerver.actions.notifications.send_notification` takes it."""
        content = self.content.model_dump(exclude_unset=True) if isinstance(self.content, PushContent) else self.content
        return {**self.model_dump(), "content": content, "template": self.template or ""}


class SenderInfo(Closed):
    display_name: StrictStr = Field(None, max_length=validation.MAX_SUBJECT)  # type: ignore[assignment]
    username: StrictStr = Field(None, max_length=validation.MAX_SUBJECT)  # type: ignore[assignment]


class MessageRequest(Closed):
    """``POST /api/v1/messages``: a chat message to fan out (at most ``MESSAGES_MAX_RECIPIENTS`` recipients)."""

    message_id: AnyId
    sender_id: AnyId
    recipient_ids: list[UserId]
    message_content: StrictStr = Field("", max_length=validation.MAX_CONTENT["push"])
    sender_info: SenderInfo = Field(default_factory=SenderInfo)
    room_id: AnyId = None  # type: ignore[assignment]

    @field_validator("recipient_ids", mode="before")
    @classmethod
    def _recipients_cap(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("must be a list of user ids")
        if len(value) > settings.MESSAGES_MAX_RECIPIENTS:
            raise ValueError(f"at most {settings.MESSAGES_MAX_RECIPIENTS} recipients in one message")
        return value


def _contact(rule: Any) -> Any:
    def check(value: Any) -> Any:
        if value in (None, ""):
            return ""
        return rule(value)

    return BeforeValidator(check)


def _email(value: Any) -> str:
    if error := validation.email_error(value):
        raise ValueError(error)
    return value


def _phone(value: Any) -> str:
    if (number := validation.phone_number(value)) is None:
        raise ValueError(validation.PHONE_RULE)
    return number


class UserSettingsRequest(Closed):
    """``PUT /api/v1/users/<user_id>/settings``: ``null`` (or ``""``) clears ``email`` or ``phone``."""

    email: Annotated[StrictStr | None, _contact(_email)] = None
    phone: Annotated[StrictStr | None, _contact(_phone)] = Field(None, description="E.164, e.g. +14155550100")
    # Optional but never null (the defaults are not validated; an unset switch is left as it is).
    push_enabled: StrictBool = None  # type: ignore[assignment]
    email_enabled: StrictBool = None  # type: ignore[assignment]
    sms_enabled: StrictBool = None  # type: ignore[assignment]


class DeviceRequest(Closed):
    """``POST /api/v1/devices``: the token is checked against its platform's format."""

    user_id: UserId
    platform: Annotated[Literal["apns", "fcm", "expo"], one_of(Platform.values)]
    token: StrictStr
    app_id: StrictStr = Field(
        min_length=1, max_length=255, description="the APNs topic (bundle id), or the FCM or Expo project"
    )

    @field_validator("token", mode="before")
    @classmethod
    def _token(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            raise ValueError("is required")
        platform = info.data.get("platform")
        if platform is not None and (error := token_error(platform, value)):
            raise ValueError(error)
        return value

    @field_validator("app_id", mode="before")
    @classmethod
    def _app_id(cls, value: Any) -> Any:
        if not isinstance(value, str) or not 1 <= len(value) <= 255:
            raise ValueError("is required: the APNs topic (bundle id), or the FCM or Expo project")
        return value


# --- responses ------------------------------------------------------------------


class ErrorOut(Schema):
    """Every error answer: ``fields`` names each bad input field (429s add ``reason`` and ``retry_after``)."""

    error: str
    fields: dict[str, str] | None = None
    reason: str | None = None
    retry_after: int | None = None


class AttemptOut(Schema):
    at: str
    provider: str
    outcome: str
    error: str | None
    provider_id: str | None


class NotificationOut(Schema):
    id: str
    type: str
    status: str
    created_at: str
    updated_at: str
    sent_at: str | None
    error: str | None
    details: dict[str, Any] | None = None


class SendOut(NotificationOut):
    duplicate: bool = Field(description="true: the idempotency key was seen before, this is the first notification")


class StatusOut(NotificationOut):
    attempts: list[AttemptOut]


class DeviceOut(Schema):
    id: int
    user_id: str
    platform: str
    app_id: str
    token: str = Field(description="masked")
    created_at: str
    expired_at: str | None


class DeviceListOut(Schema):
    devices: list[DeviceOut]


class UnregisteredOut(Schema):
    result: Literal["unregistered"]


class QueuedOut(Schema):
    queued: bool


class UserSettingsOut(Schema):
    user_id: str
    email: str
    phone: str
    push_enabled: bool
    email_enabled: bool
    sms_enabled: bool


ERRORS: dict[int, type[Schema]] = {code: ErrorOut for code in (400, 401, 404, 405, 413, 414, 429, 500, 503)}
"""The error answers every operation may give, for its ``response=`` map (and so the OpenAPI document)."""


# --- errors ---------------------------------------------------------------------

# Where a parameter's location and name lead pydantic's ``loc`` (ninja's ``("body", "payload", ...)``).
_LOCATIONS = {"body", "query", "path", "header", "cookie"}
_MESSAGES = {"missing": "is required", "extra_forbidden": "unknown field"}


def field_errors(errors: list[dict[str, Any]], body_params: Collection[str] = ("payload",)) -> dict[str, str]:
    """The API's ``fields`` object for pydantic's ``errors``: the first message for each dotted field path.

    ``body_params`` are the views' body parameter names, dropped from paths.
    """
    fields: dict[str, str] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc and loc[0] in _LOCATIONS:
            loc = loc[1:]
        if loc and loc[0] in body_params:
            loc = loc[1:]
        ctx = error.get("ctx") or {}
        name = ".".join(loc) or ctx.get("field") or "body"
        if error.get("type") == "value_error" and "error" in ctx:
            message = str(ctx["error"])
        else:
            message = _MESSAGES.get(error.get("type", ""), error.get("msg", "is not valid"))
        fields.setdefault(name, message)
    return fields
