"""A worker whose broker is unreachable says so in one clear line per try, without pika's noise."""

import logging
import socket
import threading
import time

from workers.base import get_worker


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_clear_line_per_try_when_rabbitmq_cannot_be_reached(settings, caplog):
    port = closed_port()
    settings.RABBITMQ_URL = f"amqp://guest:secret-password@127.0.0.1:{port}/"
    caplog.set_level(logging.DEBUG, logger="workers")
    worker = get_worker("noop")
    thread = threading.Thread(target=worker.start, daemon=True)
    thread.start()
    time.sleep(2.0)  # three or so tries: 0.5 s, then 1 s between them
    worker.stop()
    thread.join(timeout=10)

    tries = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("workers")]
    assert len(tries) >= 2
    for record in tries:
        assert record.getMessage().startswith(
            f"noop: cannot reach RabbitMQ at 127.0.0.1:{port} (connection refused); retrying in"
        )
        assert record.exc_info is None
    assert not [r for r in caplog.records if r.name.startswith("pika") and r.levelno >= logging.WARNING]
    assert "secret-password" not in caplog.text
