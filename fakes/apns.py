"""APNs: HTTP/2 over TLS, ``POST /3/device/<token>``, answered like api.push.apple.com.

Checks made in the order Apple documents its errors: method and path, provider
authentication (a ``bearer`` JWT with an ES256 header, ``kid``, ``iss`` and a
``iat`` under an hour old, or a client certificate), ``apns-topic``, the
device token (64 hex digits), header values, payload size (4096 bytes) and
JSON; then the :class:`~fakes.control.Controller` rules. Every answer carries
``apns-id``; errors a JSON ``{"reason": ...}`` (410 adds ``timestamp`` in ms).
The fake advertises 1000 concurrent streams per connection, as APNs does.

Pointing aioapns 4.0 at the fake
--------------------------------
aioapns has no base-URL setting: its pool opens connections to
``pool.protocol_class.APNS_SERVER``/``APNS_PORT`` (class attributes of the
protocol class chosen by ``use_sandbox``), with the pool's ``ssl_context``.
So, without patching anything global:

* pass ``ssl_context=ssl.create_default_context(cafile=APNS_CA_FILE)`` to
  ``APNs(...)`` (a public argument) so the fake's certificate is trusted, and
* give that client's pool a subclass of its protocol class with the fake's
  host and port: :func:`zerver.lib.push.apns.point_at` does exactly this::

      client = APNs(key=..., key_id=..., team_id=..., topic=..., ssl_context=ctx)
      point_at(client, "127.0.0.1", port)

Token auth (``key=``) and certificate auth (``client_cert=APNS_CLIENT_CERT``,
mTLS with a certificate signed by the fake's CA) are both accepted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded, StreamReset
from h2.exceptions import H2Error
from h2.settings import SettingCodes, Settings

from fakes.base import Fake, mask, serve_app
from fakes.control import DEFAULT_RECORD_LIMIT, Decision, control_app
from fakes.tls import TlsFiles, generate_tls_files

logger = logging.getLogger(__name__)

MAX_PAYLOAD = 4096
MAX_CONCURRENT_STREAMS = 1000
TOKEN_RE = re.compile(r"[0-9a-fA-F]{64}")
PATH_RE = re.compile(r"/3/device/([^/?]*)")
PUSH_TYPES = {
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
}
PROVIDER_TOKEN_MAX_AGE = 3600

# Apple's reasons and their HTTP statuses.
REASONS = {
    "BadCollapseId": 400,
    "BadDeviceToken": 400,
    "BadExpirationDate": 400,
    "BadMessageId": 400,
    "BadPriority": 400,
    "BadTopic": 400,
    "DeviceTokenNotForTopic": 400,
    "DuplicateHeaders": 400,
    "IdleTimeout": 400,
    "InvalidPushType": 400,
    "MissingDeviceToken": 400,
    "MissingTopic": 400,
    "PayloadEmpty": 400,
    "TopicDisallowed": 400,
    "BadCertificate": 403,
    "BadCertificateEnvironment": 403,
    "ExpiredProviderToken": 403,
    "Forbidden": 403,
    "InvalidProviderToken": 403,
    "MissingProviderToken": 403,
    "BadPath": 404,
    "MethodNotAllowed": 405,
    "ExpiredToken": 410,
    "Unregistered": 410,
    "PayloadTooLarge": 413,
    "TooManyProviderTokenUpdates": 429,
    "TooManyRequests": 429,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "Shutdown": 503,
}
# The reason a rule with only a status answers.
REASON_FOR_STATUS = {
    400: "BadDeviceToken",
    403: "Forbidden",
    404: "BadPath",
    405: "MethodNotAllowed",
    410: "Unregistered",
    413: "PayloadTooLarge",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
}


def generate_auth_key() -> str:
    """A fresh ES256 (P-256) provider key, PEM, like the ``.p8`` file Apple hands out."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class ApnsFake(Fake):
    """The APNs fake. ``auth_key``/``key_id``/``team_id``/``topic`` are credentials it knows.

    A JWT whose ``kid`` is ``key_id`` must be signed by ``auth_key``; another
    ``kid`` is accepted on its form alone unless ``strict_keys`` is set.
    """

    name = "apns"

    def __init__(
        self, record_limit: int = DEFAULT_RECORD_LIMIT, directory: Path | None = None, strict_keys: bool = False
    ) -> None:
        super().__init__(record_limit)
        self.topic = "com.example.notifications"
        self.team_id = "FAKETEAM01"
        self.key_id = "FAKEKEY001"
        self.auth_key = generate_auth_key()
        self._public_keys = {self.key_id: serialization.load_pem_private_key(self.auth_key.encode(), None).public_key()}
        self.strict_keys = strict_keys
        self._verified_tokens: dict[str, float] = {}  # authorization header -> its iat
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="fake-apns-")
        self.directory = Path(directory or self._tmp.name)  # type: ignore[union-attr]
        self.tls: TlsFiles = generate_tls_files(self.directory, self.topic)
        self.auth_key_file = self.directory / f"AuthKey_{self.key_id}.p8"
        self.auth_key_file.write_text(self.auth_key)
        self.auth_key_file.chmod(0o600)
        self.control_port = 0
        self._server: asyncio.Server | None = None
        self._control_runner: web.AppRunner | None = None
        self._connections: set[_ApnsProtocol] = set()

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    async def start(self, host: str = "127.0.0.1", port: int = 0, control_port: int = 0) -> None:
        self.host = host
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ApnsProtocol(self), host, port, ssl=self.tls.server_context(), reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._control_runner, self.control_port = await serve_app(control_app(self.control), host, control_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await self._server.wait_closed()
            self._server = None
        if self._control_runner is not None:
            await self._control_runner.cleanup()
            self._control_runner = None

    def env(self) -> dict[str, str]:
        return {
            "APNS_HOST": self.host,
            "APNS_PORT": str(self.port),
            "APNS_CA_FILE": str(self.ca_file),
            "APNS_CLIENT_CERT": str(self.tls.client_cert),
            "APNS_AUTH_KEY_FILE": str(self.auth_key_file),
            "APNS_KEY_ID": self.key_id,
            "APNS_TEAM_ID": self.team_id,
            "APNS_TOPIC": self.topic,
            "APNS_CONTROL_URL": self.control_url,
        }

    # The checks --------------------------------------------------------------------

    def check_provider_token(self, authorization: str | None, has_client_cert: bool) -> str | None:
        """The reason to refuse the request's provider authentication, or None.

        Clients reuse one token for up to an hour, so a verified one is
        remembered (by its text) and only its age is checked again.
        """
        if authorization is None:
            return None if has_client_cert else "MissingProviderToken"
        known = self._verified_tokens.get(authorization)
        if known is not None:
            return "ExpiredProviderToken" if known < time.time() - PROVIDER_TOKEN_MAX_AGE else None
        reason = self._check_jwt(authorization)
        if reason is None:
            if len(self._verified_tokens) >= 1000:
                self._verified_tokens.clear()
            iat = jwt.decode(authorization.partition(" ")[2], options={"verify_signature": False})["iat"]
            self._verified_tokens[authorization] = float(iat)
        return reason

    def _check_jwt(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return "InvalidProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            if header.get("alg") != "ES256" or not kid:
                return "InvalidProviderToken"
            key = self._public_keys.get(kid)
            if key is None and self.strict_keys:
                return "InvalidProviderToken"
            claims = jwt.decode(
                token, key=key, algorithms=["ES256"], options={"verify_signature": key is not None, "verify_iat": False}
            )
        except jwt.PyJWTError:
            return "InvalidProviderToken"
        if not claims.get("iss") or not isinstance(claims.get("iat"), int | float):
            return "InvalidProviderToken"
        if claims["iat"] < time.time() - PROVIDER_TOKEN_MAX_AGE:
            return "ExpiredProviderToken"
        return None

    def check(self, headers: dict[str, str], body: bytes, has_client_cert: bool) -> tuple[str | None, str | None]:
        """(device token or None, reason to refuse or None) for one request, before the rules."""
        match = PATH_RE.fullmatch(headers.get(":path", ""))
        token = match.group(1) if match else None
        if headers.get(":method") != "POST":
            return token, "MethodNotAllowed"
        if match is None:
            return token, "BadPath"
        reason = self.check_provider_token(headers.get("authorization"), has_client_cert)
        if reason:
            return token, reason
        if not headers.get("apns-topic"):
            return token, "MissingTopic"
        if not token:
            return token, "MissingDeviceToken"
        if not TOKEN_RE.fullmatch(token):
            return token, "BadDeviceToken"
        reason = _check_headers(headers)
        if reason:
            return token, reason
        if len(body) > MAX_PAYLOAD:
            return token, "PayloadTooLarge"
        if not body:
            return token, "PayloadEmpty"
        try:
            payload = json.loads(body)
        except ValueError:
            return token, "PayloadEmpty"
        if not isinstance(payload, dict):
            return token, "PayloadEmpty"
        return token, None

    def respond(self, headers: dict[str, str], body: bytes, has_client_cert: bool) -> tuple[int, str | None, Decision]:
        """(status, reason, decision) for one complete request, and its record."""
        token, reason = self.check(headers, body, has_client_cert)
        status = REASONS.get(reason, 400) if reason else 200
        decision = Decision()
        if reason is None:
            decision = self.control.decide(token)
            if decision.error is not None:
                reason, status = decision.error, decision.status or REASONS.get(decision.error, 400)
            elif decision.status is not None:
                reason, status = REASON_FOR_STATUS.get(decision.status, "InternalServerError"), decision.status
        try:
            payload: Any = json.loads(body) if body else None
        except ValueError:
            payload = body.decode(errors="replace")
        self.control.record(
            "notification",
            token,
            reason or "ok",
            status=status,
            headers={k: v for k, v in headers.items() if not k.startswith(":")},
            payload=payload,
            auth="certificate" if has_client_cert and "authorization" not in headers else "token",
        )
        if reason is not None and status >= 500:
            logger.info("fake APNs answered %d %s for %s", status, reason, mask(token))
        return status, reason, decision


_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _check_headers(headers: dict[str, str]) -> str | None:
    """Apple's checks of the optional headers, which the fake records as sent."""
    if "apns-id" in headers and not _UUID_RE.fullmatch(headers["apns-id"]):
        return "BadMessageId"
    if headers.get("apns-priority", "10") not in {"1", "5", "10"}:
        return "BadPriority"
    if "apns-push-type" in headers and headers["apns-push-type"] not in PUSH_TYPES:
        return "InvalidPushType"
    if "apns-expiration" in headers and not headers["apns-expiration"].isdigit():
        return "BadExpirationDate"
    if len(headers.get("apns-collapse-id", "").encode()) > 64:
        return "BadCollapseId"
    return None


class _ApnsProtocol(asyncio.Protocol):
    """One client connection: HTTP/2 with many concurrent streams, each answered in its own task."""

    def __init__(self, fake: ApnsFake) -> None:
        self.fake = fake
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.has_client_cert = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.has_client_cert = bool(transport.get_extra_info("peercert"))
        self.fake._connections.add(self)
        self.conn.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS}
        )
        self.conn.initiate_connection()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fake._connections.discard(self)
        for task in self.tasks:
            task.cancel()
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.conn.close_connection()
            self.flush()
            self.transport.close()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except H2Error as e:
            logger.warning("fake APNs: HTTP/2 error from client: %r", e)
            self.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
                if event.stream_ended is not None:
                    self.request_complete(event.stream_id)
            elif isinstance(event, DataReceived):
                if event.stream_id in self.streams:
                    self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_ended is not None:
                    self.request_complete(event.stream_id)
            elif isinstance(event, StreamEnded):
                pass  # handled through the stream_ended attribute of the event that ended it
            elif isinstance(event, StreamReset):
                self.streams.pop(event.stream_id, None)
            elif isinstance(event, ConnectionTerminated):
                if self.transport is not None:
                    self.transport.close()
        self.flush()

    def request_complete(self, stream_id: int) -> None:
        headers, body = self.streams.pop(stream_id)
        status, reason, decision = self.fake.respond(headers, bytes(body), self.has_client_cert)
        apns_id = headers.get("apns-id") or str(uuid.uuid4())
        if decision.delay > 0:
            task = asyncio.get_running_loop().create_task(
                self.answer_later(decision.delay, stream_id, apns_id, status, reason, decision)
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            self.answer(stream_id, apns_id, status, reason, decision)

    async def answer_later(
        self, delay: float, stream_id: int, apns_id: str, status: int, reason: str | None, decision: Decision
    ) -> None:
        await asyncio.sleep(delay)
        self.answer(stream_id, apns_id, status, reason, decision)
        self.flush()

    def answer(self, stream_id: int, apns_id: str, status: int, reason: str | None, decision: Decision) -> None:
        if self.transport is None:
            return
        headers = [(":status", str(status)), ("apns-id", apns_id)]
        if reason is None:
            try:
                self.conn.send_headers(stream_id, headers, end_stream=True)
            except H2Error:
                pass  # the client reset the stream meanwhile
            return
        error: dict[str, Any] = {"reason": reason}
        if status == 410:
            error["timestamp"] = int(time.time() * 1000)
        data = json.dumps(error).encode()
        headers.append(("content-type", "application/json; charset=utf-8"))
        headers.append(("content-length", str(len(data))))
        if decision.retry_after is not None:
            headers.append(("retry-after", str(max(0, round(decision.retry_after)))))
        try:
            self.conn.send_headers(stream_id, headers)
            self.conn.send_data(stream_id, data, end_stream=True)
        except H2Error:
            pass
