"""One backend object per provider and process, made on first use."""

from __future__ import annotations

from functools import cache

from zerver.lib.push.common import PushBackend


@cache
def backend_for(platform: str) -> PushBackend:
    if platform == "apns":
        from zerver.lib.push.apns import ApnsBackend

        return ApnsBackend()
    if platform == "fcm":
        from zerver.lib.push.fcm import FcmBackend

        return FcmBackend()
    if platform == "expo":
        from zerver.lib.push.expo import ExpoBackend

        return ExpoBackend()
    raise ValueError(f"no push backend for platform {platform!r}")
