"""Settings for the test suite: MariaDB and RabbitMQ on this machine, short retry delays."""

import os

os.environ.setdefault("DATABASE_URL", "mysql://root@127.0.0.1:3306/notifications")
# Fixed secrets of the test suite's own (not derived from SECRET_KEY, so the production checks pass), set in
# the environment so the worker processes tests start read the same ones.
os.environ.setdefault("SECRET_KEY", "test-suite-secret-key-7f3c9a1e5b2d8f4a6c0e9b7d5a3f1c8e2b4d6f8a0c")
os.environ.setdefault("PUSH_TOKEN_KEYS", "dGVzdC1zdWl0ZS1wdXNoLXRva2VuLWtleS0wMTIzNDU=")
os.environ.setdefault("PUSH_TOKEN_HASH_KEY", "test-suite-push-token-hash-key-4e6a8c0b2d")

from settings.base import *

QUEUE_RETRY_BASE_SECONDS = 0.05
QUEUE_RETRY_MAX_SECONDS = 0.4
QUEUE_RETRY_AFTER_MAX_SECONDS = 6.4
RABBITMQ_RECONNECT_SECONDS = 2.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Two checkouts testing at once must not share a test database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":  # noqa: F405
    import hashlib

    _checkout = hashlib.sha1(str(BASE_DIR).encode()).hexdigest()[:6]  # noqa: F405, S324
    DATABASES["default"]["TEST"]["NAME"] = f"test_{DATABASES['default']['NAME']}_{_checkout}"  # noqa: F405

# Worker processes started by tests serve metrics only when a test gives them a port.
WORKER_METRICS_BASE_PORT = env_int("WORKER_METRICS_BASE_PORT", 0)  # noqa: F405

# Rate-limit counters in the real Redis, as in production, under a prefix of this test run's own (children
# of a test inherit it through the environment), so runs side by side never share counters; the autouse
# fixture in tests/conftest.py deletes this run's keys around each test.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("TEST_CACHE_KEY_PREFIX", f"test-{os.getpid()}-{os.urandom(4).hex()}")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": os.environ["TEST_CACHE_KEY_PREFIX"],
    }
}
# A test's own burst of requests (hundreds in a second) is no client's load: the limits' tests set theirs.
RATE_LIMIT_REQUESTS_PER_MINUTE = RATE_LIMIT_NOTIFICATIONS_PER_MINUTE = 100_000
RATE_LIMIT_BOUNCER_REQUESTS_PER_MINUTE = 100_000
# The tests render admin pages without running collectstatic first.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
# Nothing is collected for the tests: WhiteNoise looks files up per request instead of scanning an
# absent STATIC_ROOT at start (which warns once per test client).
WHITENOISE_AUTOREFRESH = True
