"""The end-to-end benchmark behind ``./manage.py bench``.

It runs the real thing on this machine: the provider fakes in their own
process, users and devices in the database, events published through the
real publish path, ``process_queue`` worker processes (one per shard), and
the bouncer in-process or over HTTP. Then it waits until every notification
is accounted for, in the database and at the fakes, and reports what it saw.
Nothing here is asserted on time: the figures are printed, and the command
fails only if a notification was lost or delivered twice.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.test.utils import override_settings
from django.utils import timezone

from bouncer.models import RemotePushDevice, RemoteServer
from zerver.actions.notifications import delivery_event
from zerver.lib import sandbox
from zerver.lib.push.bouncer_client import LOCAL_SERVER_UUID
from zerver.lib.queue import (
    EMAIL_NOTIFICATIONS_QUEUE,
    MOBILE_NOTIFICATIONS_QUEUE,
    SMS_NOTIFICATIONS_QUEUE,
    queue_json_publish_many,
    shard_queue_names,
)
from zerver.lib.secrets import new_secrets
from zerver.models import ApiClient, Attempt, Notification, PushDevice

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH_CLIENT = "bench"
PUBLISH_CHUNK = 500
QUEUE_OF_MODE = {"push": MOBILE_NOTIFICATIONS_QUEUE, "email": EMAIL_NOTIFICATIONS_QUEUE, "sms": SMS_NOTIFICATIONS_QUEUE}


@dataclass
class Options:
    count: int = 1000
    mode: str = "push"  # push | email | sms
    mix: dict[str, int] = field(default_factory=lambda: {"expo": 1, "apns": 1, "fcm": 1})
    workers: int = 1
    bouncer: str = "local"  # local | http
    faults: float = 0.0  # share of provider requests answered 429/503
    rate: float = 0.0  # events published per second; 0 publishes as fast as it can
    timeout: float = 600.0


@dataclass
class Run:
    """What a run leaves behind for the report."""

    options: Options
    started: float = 0.0
    published_in: float = 0.0
    finished: float = 0.0
    worker_cpu: float = 0.0
    worker_peak_rss_kb: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    accepted_at: dict[str, float] = field(default_factory=dict)
    provider_of: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def parse_mix(text: str) -> dict[str, int]:
    """``expo=2,apns=1`` (or ``expo,apns``) -> weights per platform."""
    mix: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in ("apns", "fcm", "expo"):
            raise ValueError(f"unknown provider {name!r}: use apns, fcm, expo")
        mix[name] = int(weight or 1)
    return mix


def token_for(platform: str, n: int) -> str:
    if platform == "apns":
        return f"{n:064x}"
    if platform == "fcm":
        return f"bench{n:07d}:" + "B" * 140
    return f"ExponentPushToken[bench-{n}]"


# --- The processes -------------------------------------------------------------------


class Processes:
    """The fakes, the bouncer (over HTTP) and the workers, each a child process of the bench."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.directory = Path(tempfile.mkdtemp(prefix="bench-"))

    def spawn(self, args: list[str], env: dict[str, str], name: str) -> subprocess.Popen:
        log = open(self.directory / f"{name}.log", "w")
        child = subprocess.Popen(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.children.append(child)
        return child

    def start_fakes(self, record_limit: int) -> dict[str, str]:
        env_file = self.directory / "fakes.env"
        self.spawn(
            ["fakes", "--env-file", str(env_file), "--record-limit", str(record_limit)], dict(os.environ), "fakes"
        )
        self.wait(lambda: env_file.exists() and env_file.read_text().strip(), "fakes")
        return dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)

    def start_bouncer(self, env: dict[str, str], port: int) -> str:
        self.spawn(["runserver", "--noreload", f"127.0.0.1:{port}"], env, "bouncer")
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return requests.get(url + "/health", timeout=1) is not None
            except requests.RequestException:
                return False

        self.wait(answers, "bouncer")
        return url

    def wait(self, ready: Any, name: str, seconds: float = 30) -> None:
        """Until ``ready()`` is true, or fail pointing at the child's log."""
        deadline = time.monotonic() + seconds
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {name} did not start; see {self.directory / (name + '.log')}")
            time.sleep(0.1)

    def start_workers(self, queues: list[str], env: dict[str, str]) -> None:
        for n, queue in enumerate(queues):
            self.workers.append(self.spawn(["process_queue", f"--queue_name={queue}"], env, f"worker{n}"))

    def worker_usage(self) -> tuple[float, int]:
        """CPU seconds (user + system) of all workers, and the largest peak RSS (kB) of one."""
        ticks = os.sysconf("SC_CLK_TCK")
        cpu, peak = 0.0, 0
        for worker in self.workers:
            try:
                fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / ticks
                for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except (OSError, IndexError, ValueError):
                pass
        return cpu, peak

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Setting up ------------------------------------------------------------------------


