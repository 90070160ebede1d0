"""What every push provider backend shares: the message it is given and the result it returns.

A backend takes a batch of :class:`PushMessage` and returns one
:class:`PushResult` per message, in order. It never touches the database and
never raises for one device's failure: that is a result like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from zerver.lib.masking import scrub

DELIVERED = "delivered"
EXPIRED = "expired"  # the token is dead: stop using it
RETRY = "retry"  # transient: the same message may succeed later
FAILED = "failed"  # permanent for this message


@dataclass(frozen=True)
class PushMessage:
    """One push to one device.

    ``payload`` is the service's own shape: ``title``, ``body``, ``data``,
    ``badge``, ``sound``, ``category``, ``priority`` ("high"/"normal"),
    ``collapse_key``; or ``{"remove": [message ids]}`` for a data push that
    withdraws notifications already shown.
    """

    device_id: str
    token: str
    app_id: str
    payload: dict[str, Any]


@dataclass
class PushResult:
    outcome: str
    error: str = ""
    retry_after: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Providers quote the token in their errors (Expo: '"ExponentPushToken[…]" is not a registered push
        # notification recipient'); this text goes into attempts, notifications, answers and logs.
        self.error = scrub(self.error)


class PushBackend(Protocol):
    platform: str

    def send(self, messages: list[PushMessage]) -> list[PushResult]: ...


def is_remove(payload: dict[str, Any]) -> bool:
    return "remove" in payload


def alert_text(payload: dict[str, Any]) -> tuple[str, str]:
    return str(payload.get("title", "")), str(payload.get("body", ""))
