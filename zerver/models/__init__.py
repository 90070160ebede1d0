from zerver.models.clients import ApiClient
from zerver.models.devices import Platform, PushDevice
from zerver.models.notifications import (
    Attempt,
    IllegalTransition,
    Notification,
    NotificationType,
    Status,
    Template,
)
from zerver.models.outbox import OutboxEvent
from zerver.models.users import UserSettings
from zerver.models.workers import WorkerHeartbeat

__all__ = [
    "ApiClient",
    "Attempt",
    "IllegalTransition",
    "Notification",
    "NotificationType",
    "OutboxEvent",
    "Platform",
    "PushDevice",
    "Status",
    "Template",
    "UserSettings",
    "WorkerHeartbeat",
]
