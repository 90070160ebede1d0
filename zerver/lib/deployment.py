"""Render the configuration that runs the service: process manager and Prometheus.

The processes, whichever manager keeps them up:

* one queue worker per queue and per shard (``process_queue``), each pinned
  to its own metrics port with ``--metrics-port``;
* the web app under gunicorn (``zerver.wsgi:application``);
* ``outbox_relay`` (``outbox_relays`` of them: they share the work);
* ``check_expo_receipts --loop``.

Formats:

* supervisord: one ``[program:...]`` per process, all in the group
  ``notification-workers``;
* systemd: the template unit ``notification-worker@.service`` (instanced by
  queue name, its metrics port in a drop-in per instance), one unit per other
  process, and ``notification-workers.target``, which wants every one;
* prometheus: a scrape configuration of the web app's ``/metrics`` and of
  every worker's metrics port, computed by the same code as the workers'
  ``--metrics-port``, so the two cannot disagree.

This module is the single source of truth for that text. The Puppet module in
``puppet/notifications`` runs ``./manage.py render_deployment`` instead of
keeping ERB copies, so what the tests render is what production runs.

The shard count is written into the workers' environment as well as into the
queue names: a worker started for ``..._shard4`` refuses to run unless its own
``MOBILE_NOTIFICATIONS_SHARDS`` says there are at least four shards, and the
publishers must agree with the workers on the count.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.template import Context, Engine

from workers.base import base_queue_name, get_worker_class, registered_queues
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "deployment"
FORMATS = ("supervisord", "systemd", "instances", "prometheus")
PROGRAM_PREFIX = "notification-worker-"
GROUP = "notification-workers"
UNIT_TEMPLATE = "notification-worker@.service"
TARGET = "notification-workers.target"
WEB = "notification-web"
OUTBOX_RELAY = "notification-outbox-relay"
EXPO_RECEIPTS = "notification-expo-receipts"
SCRAPE_FILE = "notifications-scrape.yml"
# The systemd variable, set by each instance's drop-in, that holds a worker's metrics port.
PORT_VARIABLE = "NOTIFICATION_WORKER_METRICS_PORT"
PORT_DROP_IN = "metrics-port.conf"

# Queue names end up in config files and unit names: nothing that could break out of a line.
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# Paths and the user go unquoted into commands: no spaces, quotes, '%' or newlines.
PLAIN_RE = re.compile(r"^[A-Za-z0-9_./@+-]+$")
ENV_KEY_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# gunicorn --bind: host:port, [v6]:port or unix:/path.
BIND_RE = re.compile(r"^[A-Za-z0-9_./:\[\]-]+$")
# A scrape host; "{name}" stands for the worker's name (one host or container per worker).
HOST_RE = re.compile(r"^(?:[A-Za-z0-9_.-]|\{name\})+$")
TARGET_RE = re.compile(r"^(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):[0-9]+$")

# Config files, not HTML: no autoescaping.
_engine = Engine(dirs=[str(TEMPLATE_DIR)], autoescape=False)


@dataclass(frozen=True)
class DeploymentConfig:
    """Where the app lives and how its workers run on the target machine."""

    app_dir: str = "/srv/notifications"
    # The virtualenv; None means ``<app_dir>/.venv``.
    venv: str | None = None
    log_dir: str = "/var/log/notifications"
    settings_module: str = "settings.base"
    # Unix user to run as; None leaves it to the process manager (e.g. supervisord not running as root).
    user: str | None = "notifications"
    # KEY=VALUE lines (secrets: DATABASE_URL, RABBITMQ_URL, SECRET_KEY) read when a worker starts.
    env_file: str | None = "/etc/notifications/env"
    # How long a worker may take to finish its batch after SIGTERM before it is killed.
    stop_wait_seconds: int = 60
    extra_env: dict[str, str] = field(default_factory=dict)
    # Worker i of the full queue list serves /metrics on metrics_base_port + i; 0: no worker metrics.
    metrics_base_port: int = 9100
    # Where Prometheus reaches the workers; "{name}" is replaced by the worker's name.
    metrics_host: str = "localhost"
    # The web app (gunicorn); web=False renders no web program (a workers-only host).
    web: bool = True
    web_bind: str = "127.0.0.1:8000"
    web_workers: int = 1
    web_threads: int = 8
    # Where Prometheus reaches the web app's /metrics; None: metrics_host and web_bind's port.
    web_target: str | None = None
    # outbox_relay processes (0: none); they share the work.
    outbox_relays: int = 1
    # check_expo_receipts --loop SECONDS (0: not run). One host is enough.
    expo_receipts_seconds: int = 60

    @property
    def python(self) -> str:
        return f"{self.venv or self.app_dir + '/.venv'}/bin/python"

    @property
    def manage_py(self) -> str:
        return f"{self.app_dir}/manage.py"

    @property
    def web_graceful_seconds(self) -> int:
        """gunicorn's --graceful-timeout: in-flight requests finish before the manager's own timeout kills it."""
        return max(1, self.stop_wait_seconds - 5)

    @property
    def scrape_web_target(self) -> str:
        if self.web_target:
            return self.web_target
        host, sep, port = self.web_bind.rpartition(":")
        if not sep or not port.isdigit() or host.startswith("unix") or "{name}" in self.metrics_host:
            raise ValueError(f"give web_target: cannot scrape the web app from web_bind {self.web_bind!r}")
        return f"{self.metrics_host}:{port}"


@dataclass(frozen=True)
class Program:
    """One long-running process: a supervisord program, a systemd unit (or worker instance)."""

    name: str
    description: str
    # The whole command line, interpreter first.
    command: str
    # supervisord's log file: <log_dir>/<log>.log.
    log: str
    # For a queue worker: its queue (or shard) and metrics port (None: no metrics).
    worker: str | None = None
    metrics_port: int | None = None
    # SIGHUP reloads it gracefully (gunicorn: new workers on the new code).
    reloads_on_hup: bool = False

    def metrics_target(self, config: DeploymentConfig) -> str:
        return f"{config.metrics_host.replace('{name}', self.worker or '')}:{self.metrics_port}"


def default_queues() -> list[str]:
    """The queues whose registered worker production runs, without their shards (not ``noop``/``test``)."""
    names = dict.fromkeys(base_queue_name(name) for name in registered_queues())
    return [name for name in names if get_worker_class(name).deployed]


def shard_counts(shards: int) -> dict[str, int]:
    """Shards per queue: the settings' ``SHARDED_QUEUES``, with the mobile queue's count set to ``shards``."""
    if shards < 1:
        raise ValueError(f"the shard count must be at least 1, not {shards}")
    return {**settings.SHARDED_QUEUES, MOBILE_NOTIFICATIONS_QUEUE: shards}


def worker_names(queues: Iterable[str], shards: int) -> list[str]:
    """One name per worker process: each queue, or each of its shards (``q_shard1..N``).

    Mirrors ``zerver.lib.queue.shard_queue_names`` but with the shard count
    of the machine being rendered for, not of the machine rendering.
    """
    counts = shard_counts(shards)
    names: list[str] = []
    for queue in queues:
        if not QUEUE_NAME_RE.match(queue):
            raise ValueError(f"invalid queue name {queue!r}")
        count = max(1, int(counts.get(queue, 1)))
        names.extend([queue] if count == 1 else [f"{queue}_shard{n}" for n in range(1, count + 1)])
    if len(set(names)) != len(names):
        raise ValueError(f"a queue is listed twice: {names}")
    return names


def metrics_ports(config: DeploymentConfig, names: list[str], shards: int) -> dict[str, int | None]:
    """Each worker's metrics port: ``metrics_base_port`` + its index in ``process_queue --list``.

    The index is in the full list for the target's shard count (queues not
    registered here come after it), so a subset of queues keeps the ports
    that ``process_queue --list -v 2`` shows, and no two workers share one.
    """
    if not config.metrics_base_port:
        return dict.fromkeys(names)
    registered = dict.fromkeys(base_queue_name(name) for name in registered_queues())
    full = worker_names(list(registered), shards)
    full += [name for name in names if name not in full]
    ports = {name: config.metrics_base_port + full.index(name) for name in names}
    if ports and max(ports.values()) > 65535:
        raise ValueError(f"metrics ports above 65535 from base port {config.metrics_base_port}")
    return ports


def web_argv(config: DeploymentConfig) -> list[str]:
    """The web app's command after the interpreter: gunicorn; SIGTERM lets requests in flight finish."""
    return [
        "-m",
        "gunicorn",
        "zerver.wsgi:application",
        "--bind",
        config.web_bind,
        "--workers",
        str(config.web_workers),
        "--threads",
        str(config.web_threads),
        "--graceful-timeout",
        str(config.web_graceful_seconds),
        "--access-logfile",
        "-",
    ]


