"""Render the supervisord, systemd or Prometheus configuration of the service.

``./manage.py render_deployment --shards 4 --format supervisord --output /etc/supervisor/conf.d``

The processes: one queue worker per queue and shard, the web app (gunicorn),
the outbox relays and the Expo receipts checker. ``--format prometheus``
renders the scrape configuration of the web app and of every worker's
metrics port, from the same lists, so it names the ports the workers get.

The Puppet module runs this rather than keeping its own templates, so the
configuration has one source (``zerver/lib/deployment.py``), tested in Python.
``--check`` exits 1 when the files in ``--output`` are out of date, which is
what Puppet's ``unless`` needs to touch the workers only on a real change.
"""

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from workers.base import get_worker_class
from zerver.lib.deployment import FORMATS, DeploymentConfig, changed_files, default_queues, render, write_files

DEFAULTS = DeploymentConfig()


class Command(BaseCommand):
    help = (
        "Render the supervisord programs or systemd units of the queue workers (one per queue and shard), "
        "the web app, the outbox relays and the Expo receipts checker, or their Prometheus scrape configuration."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--format", choices=FORMATS, required=True)
        parser.add_argument(
            "--shards",
            type=int,
            default=None,
            help="MOBILE_NOTIFICATIONS_SHARDS on the target machine (default: this machine's setting)",
        )
        parser.add_argument(
            "--queues", nargs="+", metavar="QUEUE", help="queues to run, without shards (default: every registered one)"
        )
        parser.add_argument("--app-dir", default=DEFAULTS.app_dir)
        parser.add_argument("--venv", default=None, help="virtualenv (default: APP_DIR/.venv)")
        parser.add_argument("--log-dir", default=DEFAULTS.log_dir)
        parser.add_argument("--settings-module", default=DEFAULTS.settings_module)
        parser.add_argument("--user", default=DEFAULTS.user, help="run workers as this user ('' for no user line)")
        parser.add_argument(
            "--env-file", default=DEFAULTS.env_file, help="KEY=VALUE file with the secrets ('' for none)"
        )
        parser.add_argument(
            "--stop-wait-seconds",
            type=int,
            default=DEFAULTS.stop_wait_seconds,
            help="how long a worker may finish its batch after SIGTERM before it is killed",
        )
        parser.add_argument(
            "--env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for every worker"
        )
        parser.add_argument(
            "--metrics-base-port",
            type=int,
            default=DEFAULTS.metrics_base_port,
            help="worker i of `process_queue --list` serves /metrics on this + i (0: no worker metrics)",
        )
        parser.add_argument(
            "--metrics-host",
            default=DEFAULTS.metrics_host,
            help="where Prometheus reaches the workers; {name} stands for the worker's name",
        )
        parser.add_argument("--no-web", action="store_true", help="no web app on this host")
        parser.add_argument("--web-bind", default=DEFAULTS.web_bind, help="gunicorn --bind")
        parser.add_argument("--web-workers", type=int, default=DEFAULTS.web_workers, help="gunicorn --workers")
        parser.add_argument("--web-threads", type=int, default=DEFAULTS.web_threads, help="gunicorn --threads")
        parser.add_argument(
            "--web-target", default=None, help="HOST:PORT of the web app for Prometheus (default: metrics host)"
        )
        parser.add_argument(
            "--outbox-relays", type=int, default=DEFAULTS.outbox_relays, help="outbox_relay processes (0: none)"
        )
        parser.add_argument(
            "--expo-receipts-seconds",
            type=int,
            default=DEFAULTS.expo_receipts_seconds,
            help="check_expo_receipts --loop SECONDS (0: not run here)",
        )
        parser.add_argument("--output", type=Path, help="write the files into this directory (default: print them)")
        parser.add_argument(
            "--check", action="store_true", help="with --output: exit 1 if the files there are out of date"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        extra_env = {}
        for item in options["env"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--env wants KEY=VALUE, not {item!r}")
            extra_env[key] = value
        config = DeploymentConfig(
            app_dir=options["app_dir"],
            venv=options["venv"],
            log_dir=options["log_dir"],
            settings_module=options["settings_module"],
            user=options["user"] or None,
            env_file=options["env_file"] or None,
            stop_wait_seconds=options["stop_wait_seconds"],
            extra_env=extra_env,
            metrics_base_port=options["metrics_base_port"],
            metrics_host=options["metrics_host"],
            web=not options["no_web"],
            web_bind=options["web_bind"],
            web_workers=options["web_workers"],
            web_threads=options["web_threads"],
            web_target=options["web_target"],
            outbox_relays=options["outbox_relays"],
            expo_receipts_seconds=options["expo_receipts_seconds"],
        )
        shards = settings.MOBILE_NOTIFICATIONS_SHARDS if options["shards"] is None else options["shards"]
        queues = options["queues"]
        for queue in queues or []:
            try:
                get_worker_class(queue)
            except KeyError:
                # Rendered anyway: the worker may live in a release newer than this checkout.
                self.stderr.write(f"warning: no worker is registered for queue {queue!r} here")
        try:
            files = render(options["format"], config, shards, queues if queues else default_queues())
        except ValueError as e:
            raise CommandError(str(e)) from None

        output: Path | None = options["output"]
        if output is None:
            if options["check"]:
                raise CommandError("--check needs --output")
            for name, content in files.items():
                if len(files) > 1:
                    self.stdout.write(f"# ==> {name} <==")
                self.stdout.write(content, ending="")
            return
        if options["check"]:
            stale = changed_files(files, output)
            if stale:
                raise CommandError(f"out of date in {output}: {', '.join(stale)}")
            return
        for name in write_files(files, output):
            self.stdout.write(f"wrote {output / name}")
