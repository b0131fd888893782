"""An in-process introspection endpoint for fault injection: slow, down, garbage answers.
The real authorization server (tests/as) is used for everything else."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

Responder = Callable[[dict[str, list[str]], dict[str, str]], tuple[int, bytes]]


#: The claim mapping that fits ``active_claims`` and the real test AS's extra claims.
MAPPING = {
    "mapping_project_id": "project.id",
    "mapping_project_name": "project.name",
    "mapping_project_domain_id": "project.domain.id",
    "mapping_project_domain_name": "project.domain.name",
    "mapping_user_domain_id": "user_domain.id",
    "mapping_user_domain_name": "user_domain.name",
    "mapping_roles": "roles",
}


def active_claims(**extra: Any) -> dict[str, Any]:
    """An active answer whose claims map with tests' standard mapping."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "active": True,
        "client_id": "svc-fake",
        "username": "alice",
        "exp": now + 3600,
        "iat": now,
        "user_domain": {"id": "default", "name": "Default"},
        "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "roles": "member,reader",
    }
    claims.update(extra)
    return claims


class FakeAS:
    """``respond(form, headers) -> (status, body)`` decides each answer."""

    def __init__(self, respond: Optional[Responder] = None, delay: float = 0.0) -> None:
        self.respond: Responder = respond or (lambda form, headers: (200, json.dumps(active_claims()).encode()))
        self.delay = delay
        self.requests: list[tuple[dict[str, list[str]], dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((form, headers))
                if outer.delay:
                    time.sleep(outer.delay)
                status, body = outer.respond(form, headers)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/introspect"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeAS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/introspect"