def programs(config: DeploymentConfig, names: list[str], shards: int) -> list[Program]:
    """Every process to run: the queue workers for ``names``, then the web app, relays and receipts checker."""
    run = f"{config.python} {config.manage_py}"
    ports = metrics_ports(config, names, shards)
    result = [
        Program(
            name=PROGRAM_PREFIX + name,
            description=f"Notification queue worker for {name}",
            command=f"{run} process_queue --queue_name={name} --metrics-port={ports[name] or 0}",
            log=name,
            worker=name,
            metrics_port=ports[name],
        )
        for name in names
    ]
    if config.web:
        bind_port = config.web_bind.rpartition(":")[2]
        if bind_port.isdigit() and int(bind_port) in ports.values():
            raise ValueError(f"the web app's port {bind_port} is also a worker's metrics port")
        result.append(
            Program(
                name=WEB,
                description="Notification service web app (gunicorn)",
                command=" ".join([config.python, *web_argv(config)]),
                log="web",
                reloads_on_hup=True,
            )
        )
    result.extend(
        Program(
            name=f"{OUTBOX_RELAY}-{n}",
            description=f"Notification outbox relay {n}",
            command=f"{run} outbox_relay",
            log=f"outbox-relay-{n}",
        )
        for n in range(1, config.outbox_relays + 1)
    )
    if config.expo_receipts_seconds:
        result.append(
            Program(
                name=EXPO_RECEIPTS,
                description="Expo push receipts checker",
                command=f"{run} check_expo_receipts --loop {config.expo_receipts_seconds}",
                log="expo-receipts",
            )
        )
    return result


