"""FCM HTTP v1: ``POST /v1/projects/<project>/messages:send`` behind its own OAuth token endpoint.

The fake generates a service account (a fresh RSA key) whose ``token_uri`` is
the fake's ``POST /token``; that endpoint verifies the JWT-bearer assertion's
RS256 signature against the generated key's public half and issues access
tokens, which ``messages:send`` then requires (a self-signed JWT from the same
key is accepted too, as Google accepts it). Answers are FCM's: 200
``{"name": "projects/<p>/messages/<id>"}``, or a google.rpc error with an
``FcmError`` detail and FCM's HTTP status (UNREGISTERED 404, INVALID_ARGUMENT
400, QUOTA_EXCEEDED 429 with Retry-After, UNAVAILABLE 503, INTERNAL 500...).

Pointing firebase-admin 7.x at the fake
---------------------------------------
``credentials.Certificate(fake.service_account)`` makes google-auth fetch its
tokens from the fake, since the token URI comes from the service account.
The send URL has no option nor emulator variable: ``messaging`` builds it
once per app from the class constant ``_MessagingService.FCM_URL`` into the
per-app service's ``_fcm_url``. :func:`zerver.lib.push.fcm.point_at` sets that attribute
on one app's service, which leaves other apps and the module alone::

    app = firebase_admin.initialize_app(credentials.Certificate(sa), name="fake")
    point_at(app, fake.url)
    messaging.send_each(messages, app=app)

Note firebase-admin's own retries (urllib3, ``DEFAULT_RETRY_CONFIG``): 500
and 503 are retried 4 times with backoff 0, 1, 2, 4 s, or after Retry-After
when the answer has one; a 429 with Retry-After is retried the same way.

Not hermetic, and not the fake's doing: google-auth (2.4x) follows each token
refresh of a ``googleapis.com``-universe service account with a background
"Regional Access Boundary" lookup at ``iamcredentials.googleapis.com``. Offline
it fails at DNS, is logged as a urllib3 warning and cools down; nothing waits
on it. google-auth offers no switch for it short of another ``universe_domain``,
which would also replace the OAuth grant by self-signed JWTs.
"""

from __future__ import annotations

