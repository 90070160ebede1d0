"""How the bouncer client reads a remote bouncer's answers (a real HTTP server on loopback)."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from workers.base import RetryLater
from zerver.lib.push.bouncer_client import PushNotificationBouncerError, send_to_push_bouncer


@pytest.fixture
def bouncer_answering(settings):
    """Start a bouncer stand-in answering (status, headers, body); returns a function to set the answer."""
    answer = {"status": 200, "headers": {}, "body": {"results": []}}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(answer["status"])
            for k, v in answer["headers"].items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(json.dumps(answer["body"]).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.PUSH_BOUNCER_URL = f"http://127.0.0.1:{server.server_port}"
    settings.PUSH_BOUNCER_SERVER_UUID, settings.PUSH_BOUNCER_API_KEY = "u", "k"
    yield lambda **kw: answer.update(kw)
    server.shutdown()


def test_success_returns_the_json(bouncer_answering):
    bouncer_answering(status=200, body={"results": [1]})
    assert send_to_push_bouncer("notify", {"notifications": []}) == {"results": [1]}


def test_429_retries_later_after_retry_after(bouncer_answering):
    bouncer_answering(status=429, headers={"Retry-After": "30"}, body={})
    with pytest.raises(RetryLater) as raised:
        send_to_push_bouncer("notify", {})
    assert raised.value.delay == 30


def test_5xx_retries_later(bouncer_answering):
    bouncer_answering(status=502, body={})
    with pytest.raises(RetryLater):
        send_to_push_bouncer("notify", {})


def test_other_4xx_is_permanent(bouncer_answering):
    bouncer_answering(status=400, body={"error": "invalid request"})
    with pytest.raises(PushNotificationBouncerError, match="400"):
        send_to_push_bouncer("notify", {})


def test_no_connection_retries_later(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.PUSH_BOUNCER_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(RetryLater, match="unreachable"):
        send_to_push_bouncer("notify", {})