def worker_environment(config: DeploymentConfig, shards: int) -> dict[str, str]:
    """The non-secret environment every worker gets (secrets come from ``env_file``)."""
    return {
        "DJANGO_SETTINGS_MODULE": config.settings_module,
        "MOBILE_NOTIFICATIONS_SHARDS": str(shards),
        "PYTHONUNBUFFERED": "1",
        **config.extra_env,
    }


def render(fmt: str, config: DeploymentConfig, shards: int, queues: Iterable[str] | None = None) -> dict[str, str]:
    """Render ``fmt`` for these queues: {file name: content}.

    ``queues`` defaults to every registered queue. The ``instances`` format
    is the list of worker names, one per line, for scripts and for
    ``systemctl enable``. File names may hold a directory (systemd drop-ins).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    names = worker_names(default_queues() if queues is None else queues, shards)
    env = worker_environment(config, shards)
    check_renderable(config, env)
    procs = programs(config, names, shards)
    workers = [p for p in procs if p.worker is not None]
    context = Context(
        {
            "config": config,
            "names": names,
            "env": env,
            "group": GROUP,
            "prefix": PROGRAM_PREFIX,
            "target": TARGET,
            "unit_prefix": UNIT_TEMPLATE.removesuffix(".service"),
            "port_variable": PORT_VARIABLE,
            "programs": procs,
            "services": [p for p in procs if p.worker is None],
            "web_target": config.scrape_web_target if config.web else None,
            "scrape_workers": [(p.worker, p.metrics_target(config)) for p in workers if p.metrics_port],
        }
    )
    if fmt == "supervisord":
        return {f"{GROUP}.conf": _engine.get_template("supervisord.conf").render(context)}
    if fmt == "systemd":
        files = {UNIT_TEMPLATE: _engine.get_template(UNIT_TEMPLATE).render(context)}
        drop_in = _engine.get_template("metrics-port.conf")
        for p in workers:
            context.push(program=p)
            files[f"{UNIT_TEMPLATE.replace('@', '@' + p.worker)}.d/{PORT_DROP_IN}"] = drop_in.render(context)
            context.pop()
        unit = _engine.get_template("program.service")
        for p in context["services"]:
            context.push(program=p)
            files[f"{p.name}.service"] = unit.render(context)
            context.pop()
        files[TARGET] = _engine.get_template(TARGET).render(context)
        return files
    if fmt == "prometheus":
        return {SCRAPE_FILE: _engine.get_template("prometheus.yml").render(context)}
    return {f"{GROUP}.instances": "".join(f"{name}\n" for name in names)}


def check_renderable(config: DeploymentConfig, env: dict[str, str]) -> None:
    """Refuse values that would need quoting: the templates write them as they are."""
    for what, value in [
        ("app_dir", config.app_dir),
        ("venv", config.venv),
        ("log_dir", config.log_dir),
        ("settings_module", config.settings_module),
        ("user", config.user),
        ("env_file", config.env_file),
    ]:
        if value is not None and not PLAIN_RE.match(value):
            raise ValueError(f"{what} {value!r} has characters the configuration cannot hold")
    if not BIND_RE.match(config.web_bind):
        raise ValueError(f"web_bind {config.web_bind!r} has characters the configuration cannot hold")
    if not HOST_RE.match(config.metrics_host):
        raise ValueError(f"metrics_host {config.metrics_host!r} is not a host name")
    if config.web_target is not None and not TARGET_RE.match(config.web_target):
        raise ValueError(f"web_target {config.web_target!r} is not HOST:PORT")
    for what, number, least in [
        ("web_workers", config.web_workers, 1),
        ("web_threads", config.web_threads, 1),
        ("outbox_relays", config.outbox_relays, 0),
        ("expo_receipts_seconds", config.expo_receipts_seconds, 0),
        ("metrics_base_port", config.metrics_base_port, 0),
        ("stop_wait_seconds", config.stop_wait_seconds, 1),
    ]:
        if number < least:
            raise ValueError(f"{what} must be at least {least}, not {number}")
    for key, value in env.items():
        if not ENV_KEY_RE.match(key) or any(c in value for c in "\n\"'%\\"):
            raise ValueError(f"cannot render environment variable {key}={value!r}")


def changed_files(files: dict[str, str], output: Path) -> list[str]:
    """The rendered files whose content differs from what ``output`` holds."""
    changed = []
    for name, content in files.items():
        try:
            current = (output / name).read_text()
        except FileNotFoundError:
            current = None
        if current != content:
            changed.append(name)
    return changed


def write_files(files: dict[str, str], output: Path) -> list[str]:
    """Write the files that changed, each atomically, so a reload never reads half a file.

    Returns the names written: nothing when the configuration is current,
    which lets Puppet restart workers only on a real change.
    """
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name in changed_files(files, output):
        path = output / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(files[name])
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(name)
    return written
