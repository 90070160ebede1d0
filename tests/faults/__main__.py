"""``python -m tests.faults [pytest args]``: the fault suite, on a RabbitMQ node and a MariaDB of its own.

Starts both on free ports, runs ``pytest tests/faults`` against them (the
tests stop, kill and restart them), and removes them afterwards. The
machine's shared RabbitMQ and MariaDB are never stopped or used.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.faults.servers import PrivateMariaDB, PrivateRabbitMQ


def main(args: list[str]) -> int:
    started = time.monotonic()
    rabbitmq, mariadb = PrivateRabbitMQ.create(), PrivateMariaDB.create()
    try:
        rabbitmq.start()
        mariadb.start()
        print(
            f"== fault suite: private RabbitMQ on port {rabbitmq.port}, private MariaDB on port {mariadb.port} "
            f"(up in {time.monotonic() - started:.1f} s)",
            flush=True,
        )
        env = {
            **os.environ,
            **rabbitmq.describe(),
            **mariadb.describe(),
            "FAULT_SUITE": "1",
            "RABBITMQ_URL": rabbitmq.url,
            "TEST_RABBITMQ_SHARED_VHOST": "1",  # the node is ours alone: its "/" is private
            "DATABASE_URL": f"mysql://root@127.0.0.1:{mariadb.port}/notifications",
        }
        return subprocess.run([sys.executable, "-m", "pytest", "tests/faults", *args], env=env).returncode
    finally:
        rabbitmq.destroy()
        mariadb.destroy()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
