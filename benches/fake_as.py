"""Loopback RFC 7662 introspection endpoint for the benchmarks.

Every POST gets ``200`` with an *active* response in the Keycloak shape of the Tacker guide
(reference spec section 13): ``project_info{id,name,domain{id,name}}``,
``user{id,name,domain{id,name}}``, ``role_info`` "admin,member,reader" and the standard members.
``GET /stats`` returns ``{"posts": N}`` (the number of introspections so far).

Test modes, chosen per filter by the introspection URL (added for benches/bench_scale.py; any
other path keeps the behaviour above): leading path segments ``/fake-inactive/`` answer
``{"active":false}`` and ``/fake-delay-<ms>/`` answer after sleeping <ms> milliseconds, e.g.
``http://127.0.0.1:PORT/fake-delay-50/realms/openstack/.../introspect``. ``--reuse-port``
(``SO_REUSEPORT``) lets several ``fake_as.py --port P`` processes share one port, so that the
kernel spreads connections over them when one Python process is the bottleneck. ``--fast``
serves the same answers from an asyncio protocol (a minimal HTTP/1.1 keep-alive parser, no
http.server/thread per connection): several times the request rate, for bulk fills and floods.

HTTP/1.1 keep-alive with TCP_NODELAY: without it, Nagle plus delayed ACK add ~40 ms to each
small response, which is an artefact of the test server and not of the clients.

Run in a thread (``FakeAS().start()``) or as a subprocess (``python fake_as.py``: prints the port
on the first line of stdout, exits when stdin closes). The subprocess mode keeps the server off
the benchmark's GIL, which is what a real AS looks like to the middleware.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional


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


_INACTIVE = b'{"active":false}'


def _modes(path: str) -> tuple[bool, int]:
    """(inactive, delay_ms) from the leading ``fake-*`` segments of the request path."""
    inactive, delay_ms = False, 0
    for seg in path.split("/")[1:]:
        if seg == "fake-inactive":
            inactive = True
        elif seg.startswith("fake-delay-") and seg[11:].isdigit():
            delay_ms = int(seg[11:])
        else:
            break
    return inactive, delay_ms


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
        inactive, delay_ms = _modes(self.path)
        if delay_ms:
            time.sleep(delay_ms / 1000.0)
        self._send(_INACTIVE if inactive else _claims())

    def do_GET(self) -> None:
        self._send(json.dumps({"posts": self.server.counter.posts}).encode())  # type: ignore[attr-defined]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class _ReusePortServer(_Server):
    request_queue_size = 256

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class FakeAS:
    """The server in a daemon thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, reuse_port: bool = False) -> None:
        self.server = (_ReusePortServer if reuse_port else _Server)((host, port), _Handler)
        self.server.counter = _Counter()  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeAS:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _FastProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive server: request line, headers, Content-Length body."""

    def __init__(self, counter: _Counter) -> None:
        self.counter = counter
        self.buf = b""
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip() or 0)
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            method, path = ([*head.split(" ", 2), "", ""])[:2]
            if method == "POST":
                self.counter.posts += 1  # one event-loop thread: no lock needed
                inactive, delay_ms = _modes(path)
                body = _INACTIVE if inactive else _claims()
            else:
                delay_ms = 0
                body = json.dumps({"posts": self.counter.posts}).encode()
            resp = (
                b"HTTP/1.1 200 OK\r\nServer: fake-as/1\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            assert self.transport is not None
            if delay_ms:
                asyncio.get_running_loop().call_later(delay_ms / 1000.0, self._write, resp)
            else:
                self.transport.write(resp)

    def _write(self, resp: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(resp)


def serve_fast(port: int, reuse_port: bool) -> None:
    """Runs the asyncio server until stdin closes; prints the port first."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        counter = _Counter()
        server = await loop.create_server(
            lambda: _FastProtocol(counter),
            "127.0.0.1",
            port,
            reuse_port=reuse_port or None,
            backlog=1024,
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(run())


def main() -> None:
    p = argparse.ArgumentParser(description="loopback introspection endpoint for the benches")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    p.add_argument("--reuse-port", action="store_true", help="set SO_REUSEPORT (share the port)")
    p.add_argument("--fast", action="store_true", help="asyncio server (higher request rate)")
    args = p.parse_args()
    if args.fast:
        serve_fast(args.port, args.reuse_port)
        return
    server = FakeAS(port=args.port, reuse_port=args.reuse_port).start()
    print(server.port, flush=True)
    sys.stdin.read()  # parent closed the pipe (or died): stop
    server.stop()


if __name__ == "__main__":
    main()