import itertools
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fakes.base import HttpFake, json_response, retry_after_header
from fakes.control import DEFAULT_RECORD_LIMIT

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
TOKEN_LIFETIME = 3600
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL, not a secret)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# FCM error code: (HTTP status, google.rpc status, message).
ERRORS = {
    "UNREGISTERED": (404, "NOT_FOUND", "Requested entity was not found."),
    "INVALID_ARGUMENT": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "SENDER_ID_MISMATCH": (403, "PERMISSION_DENIED", "SenderId mismatch"),
    "QUOTA_EXCEEDED": (429, "RESOURCE_EXHAUSTED", "Quota exceeded for sending messages."),
    "UNAVAILABLE": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "INTERNAL": (500, "INTERNAL", "Internal error encountered."),
    "THIRD_PARTY_AUTH_ERROR": (401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service"),
}
ERROR_FOR_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "THIRD_PARTY_AUTH_ERROR",
    403: "SENDER_ID_MISMATCH",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
# FCM answers QUOTA_EXCEEDED with a Retry-After; a rule may set its own.
DEFAULT_RETRY_AFTER = {"QUOTA_EXCEEDED": 1.0}


def rpc_error(http_status: int, rpc_status: str, message: str, fcm_code: str | None = None) -> dict[str, Any]:
    """A google.rpc error body, with an FcmError detail when ``fcm_code`` is given."""
    error: dict[str, Any] = {"code": http_status, "message": message, "status": rpc_status}
    if fcm_code:
        error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": fcm_code}]
    return {"error": error}


class FcmFake(HttpFake):
    """The FCM fake; ``service_account`` is the JSON dict for ``credentials.Certificate``."""

    name = "fcm"

    def __init__(self, record_limit: int = DEFAULT_RECORD_LIMIT, project_id: str = "fake-project") -> None:
        super().__init__(record_limit)
        self.project_id = project_id
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._public_key = self._key.public_key()
        self._key_id = secrets.token_hex(20)
        self.client_email = f"firebase-adminsdk@{project_id}.iam.gserviceaccount.com"
        self._access_tokens: dict[str, float] = {}
        self._ids = itertools.count(1)
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-fcm-")
        self.service_account_file = Path(self._tmp.name) / "service-account.json"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def send_url(self) -> str:
        return f"{self.url}/v1/projects/{self.project_id}/messages:send"

    @property
    def service_account(self) -> dict[str, str]:
        """A service-account JSON like Firebase's, with the fake's token URI (valid once started)."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self._key_id,
            "private_key": pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        await super().start(host, port)
        self.service_account_file.write_text(json.dumps(self.service_account, indent=2))
        self.service_account_file.chmod(0o600)

    def env(self) -> dict[str, str]:
        return {
            "FCM_URL": self.url,
            "FCM_SEND_URL": self.send_url,
            "FCM_PROJECT_ID": self.project_id,
            "FCM_SERVICE_ACCOUNT_FILE": str(self.service_account_file),
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.send)

    # OAuth ----------------------------------------------------------------------

    def _verify(self, assertion: str, audience: list[str] | None) -> dict[str, Any]:
        """The claims of a JWT signed with the service account's key; raises jwt.PyJWTError otherwise."""
        options = {"verify_aud": audience is not None, "require": ["iss", "iat", "exp"]}
        return jwt.decode(assertion, self._public_key, algorithms=["RS256"], audience=audience, options=options)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER:
            return json_response({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}, 400)
        try:
            # google-auth signs for Google's token endpoint whatever the token_uri; either is accepted.
            claims = self._verify(str(form.get("assertion", "")), audience=[self.token_uri, GOOGLE_TOKEN_URI])
        except jwt.PyJWTError as e:
            return json_response({"error": "invalid_grant", "error_description": f"Invalid JWT: {e}"}, 400)
        if claims["iss"] != self.client_email:
            return json_response({"error": "invalid_grant", "error_description": "Invalid issuer"}, 400)
        access_token = "ya29.fake-" + secrets.token_urlsafe(24)
        self._access_tokens[access_token] = time.time() + TOKEN_LIFETIME
        self.control.record("token", self.client_email, "ok", scope=claims.get("scope"))
        return json_response({"access_token": access_token, "expires_in": TOKEN_LIFETIME, "token_type": "Bearer"})

    def _authenticated(self, authorization: str) -> bool:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return False
        expires = self._access_tokens.get(credential)
        if expires is not None:
            return expires > time.time()
        try:  # a self-signed JWT from the service account's key
            self._verify(credential, audience=None)
        except jwt.PyJWTError:
            return False
        return True

    # messages:send ------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        headers = dict(request.headers)
        if not self._authenticated(request.headers.get("Authorization", "")):
            self.control.record("message", None, "UNAUTHENTICATED", status=401, headers=headers)
            message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
            return json_response(rpc_error(401, "UNAUTHENTICATED", message), 401)
        project = request.match_info["project"]
        if project != self.project_id:
            self.control.record("message", None, "PERMISSION_DENIED", status=403, headers=headers)
            message = f"Permission 'cloudmessaging.messages.create' denied on resource '//fcm/projects/{project}'"
            return json_response(rpc_error(403, "PERMISSION_DENIED", message), 403)
        try:
            body = await request.json()
            message = body["message"]
            targets = [k for k in ("token", "fid", "topic", "condition") if message.get(k)]
        except (ValueError, KeyError, TypeError, AttributeError):
            body, message, targets = None, None, []
        if len(targets) != 1:
            self.control.record("message", None, "INVALID_ARGUMENT", status=400, headers=headers, body=body)
            return self.error("INVALID_ARGUMENT", None, "Exactly one of token, fid, topic or condition is required.")
        target = message[targets[0]]
        decision = self.control.decide(target)
        await self.pause(decision.delay)
        if decision.fails:
            code = decision.error or ERROR_FOR_STATUS.get(decision.status or 500, "INTERNAL")
            status = decision.status or ERRORS.get(code, (500,))[0]
            self.control.record("message", target, code, status=status, headers=headers, body=body)
            retry_after = decision.retry_after if decision.retry_after is not None else DEFAULT_RETRY_AFTER.get(code)
            return self.error(code, retry_after, status=status)
        name = f"projects/{self.project_id}/messages/0:{int(time.time() * 1000)}%{next(self._ids):016x}"
        outcome = "ok" if not body.get("validate_only") else "validated"
        self.control.record("message", target, outcome, status=200, headers=headers, body=body, name=name)
        return json_response({"name": name})

    def error(
        self, code: str, retry_after: float | None, message: str | None = None, status: int | None = None
    ) -> web.Response:
        default_status, rpc_status, default_message = ERRORS.get(code, (500, "INTERNAL", "Internal error."))
        status = status or default_status
        body = rpc_error(status, rpc_status, message or default_message, code)
        return json_response(body, status, retry_after_header(retry_after))
