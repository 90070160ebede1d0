"""``./manage.py fuzz_api``: schemathesis against a live server from the API's own OpenAPI document.

It makes a database and a RabbitMQ virtual host of its own (zerver.lib.sandbox),
an API client in it, starts gunicorn on a free port with production settings
(DEBUG off, freshly generated secrets), and runs schemathesis with the checks
``not_a_server_error``, ``response_schema_conformance`` and
``content_type_conformance`` from ``/api/v1/openapi.json``. It exits non-zero
if any check fails or fewer than ``--min-cases`` cases were generated; the
database, the vhost and the server are removed in any case.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from zerver.lib import sandbox
from zerver.lib.secrets import new_secrets
from zerver.models import ApiClient

CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
GENERATED = re.compile(r"(\d+)\s+generated")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CommandError(f"the server exited with {server.returncode} before answering")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise CommandError(f"the server did not answer {url} within {seconds:.0f} s")


class Command(BaseCommand):
    help = "Fuzz the API with schemathesis against a live server on a database of its own."
    # A development tool: the production checks are for the server it starts (which has its own secrets).
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--max-examples", type=int, default=160, help="schemathesis cases per operation")
        parser.add_argument("--min-cases", type=int, default=1000, help="fail if fewer cases were generated")
        parser.add_argument("--workers", type=int, default=2, help="schemathesis' concurrent workers")
        parser.add_argument("--seed", type=int, default=None, help="for a reproducible run")

    def handle(self, *args: Any, **options: Any) -> None:
        if connections["default"].vendor != "mysql":
            raise CommandError("fuzz_api runs on MariaDB: set DATABASE_URL=mysql://root@127.0.0.1:3306/notifications")
        with sandbox.private_vhost("fuzz"), sandbox.private_database("fuzz") as name:
            _, key = ApiClient.create("fuzz")
            connections.close_all()
            status = self.fuzz(name, key, options)
        if status:
            raise CommandError(f"schemathesis found failures (exit {status})")

    def fuzz(self, database: str, key: str, options: dict[str, Any]) -> int:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            **new_secrets(),
            "DATABASE_URL": urlsplit(os.environ["DATABASE_URL"])._replace(path="/" + database).geturl(),
            "RABBITMQ_URL": settings.RABBITMQ_URL,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # Thousands of requests a minute from one client and one address are the point here.
            "RATE_LIMITS_ENABLED": "0",
        }
        bin_dir = Path(sys.executable).parent
        server = subprocess.Popen(
            [str(bin_dir / "gunicorn"), "zerver.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=env,
            cwd=settings.BASE_DIR,
        )
        try:
            wait_for(f"{base}/api/v1/openapi.json", server)
            command = [
                str(bin_dir / "schemathesis"),
                "run",
                f"{base}/api/v1/openapi.json",
                "--checks",
                CHECKS,
                "--header",
                f"Authorization: Bearer {key}",
                "--max-examples",
                str(options["max_examples"]),
                "--workers",
                str(options["workers"]),
                "--no-color",
                "--suppress-health-check",
                "all",
            ]
            if options["seed"] is not None:
                command += ["--seed", str(options["seed"])]
            with tempfile.TemporaryDirectory() as scratch:  # schemathesis' example cache stays out of the checkout
                run = subprocess.run(
                    command, capture_output=True, text=True, cwd=scratch, env={**os.environ, "NO_COLOR": "1"}
                )
            output = run.stdout + run.stderr
            self.stdout.write(output.replace(key, "<api key>"))
            generated = sum(int(n) for n in GENERATED.findall(output.partition("SUMMARY")[2] or output)[:1])
            if run.returncode == 0 and generated < options["min_cases"]:
                self.stderr.write(f"only {generated} cases generated, fewer than --min-cases {options['min_cases']}")
                return 1
            return run.returncode
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
