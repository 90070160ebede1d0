"""Render the process-manager configuration that runs the queue workers.

One worker process per queue and per shard, whichever manager keeps them up:

* supervisord: one ``[program:notification-worker-<queue>]`` per process, in
  the group ``notification-workers``;
* systemd: the template unit ``notification-worker@.service`` (instanced by
  queue name) and ``notification-workers.target``, which wants every instance.

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

from workers.base import base_queue_name, registered_queues
from zerver.lib.queue import MOBILE_NOTIFICATIONS_QUEUE

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "deployment"
FORMATS = ("supervisord", "systemd", "instances")
PROGRAM_PREFIX = "notification-worker-"
GROUP = "notification-workers"
UNIT_TEMPLATE = "notification-worker@.service"
TARGET = "notification-workers.target"

# Queue names end up in config files and unit names: nothing that could break out of a line.
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
# Paths and the user go unquoted into commands: no spaces, quotes, '%' or newlines.
PLAIN_RE = re.compile(r"^[A-Za-z0-9_./@+-]+$")
ENV_KEY_RE = re.compile(r"^[A-Z_][A-Z0-9_]*$")

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

    @property
    def python(self) -> str:
        return f"{self.venv or self.app_dir + '/.venv'}/bin/python"

    @property
    def manage_py(self) -> str:
        return f"{self.app_dir}/manage.py"


def default_queues() -> list[str]:
    """The queues with a registered worker, without their shards."""
    return list(dict.fromkeys(base_queue_name(name) for name in registered_queues()))


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
    ``systemctl enable``.
    """
    names = worker_names(default_queues() if queues is None else queues, shards)
    env = worker_environment(config, shards)
    check_renderable(config, env)
    context = Context(
        {
            "config": config,
            "names": names,
            "env": env,
            "group": GROUP,
            "prefix": PROGRAM_PREFIX,
            "target": TARGET,
            "unit_prefix": UNIT_TEMPLATE.removesuffix(".service"),
        }
    )
    if fmt == "supervisord":
        return {f"{GROUP}.conf": _engine.get_template("supervisord.conf").render(context)}
    if fmt == "systemd":
        return {
            UNIT_TEMPLATE: _engine.get_template(UNIT_TEMPLATE).render(context),
            TARGET: _engine.get_template(TARGET).render(context),
        }
    if fmt == "instances":
        return {f"{GROUP}.instances": "".join(f"{name}\n" for name in names)}
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


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
        fd, tmp = tempfile.mkstemp(dir=output, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(files[name])
            os.chmod(tmp, 0o644)
            os.replace(tmp, output / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(name)
    return written