def create_devices(client: ApiClient, options: Options, server: RemoteServer) -> dict[str, str]:
    """One user with one device per notification, platforms dealt out by the mix; returns user -> platform."""
    cycle = [platform for platform, weight in options.mix.items() for _ in range(weight)]
    platform_of = {f"bench-{n}": cycle[n % len(cycle)] for n in range(options.count)}
    app_id = settings.APNS_TOPIC or "com.example.notifications"
    devices, remote = [], []
    for n, (user, platform) in enumerate(platform_of.items()):
        device = PushDevice(client=client, user_id=user, platform=platform, app_id=app_id)
        device.token = token_for(platform, n)
        devices.append(device)
    PushDevice.objects.bulk_create(devices, batch_size=2000)  # ids come back (RETURNING) on MariaDB and SQLite
    # The bouncer's side of registration, in bulk (the register event does it one device at a time).
    for n, device in enumerate(devices):
        copy = RemotePushDevice(
            server=server,
            client_id=str(client.pk),
            device_id=str(device.pk),
            user_id=device.user_id,
            platform=device.platform,
            app_id=app_id,
        )
        copy.token = token_for(device.platform, n)
        remote.append(copy)
    RemotePushDevice.objects.bulk_create(remote, batch_size=2000)
    return platform_of


def make_notifications(client: ApiClient, options: Options, first: int, count: int) -> list[Notification]:
    now = timezone.now()  # restamped when each is published
    fields = {
        "push": lambda n: {"recipient": f"bench-{n}", "content": {"title": "Bench", "body": f"notification {n}"}},
        "email": lambda n: {"recipient": f"bench-{n}@example.com", "subject": f"Bench {n}", "content": f"mail {n}"},
        "sms": lambda n: {"recipient": f"+1555{n:07d}", "content": f"notification {n}"},
    }[options.mode]
    rows = [
        Notification(client=client, type=options.mode, created_at=now, **fields(n)) for n in range(first, first + count)
    ]
    Notification.objects.bulk_create(rows, batch_size=2000)
    return rows


# --- Watching ----------------------------------------------------------------------------


def fake_urls(env: dict[str, str]) -> dict[str, str]:
    """Where each fake's control API is."""
    return {
        "apns": env["APNS_CONTROL_URL"],
        "fcm": env["FCM_URL"],
        "expo": env["EXPO_URL"],
        "email": env["SMTP_CONTROL_URL"],
        "sms": env["SMS_API_URL"],
    }


def fake_counts(urls: dict[str, str]) -> dict[str, dict[str, int]]:
    return {name: requests.get(url + "/_fake/stats", timeout=10).json()["counts"] for name, url in urls.items()}


def fake_records(url: str) -> list[dict[str, Any]]:
    return requests.get(url + "/_fake/received", timeout=60).json()


def settled_count(client: ApiClient) -> int:
    return Notification.objects.filter(client=client, status__in=("sent", "failed")).count()


def notification_id_of(record: dict[str, Any]) -> str | None:
    """The notification a fake's record belongs to, from the payload the service sent."""
    if "payload" in record:  # APNs
        return (record.get("payload") or {}).get("notification_id")
    if "message" in record and isinstance(record["message"], dict):  # Expo
        return (record["message"].get("data") or {}).get("notification_id")
    body = record.get("body")
    if isinstance(body, dict):  # FCM
        return ((body.get("message") or {}).get("data") or {}).get("notification_id")
    return None


# --- The run ------------------------------------------------------------------------------


def run(options: Options, progress: Any = None) -> Run:
    """One benchmark run, on a RabbitMQ vhost and a database of its own, both removed afterwards.

    Whatever else the broker and the database server hold (a dev stack's
    queues, dead letters and rows) is never read, changed or deleted.
    """
    result = Run(options)
    with sandbox.private_vhost("bench"), sandbox.private_database("bench"):
        processes = Processes()
        try:
            _run(options, result, processes, progress)
        finally:
            processes.stop()
    return result


