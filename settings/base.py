"""Settings for the notification service.

Every value can be set from the environment; the defaults run a development
instance with nothing else installed (SQLite in ``var/``, RabbitMQ on
localhost), so ``./manage.py migrate`` works on a fresh clone.
"""

import os
from pathlib import Path

import dj_database_url

from zerver.lib.secrets import DEV_SECRET_KEY, dev_push_token_hash_key, dev_push_token_key

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: str = "") -> list[str]:
    return [v.strip() for v in os.environ.get(name, default).split(",") if v.strip()]


# Off unless asked for (scripts/dev does): outside DEBUG the checks in zerver/checks.py refuse to start
# the web app and the workers on development secrets (`./manage.py generate_secrets` makes real ones).
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or DEV_SECRET_KEY
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
# Behind the TLS-terminating proxy production runs behind (see deploy/): cookies only over HTTPS.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", False) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "zerver",
    "bouncer",
    "workers.apps.WorkersConfig",
]

MIDDLEWARE = [
    "zerver.middleware.JsonErrorMiddleware",  # first: JSON errors, a bad Host never reaches a debug page
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JS under gunicorn, from STATIC_ROOT (`./manage.py collectstatic`), with DEBUG off.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "zerver.urls"

# --- API limits (zerver.middleware, zerver.lib.validation) ----------------------
# Bodies over this many bytes get 413 JSON; Django's own form limit follows it.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# URLs (path and query) longer than this get 414 JSON.
API_MAX_URL_LENGTH = env_int("API_MAX_URL_LENGTH", 4096)
# JSON bodies nested deeper than this get 400.
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 32)
# At most this many recipient_ids in one POST /api/v1/messages.
MESSAGES_MAX_RECIPIENTS = env_int("MESSAGES_MAX_RECIPIENTS", 1000)

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "zerver.wsgi.application"

# DATABASE_URL, e.g. mysql://root@127.0.0.1:3306/notifications; SQLite otherwise.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'dev.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the workers share the file. WAL lets readers go on while one writes;
    # transactions take the write lock when they begin (IMMEDIATE), so two writers queue for it
    # (up to the timeout) instead of one failing with "database is locked" halfway through.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"charset": "utf8mb4", "init_command": "SET sql_mode='STRICT_TRANS_TABLES'"}
    )
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
# Compressed, content-hashed file names (cached for ever by browsers) once collectstatic has run.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- Queues -----------------------------------------------------------------
# "rabbitmq" (the default) or "inline": with "inline", published events are
# handed to their worker in the publishing process, so development needs no
# broker (as Zulip does in development).
QUEUE_BACKEND = os.environ.get("QUEUE_BACKEND", "rabbitmq")
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@localhost:5672/")
# How long a publisher keeps trying to reach a broker that went away, in total.
RABBITMQ_RECONNECT_SECONDS = env_float("RABBITMQ_RECONNECT_SECONDS", 10.0)
RABBITMQ_HEARTBEAT = env_int("RABBITMQ_HEARTBEAT", 60)
# Retry backoff: after failed attempt n, a random wait up to base * 2**(n-1) seconds ("full jitter"),
# never more than the cap (so whatever waited out an outage is retried within a minute of its end), never less
# than a provider's Retry-After.
QUEUE_RETRY_BASE_SECONDS = env_float("QUEUE_RETRY_BASE_SECONDS", 1.0)
QUEUE_RETRY_MAX_SECONDS = env_float("QUEUE_RETRY_MAX_SECONDS", 60.0)
# The longest Retry-After honoured (a longer one waits this long); waits past the cap get queues of their own.
QUEUE_RETRY_AFTER_MAX_SECONDS = env_float("QUEUE_RETRY_AFTER_MAX_SECONDS", 3600.0)
# Events that carry a deadline (every notification's) retry until it; others give up after this many retries.
QUEUE_MAX_RETRIES = env_int("QUEUE_MAX_RETRIES", 5)
# How long a notification may take to be delivered, per channel, unless the request gives a `ttl`.
DELIVERY_TTL_SECONDS = {
    "push": env_float("PUSH_TTL_SECONDS", 3600.0),
    "email": env_float("EMAIL_TTL_SECONDS", 86400.0),
    "sms": env_float("SMS_TTL_SECONDS", 86400.0),
}
# The reaper (run by outbox_relay every REAPER_INTERVAL_SECONDS) re-enqueues an unfinished notification
# that has not moved for REAPER_STRANDED_SECONDS (longer than any retry wait), and expires those past
# their deadline. /health turns unhealthy when the oldest unfinished one is older than the last setting.
REAPER_INTERVAL_SECONDS = env_float("REAPER_INTERVAL_SECONDS", 30.0)
REAPER_STRANDED_SECONDS = env_float("REAPER_STRANDED_SECONDS", 900.0)
HEALTH_MAX_UNFINISHED_SECONDS = env_float("HEALTH_MAX_UNFINISHED_SECONDS", 1800.0)
# A redelivered event that was in hand this many times when its worker died is dead-lettered (it crashes it).
QUEUE_MAX_REDELIVERIES = env_int("QUEUE_MAX_REDELIVERIES", 10)
# The largest event body published or consumed; a larger one is refused at publish and dead-lettered at consume.
QUEUE_MAX_MESSAGE_BYTES = env_int("QUEUE_MAX_MESSAGE_BYTES", 1024 * 1024)

