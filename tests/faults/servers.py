"""A RabbitMQ node and a MariaDB server of the fault suite's own, on ports of their own.

The fault suite stops, kills and restarts them; the machine's shared
RabbitMQ and MariaDB are never touched. Each server lives in a temporary
directory, which is described by environment variables (``describe()``) so
the test process can take hold of the servers that ``python -m tests.faults``
started for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie child of ours is reaped, and counts as gone)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {seconds:.0f} s")
        time.sleep(0.1)


class PrivateRabbitMQ:
    """A RabbitMQ node named ``faults-<id>@localhost`` with its own port, database and cookie."""

    def __init__(self, directory: Path, port: int, name: str) -> None:
        self.directory, self.port, self.name = directory, port, name

    @classmethod
    def create(cls) -> PrivateRabbitMQ:
        directory = Path(tempfile.mkdtemp(prefix="faults-rabbitmq-"))
        (directory / "home").mkdir()
        (directory / "enabled_plugins").write_text("[].\n")
        (directory / "rabbitmq.conf").write_text("")
        return cls(directory, free_port(), f"faults-{uuid.uuid4().hex[:8]}@localhost")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        d = self.directory
        return {
            **os.environ,
            "HOME": str(d / "home"),  # the node's and the CLI's Erlang cookie
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 1 if self.port < 65535 else self.port - 1),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
        }

    def start(self) -> None:
        subprocess.run([RABBITMQ_BIN / "rabbitmq-server", "-detached"], env=self._env(), check=True, cwd=self.directory)
        wait_until(lambda: answers(self.port), 90, f"RabbitMQ node {self.name} answering on {self.port}")

    def stop(self) -> None:
        """A clean stop (what a broker restart does): durable queues and persistent messages survive."""
        subprocess.run(
            [RABBITMQ_BIN / "rabbitmqctl", "-n", self.name, "stop"], env=self._env(), capture_output=True, timeout=60
        )
        wait_until(lambda: not answers(self.port), 30, f"RabbitMQ node {self.name} stopped")

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def destroy(self) -> None:
        if answers(self.port):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self) -> dict[str, str]:
        return {"FAULTS_RABBITMQ": f"{self.directory}|{self.port}|{self.name}"}

    @classmethod
    def from_env(cls) -> PrivateRabbitMQ:
        directory, port, name = os.environ["FAULTS_RABBITMQ"].split("|")
        return cls(Path(directory), int(port), name)


class PrivateMariaDB:
    """A MariaDB server on its own port and data directory (root, no password), as this machine's is."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port

    @classmethod
    def create(cls) -> PrivateMariaDB:
        directory = Path(tempfile.mkdtemp(prefix="faults-mariadb-"))
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={directory / 'data'}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--user=root",
            ],
            check=True,
            capture_output=True,
        )
        return cls(directory, free_port())

    @property
    def pid(self) -> int | None:
        try:
            return int((self.directory / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        d = self.directory
        subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={d / 'data'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={d / 'sock'}",
                f"--pid-file={d / 'pid'}",
                f"--log-error={d / 'error.log'}",
                "--user=root",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=500",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: answers(self.port), 60, f"MariaDB answering on {self.port}")

    def stop(self) -> None:
        """Take the server down (SIGTERM: it closes every connection, as a restart does)."""
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        wait_until(lambda: not answers(self.port), 60, f"MariaDB on {self.port} stopped")
        if pid is not None:
            wait_until(lambda: not running(pid), 60, f"MariaDB process {pid} gone")

    def destroy(self) -> None:
        if answers(self.port):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def describe(self) -> dict[str, str]:
        return {"FAULTS_MARIADB": f"{self.directory}|{self.port}"}

    @classmethod
    def from_env(cls) -> PrivateMariaDB:
        directory, port = os.environ["FAULTS_MARIADB"].split("|")
        return cls(Path(directory), int(port))
