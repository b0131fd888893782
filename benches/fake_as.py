"""Loopback RFC 7662 introspection endpoint for the benchmarks.

Every POST gets ``200`` with an *active* response in the Keycloak shape of the Tacker guide
(reference spec section 13): ``project_info{id,name,domain{id,name}}``,
``user{id,name,domain{id,name}}``, ``role_info`` "admin,member,reader" and the standard members.
``GET /stats`` returns ``{"posts": N}`` (the number of introspections so far).

HTTP/1.1 keep-alive with TCP_NODELAY: without it, Nagle plus delayed ACK add ~40 ms to each
small response, which is an artefact of the test server and not of the clients.

Run in a thread (``FakeAS().start()``) or as a subprocess (``python fake_as.py``: prints the port
on the first line of stdout, exits when stdin closes). The subprocess mode keeps the server off
the benchmark's GIL, which is what a real AS looks like to the middleware.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Counter:
    def __init__(self) -> None:
        self.posts = 0
        self.lock = threading.Lock()

    def bump(self) -> None:
        with self.lock:
            self.posts += 1


def _claims() -> bytes:
    now = int(time.time())
    return json.dumps(
        {
            "active": True,
            "exp": now + 3600,
            "iat": now,
            "client_id": "tacker_api_proj",
            "username": "service-account-tacker_api_proj",
            "scope": "openstack profile email",
            "token_type": "Bearer",
            "project_info": {
                "id": "4f7bd22a8e914a1d8b0b3c1a2d3e4f50",
                "name": "nfv",
                "domain": {"id": "default", "name": "Default"},
            },
            "user": {
                "id": "9a8b7c6d5e4f40312a1b0c9d8e7f6a5b",
                "name": "nfv_user",
                "domain": {"id": "default", "name": "Default"},
            },
            "role_info": "admin,member,reader",
        },
        separators=(",", ":"),
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY on the accepted socket
    server_version = "fake-as/1"
    sys_version = ""

    def log_message(self, *args: object) -> None:  # no stderr chatter
        pass

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.counter.bump()  # type: ignore[attr-defined]
        self._send(_claims())

    def do_GET(self) -> None:
        self._send(json.dumps({"posts": self.server.counter.posts}).encode())  # type: ignore[attr-defined]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class FakeAS:
    """The server in a daemon thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = _Server((host, port), _Handler)
        self.server.counter = _Counter()  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeAS:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main() -> None:
    server = FakeAS().start()
    print(server.port, flush=True)
    sys.stdin.read()  # parent closed the pipe (or died): stop
    server.stop()


if __name__ == "__main__":
    main()