# Zulip's sharding of the mobile queue: with N > 1 shards, events go to
# missedmessage_mobile_notifications_shard1..N by user id.
MOBILE_NOTIFICATIONS_SHARDS = env_int("MOBILE_NOTIFICATIONS_SHARDS", 1)
# Queues split into shards, and how many. Tests add their own.
SHARDED_QUEUES = {"missedmessage_mobile_notifications": MOBILE_NOTIFICATIONS_SHARDS}

# Where the `test` queue's worker appends what it consumed (one JSON line per event).
TEST_WORKER_OUTPUT = os.environ.get("TEST_WORKER_OUTPUT", str(BASE_DIR / "var" / "test_worker.jsonl"))

# --- Operations: metrics and health ---------------------------------------------
# Each worker process serves /metrics on WORKER_METRICS_BASE_PORT + the index of
# its queue (or shard) in `process_queue --list`; 0 turns worker metrics off.
WORKER_METRICS_BASE_PORT = env_int("WORKER_METRICS_BASE_PORT", 9100)
WORKER_METRICS_ADDR = os.environ.get("WORKER_METRICS_ADDR", "0.0.0.0")  # noqa: S104 (firewalled; see README)
# queue_depth is read from the broker at most once per this many seconds.
QUEUE_DEPTH_CACHE_SECONDS = env_float("QUEUE_DEPTH_CACHE_SECONDS", 5.0)
# Workers write a heartbeat at most this often, busy or idle; /health calls one stale after the second.
WORKER_HEARTBEAT_INTERVAL_SECONDS = env_float("WORKER_HEARTBEAT_INTERVAL_SECONDS", 5.0)
WORKER_HEARTBEAT_STALE_SECONDS = env_float("WORKER_HEARTBEAT_STALE_SECONDS", 60.0)

