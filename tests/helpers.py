"""Helpers for tests that run real workers against the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings

from workers.base import QueueProcessingWorker

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


@contextmanager
def running(*workers: QueueProcessingWorker) -> Iterator[None]:
    """Run workers in threads of this process; stop them (finishing their batch) on exit."""
    threads = [threading.Thread(target=w.start, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()
        for thread in threads:
            thread.join(timeout=15)
            assert not thread.is_alive(), "worker did not stop"


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process of a test: this test's broker and database."""
    db = settings.DATABASES["default"]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "settings.test", "RABBITMQ_URL": settings.RABBITMQ_URL}
    if db["ENGINE"] == "django.db.backends.mysql":
        # pytest-django has renamed NAME to the test database by now.
        env["DATABASE_URL"] = f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**env, **extra}


def start_worker_process(queue_name: str, env: dict[str, str]) -> subprocess.Popen:
    """``./manage.py process_queue`` in a child process, as supervisord would start it."""
    return subprocess.Popen(
        [sys.executable, "manage.py", "process_queue", f"--queue_name={queue_name}"],
        cwd=ROOT,
        env=child_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