def _run(options: Options, result: Run, processes: Processes, progress: Any) -> None:
    # Secrets of the run's own: its processes start with DEBUG off, where development secrets are refused,
    # and they must decrypt the tokens this process encrypts.
    run_secrets = new_secrets()
    with override_settings(
        PUSH_TOKEN_KEYS=[run_secrets["PUSH_TOKEN_KEYS"]], PUSH_TOKEN_HASH_KEY=run_secrets["PUSH_TOKEN_HASH_KEY"]
    ):
        _run_with(run_secrets, options, result, processes, progress)


def _run_with(run_secrets: dict[str, str], options: Options, result: Run, processes: Processes, progress: Any) -> None:
    fakes_env = processes.start_fakes(record_limit=options.count * 2 + 1000)
    urls = fake_urls(fakes_env)
    if options.faults:
        for name, url in urls.items():
            status = 503 if name in ("apns", "fcm") else 429
            status = 421 if name == "email" else status
            requests.post(
                url + "/_fake/rules", json={"status": status, "rate": options.faults, "retry_after": 0}, timeout=5
            ).raise_for_status()

    shards = options.workers if options.mode == "push" else 1
    env = {
        **os.environ,
        **fakes_env,
        **run_secrets,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "settings.base"),
        "DATABASE_URL": database_url(),
        "RABBITMQ_URL": settings.RABBITMQ_URL,
        "MOBILE_NOTIFICATIONS_SHARDS": str(shards),
        "WORKER_METRICS_BASE_PORT": "0",
        "QUEUE_RETRY_BASE_SECONDS": "0.2",
        "QUEUE_RETRY_MAX_SECONDS": "3",
        "QUEUE_MAX_RETRIES": "10",
        "SMS_FROM_NUMBER": "+15005550006",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "0",  # no per-query bookkeeping in the workers
    }
    settings.SHARDED_QUEUES = {**settings.SHARDED_QUEUES, MOBILE_NOTIFICATIONS_QUEUE: shards}

    client, _ = ApiClient.create(BENCH_CLIENT)
    if options.mode == "push":
        if options.bouncer == "http":
            server, key = RemoteServer.create("bench")
            env["PUSH_BOUNCER_URL"] = processes.start_bouncer({**env, "PUSH_BOUNCER_URL": ""}, free_port())
            env["PUSH_BOUNCER_SERVER_UUID"], env["PUSH_BOUNCER_API_KEY"] = str(server.uuid), key
        else:
            server = RemoteServer.objects.filter(uuid=LOCAL_SERVER_UUID).first()
            server = server or RemoteServer.create("local", server_uuid=LOCAL_SERVER_UUID)[0]
            env["PUSH_BOUNCER_URL"] = ""
        result.provider_of = create_devices(client, options, server)

    queue = QUEUE_OF_MODE[options.mode]
    processes.start_workers(shard_queue_names(queue) if options.mode == "push" else [queue] * options.workers, env)
    time.sleep(2.0)  # let the workers connect and declare their queues

    # The API's part, done before the clock starts: the notifications exist. The clock
    # covers publishing (through the real path, in chunks or paced to --rate) and delivery;
    # each chunk's acceptance time is stamped as it is published.
    rows = make_notifications(client, options, 0, options.count)
    result.started = time.monotonic()
    published = 0
    chunk = PUBLISH_CHUNK if not options.rate else max(1, int(options.rate / 100))
    while published < options.count:
        batch = rows[published : published + chunk]
        accepted = timezone.now()
        Notification.objects.filter(pk__in=[n.pk for n in batch]).update(created_at=accepted)
        queue_json_publish_many(queue, [delivery_event(n) for n in batch])
        for row in batch:
            # Push records name the notification; e-mail and SMS records their recipient.
            key = str(row.pk) if options.mode == "push" else row.recipient
            result.accepted_at[key] = accepted.timestamp()
        published += len(batch)
        if progress:
            progress("published", published, options.count)
        if options.rate:
            ahead = published / options.rate - (time.monotonic() - result.started)
            if ahead > 0:
                time.sleep(ahead)
    result.published_in = time.monotonic() - result.started

    deadline = time.monotonic() + options.timeout
    done = 0
    while done < options.count:
        if time.monotonic() > deadline:
            result.problems.append(f"timed out with {options.count - done} notifications unsettled")
            break
        if any(w.poll() is not None for w in processes.workers):
            result.problems.append("a worker process exited; see " + str(processes.directory))
            break
        time.sleep(0.1)
        done = settled_count(client)
        if progress:
            progress("settled", done, options.count)
    result.finished = time.monotonic()
    result.worker_cpu, result.worker_peak_rss_kb = processes.worker_usage()
    result.statuses = dict(Notification.objects.filter(client=client).values_list("status").annotate(n=Count("pk")))
    result.outcomes = dict(
        Attempt.objects.filter(notification__client=client).values_list("outcome").annotate(n=Count("pk"))
    )
    for name in ["apns", "fcm", "expo"] if options.mode == "push" else [options.mode]:
        for record in fake_records(urls[name]):
            if record.get("kind") in ("notification", "message"):  # not FCM's OAuth token requests
                record["provider"] = name
                result.received.append(record)
    check(result, client)