# --- Rate limits (zerver/lib/ratelimit.py) ----------------------------------------
# The counters live in Django's cache. Production sets REDIS_URL (e.g. redis://127.0.0.1:6379/0) so every
# web process shares them; without it each process counts alone in its memory (development).
REDIS_URL = os.environ.get("REDIS_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "notif"}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
RATE_LIMITS_ENABLED = env_bool("RATE_LIMITS_ENABLED", True)
# Per API client (an ApiClient's own figures win); a fan-out counts each recipient.
RATE_LIMIT_REQUESTS_PER_MINUTE = env_int("RATE_LIMIT_REQUESTS_PER_MINUTE", 600)
RATE_LIMIT_NOTIFICATIONS_PER_MINUTE = env_int("RATE_LIMIT_NOTIFICATIONS_PER_MINUTE", 6000)
# Per remote server of the bouncer (each call carries a batch, so fewer calls than notifications).
RATE_LIMIT_BOUNCER_REQUESTS_PER_MINUTE = env_int("RATE_LIMIT_BOUNCER_REQUESTS_PER_MINUTE", 3000)
# Failed authentications per source address, API and bouncer together; past it the address is refused.
RATE_LIMIT_AUTH_FAILURES_PER_MINUTE = env_int("RATE_LIMIT_AUTH_FAILURES_PER_MINUTE", 20)
# The workers /health expects a heartbeat from, comma-separated (shards spelled out, e.g.
# missedmessage_mobile_notifications_shard1); unset: every deployed queue and shard, as the units run them.
HEALTH_EXPECTED_WORKERS = (
    [q.strip() for q in os.environ["HEALTH_EXPECTED_WORKERS"].split(",") if q.strip()]
    if "HEALTH_EXPECTED_WORKERS" in os.environ
    else None
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"},
    },
    # Every record is scrubbed of token-shaped strings, configured secrets and URL passwords, as a safety net.
    "filters": {"scrub": {"()": "zerver.lib.masking.ScrubFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["scrub"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # pika logs each failed connection try as several ERROR lines and a traceback; the queue client and
    # the workers say it in one line ("cannot reach RabbitMQ at host:port (connection refused); retrying
    # in 4.0 s"), so pika's own records show only when debugging.
    "loggers": {"pika": {"level": "DEBUG" if os.environ.get("LOG_LEVEL") == "DEBUG" else "CRITICAL"}},
}

# --- E-mail -------------------------------------------------------------------
# With EMAIL_HOST set, mail goes out over SMTP; otherwise it is printed (development).
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "notifications@localhost")

# --- SMS ----------------------------------------------------------------------
# "console" logs messages (development); "twilio" posts to a Twilio-compatible REST API.
SMS_BACKEND = os.environ.get("SMS_BACKEND", "console")
SMS_API_URL = os.environ.get("SMS_API_URL", "https://api.twilio.com")
SMS_ACCOUNT_SID = os.environ.get("SMS_ACCOUNT_SID", "")
SMS_AUTH_TOKEN = os.environ.get("SMS_AUTH_TOKEN", "")
SMS_FROM_NUMBER = os.environ.get("SMS_FROM_NUMBER", "")
SMS_TIMEOUT = env_float("SMS_TIMEOUT", 10.0)

# --- Push ---------------------------------------------------------------------
# Fernet keys for push tokens at rest, newest first, comma-separated: to rotate, put a new key first,
# run `./manage.py rotate_token_keys`, then drop the old one. PUSH_TOKEN_HASH_KEY keys the lookup hash
# (it cannot rotate: tokens would have to be re-registered). `./manage.py generate_secrets` makes both;
# with DEBUG on and neither set, development derives them from SECRET_KEY.
PUSH_TOKEN_KEYS = env_list("PUSH_TOKEN_KEYS") or ([dev_push_token_key(SECRET_KEY)] if DEBUG else [])
PUSH_TOKEN_HASH_KEY = os.environ.get("PUSH_TOKEN_HASH_KEY") or (dev_push_token_hash_key(SECRET_KEY) if DEBUG else "")

# The push bouncer. Without PUSH_BOUNCER_URL the bouncer runs in this process
# ("local bouncer") with the provider credentials below; with it, this server
# sends through a remote bouncer as PUSH_BOUNCER_SERVER_UUID / _API_KEY.
PUSH_BOUNCER_URL = os.environ.get("PUSH_BOUNCER_URL", "")
PUSH_BOUNCER_SERVER_UUID = os.environ.get("PUSH_BOUNCER_SERVER_UUID", "")
PUSH_BOUNCER_API_KEY = os.environ.get("PUSH_BOUNCER_API_KEY", "")
PUSH_BOUNCER_TIMEOUT = env_float("PUSH_BOUNCER_TIMEOUT", 30.0)

# The push worker hands its batch to the bouncer in sub-batches of this many, recording each one's outcome
# as it comes back: a worker killed mid-batch re-sends at most one sub-batch.
PUSH_SUB_BATCH_SIZE = env_int("PUSH_SUB_BATCH_SIZE", 100)

# A circuit per provider and credential opens after this many consecutive transient failures, for this long:
# its pushes are held (retried later, never failed) until a probe gets through.
CIRCUIT_FAILURE_THRESHOLD = env_int("CIRCUIT_FAILURE_THRESHOLD", 5)
CIRCUIT_COOLDOWN_SECONDS = env_float("CIRCUIT_COOLDOWN_SECONDS", 30.0)

# Push providers. Endpoints are settings so development and tests can use the
# fakes (`./manage.py fakes` prints these variables for them).
APNS_HOST = os.environ.get("APNS_HOST", "")  # empty: Apple's (sandbox with APNS_USE_SANDBOX)
APNS_PORT = env_int("APNS_PORT", 443)
APNS_USE_SANDBOX = env_bool("APNS_USE_SANDBOX", False)
APNS_CA_FILE = os.environ.get("APNS_CA_FILE", "")  # extra CA to trust (the fake's)
APNS_AUTH_KEY_FILE = os.environ.get("APNS_AUTH_KEY_FILE", "")  # token auth: the .p8 key
APNS_KEY_ID = os.environ.get("APNS_KEY_ID", "")
APNS_TEAM_ID = os.environ.get("APNS_TEAM_ID", "")
APNS_CLIENT_CERT = os.environ.get("APNS_CLIENT_CERT", "")  # certificate auth: PEM with cert and key
APNS_TOPIC = os.environ.get("APNS_TOPIC", "")  # default topic; a device's app_id wins
APNS_CONCURRENCY = env_int("APNS_CONCURRENCY", 100)  # in flight per process: h2 slows with many open streams
FCM_SERVICE_ACCOUNT_FILE = os.environ.get("FCM_SERVICE_ACCOUNT_FILE", "")
FCM_URL = os.environ.get("FCM_URL", "")  # empty: Google's
FCM_POOL_SIZE = env_int("FCM_POOL_SIZE", 64)
EXPO_URL = os.environ.get("EXPO_URL", "https://exp.host")
EXPO_ACCESS_TOKEN = os.environ.get("EXPO_ACCESS_TOKEN", "")
# Expo asks to check receipts some minutes after sending; tickets wait this long.
EXPO_RECEIPT_DELAY_SECONDS = env_float("EXPO_RECEIPT_DELAY_SECONDS", 900.0)
# Expo keeps receipts about a day: a ticket still without one after this is closed as "unknown".
EXPO_RECEIPT_MAX_AGE_SECONDS = env_float("EXPO_RECEIPT_MAX_AGE_SECONDS", 86400.0)
PUSH_PROVIDER_TIMEOUT = env_float("PUSH_PROVIDER_TIMEOUT", 15.0)
# Honour HTTP(S)_PROXY and ~/.netrc for outgoing HTTP (see zerver.lib.http).
HTTP_TRUST_ENV = env_bool("HTTP_TRUST_ENV", False)
