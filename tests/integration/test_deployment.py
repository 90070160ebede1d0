"""The rendered supervisord configuration, run by a real supervisord on the real RabbitMQ.

What production runs, short of the machine: the rendered program file is
included by a supervisord.conf the way Debian's /etc/supervisor/conf.d is,
the worker reads its environment file through the same ``sh -c '... exec'``
command, and ``supervisorctl stop`` has to end it with SIGTERM, after it
finished the event in hand, well before supervisord would SIGKILL it.
"""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings

from tests.helpers import ROOT, read_jsonl, wait_for
from zerver.lib.deployment import DeploymentConfig, render, write_files
from zerver.lib.queue import queue_json_publish

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
PROGRAM = "notification-workers:notification-worker-test"
STOP_WAIT_SECONDS = 20

SUPERVISORD_CONF = """\
[unix_http_server]
file={dir}/supervisor.sock

[supervisord]
logfile={dir}/supervisord.log
pidfile={dir}/supervisord.pid
childlogdir={dir}/logs

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{dir}/supervisor.sock

[include]
files = {dir}/conf.d/*.conf
"""


class Supervisor:
    def __init__(self, conf: Path) -> None:
        self.conf = conf

    def ctl(self, *args: str, timeout: float = 10) -> str:
        done = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.stdout + done.stderr

    def state(self, program: str = PROGRAM) -> str:
        """RUNNING, STARTING, STOPPED, EXITED, BACKOFF, FATAL, ... or '' while supervisord is not up."""
        words = self.ctl("status", program).split()
        return words[1] if len(words) > 1 and words[0] == program else ""


@contextmanager
def running_supervisord(env: str, queues: list[str], **config: object) -> Iterator[tuple[Supervisor, Path]]:
    """supervisord running what ``render`` makes of these queues and this config: (control, directory)."""
    if not (BIN / "supervisord").exists():
        pytest.fail("supervisord is not installed: pip install -r requirements/dev.txt")
    # A short path: the control socket's must fit in sun_path (108 bytes).
    tmp = Path(tempfile.mkdtemp(prefix="sv-"))
    (tmp / "logs").mkdir()
    env_file = tmp / "env"
    env_file.write_text(f"RABBITMQ_URL='{settings.RABBITMQ_URL}'\n{env}")
    rendered = DeploymentConfig(
        app_dir=str(ROOT),
        venv=sys.prefix,
        log_dir=str(tmp / "logs"),
        settings_module="settings.test",
        user=None,
        env_file=str(env_file),
        stop_wait_seconds=STOP_WAIT_SECONDS,
        **config,
    )
    write_files(render("supervisord", rendered, 1, queues), tmp / "conf.d")
    conf = tmp / "supervisord.conf"
    conf.write_text(SUPERVISORD_CONF.format(dir=tmp))

    daemon = subprocess.Popen(
        [str(BIN / "supervisord"), "-n", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    control = Supervisor(conf)
    try:
        yield control, tmp
    finally:
        try:
            control.ctl("shutdown", timeout=STOP_WAIT_SECONDS + 10)
            daemon.wait(timeout=STOP_WAIT_SECONDS + 10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def supervisor(test_queue) -> Iterator[tuple[Supervisor, Path, str]]:
    """supervisord running the rendered program for the ``test`` queue only: (control, directory, output file)."""
    only_the_worker = {"web": False, "outbox_relays": 0, "expo_receipts_seconds": 0, "metrics_base_port": 0}
    with running_supervisord(f"TEST_WORKER_OUTPUT='{test_queue}'\n", ["test"], **only_the_worker) as (control, tmp):
        yield control, tmp, test_queue


def test_supervisord_runs_the_rendered_worker_and_stops_it_with_sigterm(supervisor):
    control, tmp, output = supervisor
    worker_log = tmp / "logs" / "test.log"

    wait_for(lambda: control.state() == "RUNNING", timeout=30, what="the worker to be RUNNING")
    wait_for(lambda: "consuming test" in worker_log.read_text(), timeout=30, what="the worker to start consuming")

    queue_json_publish("test", {"id": "warm-up"})
    wait_for(lambda: read_jsonl(output), timeout=30, what="the worker to consume an event")
    # Still in its 3-second sleep when SIGTERM comes: the worker must finish it first.
    queue_json_publish("test", {"id": "in-hand", "sleep": 3})
    time.sleep(1)

    started = time.monotonic()
    stopped = control.ctl("stop", PROGRAM, timeout=STOP_WAIT_SECONDS + 15)
    took = time.monotonic() - started

    assert f"{PROGRAM}: stopped" in stopped
    assert control.state() == "STOPPED"
    assert took < STOP_WAIT_SECONDS - 5, f"stop took {took:.1f}s: was the worker killed instead?"
    assert [line["id"] for line in read_jsonl(output)] == ["warm-up", "in-hand"]
    log = worker_log.read_text()
    assert "signal 15: stopping after the current batch" in log
    assert "worker TestWorker on test stopped" in log
    # supervisord saw a clean exit, not a SIGKILL after stopwaitsecs.
    supervisord_log = (tmp / "supervisord.log").read_text()
    assert f"stopped: {PROGRAM.split(':')[1]} (exit status 0)" in supervisord_log
    assert "SIGKILL" not in supervisord_log


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_supervisord_runs_the_rendered_web_app_under_gunicorn_and_stops_it_with_sigterm():
    port = free_port()
    web = "notification-workers:notification-web"
    config = {"outbox_relays": 0, "expo_receipts_seconds": 0, "web_bind": f"127.0.0.1:{port}", "web_threads": 2}
    with running_supervisord("", [], **config) as (control, tmp):
        wait_for(lambda: control.state(web) == "RUNNING", timeout=30, what="gunicorn to be RUNNING")

        def scrape() -> str:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    return response.read().decode()
            except OSError:
                return ""

        assert "queue_depth_up" in wait_for(scrape, timeout=30, what="the web app's /metrics")
        stopped = control.ctl("stop", web, timeout=STOP_WAIT_SECONDS + 15)
        assert f"{web}: stopped" in stopped
        log = (tmp / "logs" / "web.log").read_text()
        assert "Booting worker" in log and "Handling signal: term" in log
        supervisord_log = (tmp / "supervisord.log").read_text()
        assert "stopped: notification-web (exit status 0)" in supervisord_log
        assert "SIGKILL" not in supervisord_log