def database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    scheme = "mysql" if db["ENGINE"].endswith("mysql") else "postgres"
    return f"{scheme}://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def check(result: Run, client: ApiClient) -> None:
    """Lost: not settled, or sent without the fake having it. Duplicated: the fake took it twice."""
    delivered = Counter()
    for record in result.received:
        key = notification_id_of(record) if result.options.mode == "push" else record.get("key")
        if record.get("outcome") == "ok" and key is not None:
            delivered[key] += 1
    twice = [k for k, n in delivered.items() if n > 1]
    if twice:
        result.problems.append(f"{len(twice)} notifications delivered more than once")
    sent = Notification.objects.filter(client=client, status="sent")
    if result.options.mode == "push":
        missing = [pk for pk in sent.values_list("pk", flat=True) if str(pk) not in delivered]
    else:
        recipients = set(sent.values_list("recipient", flat=True))
        missing = [r for r in recipients if r not in delivered and f"<{r}>" not in delivered]
    if missing:
        result.problems.append(f"{len(missing)} notifications marked sent but not received by the fake")
    unsettled = result.options.count - sum(result.statuses.get(s, 0) for s in ("sent", "failed"))
    if unsettled:
        result.problems.append(f"{unsettled} notifications lost (neither sent nor failed)")


def report(result: Run) -> dict[str, Any]:
    """The figures, as a dict (printed as a table or as JSON)."""
    options = result.options
    elapsed = max(result.finished - result.started, 1e-9)
    ok = [r for r in result.received if r.get("outcome") == "ok"]
    start_wall = time.time() - (time.monotonic() - result.started)
    latencies = []
    per_provider: Counter[str] = Counter()
    last_at: dict[str, float] = {}
    for record in ok:
        per_provider[record["provider"]] += 1
        last_at[record["provider"]] = max(last_at.get(record["provider"], 0), record["at"])
        key = notification_id_of(record) if options.mode == "push" else record.get("key")
        if key in result.accepted_at:
            latencies.append(record["at"] - result.accepted_at[key])
    latencies.sort()

    def pct(p: float) -> float | None:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else None

    settled = sum(result.statuses.get(s, 0) for s in ("sent", "failed"))
    return {
        "mode": options.mode,
        "count": options.count,
        "workers": options.workers,
        "bouncer": options.bouncer if options.mode == "push" else None,
        "faults": options.faults,
        "rate": options.rate or None,
        "database": connection.vendor,
        "notifications_per_second": round(settled / elapsed, 1),
        "per_provider_per_second": {
            p: round(n / max(last_at[p] - start_wall, 1e-9), 1) for p, n in sorted(per_provider.items())
        },
        "publish_per_second": round(options.count / max(result.published_in, 1e-9), 1),
        "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99)},
        "worker_cpu_seconds_per_1000": round(result.worker_cpu / max(settled, 1) * 1000, 3),
        "worker_peak_rss_mb": round(result.worker_peak_rss_kb / 1024, 1),
        "statuses": result.statuses,
        "attempts": result.outcomes,
        "problems": result.problems,
    }


def as_json(figures: dict[str, Any]) -> str:
    return json.dumps(figures, indent=2, sort_keys=True)
