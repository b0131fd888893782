"""Real memcached and redis-server processes on loopback for the shared-tier tests (Debian
packages `memcached` and `redis-server`), plus tiny clients to inspect what they store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _wait(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port}")


class Server:
    def __init__(self, argv: list[str], port: int, what: str) -> None:
        self.port = port
        self.plain_port = port
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(port, self.proc, what)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to the clients."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_memcached(port: Optional[int] = None) -> Server:
    """A memcached on ``port`` (a free one by default; pass a stopped server's to restart it)."""
    exe = shutil.which("memcached") or "/usr/bin/memcached"
    port = port or free_port()
    return Server([exe, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-u", "nobody"], port, "memcached")


def start_redis() -> Server:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="tw-redis-")
    return Server(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
        port,
        "redis-server",
    )


def start_redis_tls(pki: Path, auth_clients: bool = False) -> Server:
    """A redis-server with a TLS port (``.port``; the test PKI's server certificate, for
    localhost and 127.0.0.1) and a plain one (``.plain_port``) to inspect it. With
    ``auth_clients`` it requires a client certificate from the test CA (mutual TLS)."""
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port, plain = free_port(), free_port()
    tmp = tempfile.mkdtemp(prefix="tw-redis-tls-")
    server = Server(
        [
            exe,
            *("--port", str(plain), "--tls-port", str(port), "--bind", "127.0.0.1"),
            *("--tls-cert-file", str(pki / "server.pem"), "--tls-key-file", str(pki / "server.key")),
            *("--tls-ca-cert-file", str(pki / "ca.pem"), "--tls-auth-clients", "yes" if auth_clients else "no"),
            *("--save", "", "--appendonly", "no", "--dir", tmp),
        ],
        port,
        "redis-server (TLS)",
    )
    server.plain_port = plain
    return server


class Cluster:
    """A Redis Cluster of real redis-server processes on loopback, masters only."""

    def __init__(self, nodes: int = 3) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        tmp = tempfile.mkdtemp(prefix="tw-redis-cluster-")
        self.nodes: list[Server] = []
        try:
            for _ in range(nodes):
                port = free_port()
                self.nodes.append(
                    Server(
                        [
                            exe,
                            *("--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"),
                            *("--cluster-port", str(free_port()), "--cluster-config-file", f"nodes-{port}.conf"),
                            *("--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no", "--dir", tmp),
                        ],
                        port,
                        "redis-server (cluster)",
                    )
                )
            subprocess.run(
                [
                    shutil.which("redis-cli") or "/usr/bin/redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{n.port}" for n in self.nodes),
                    *("--cluster-replicas", "0", "--cluster-yes"),
                ],
                capture_output=True,
                check=True,
                timeout=60,
            )
            deadline = time.time() + 30
            while not all(b"cluster_state:ok" in redis_cli(n.port, "CLUSTER", "INFO") for n in self.nodes):
                if time.time() > deadline:
                    raise TimeoutError("the Redis Cluster did not become ready")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _exchange(port: int, payload: bytes, end: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(end):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def memcached_keys(port: int) -> list[str]:
    """Every key memcached holds (lru_crawler metadump; retried while a crawl is busy)."""
    from urllib.parse import unquote

    for _ in range(100):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"lru_crawler metadump all\r\n")
            raw = b""
            while not (raw.endswith(b"END\r\n") or (raw.startswith(b"BUSY") and raw.endswith(b"\r\n"))):
                chunk = s.recv(65536)
                if not chunk:
                    break
                raw += chunk
        if not raw.startswith(b"BUSY"):
            break
        time.sleep(0.05)
    return [unquote(line.split()[0][4:]) for line in raw.decode().splitlines() if line.startswith("key=")]


def memcached_stats(port: int) -> dict[str, int]:
    """memcached's integer counters (``get_hits``, ``cmd_set``, ...)."""
    raw = _exchange(port, b"stats\r\n", b"END\r\n").decode()
    stats = {}
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "STAT" and parts[2].isdigit():
            stats[parts[1]] = int(parts[2])
    return stats


def memcached_get(port: int, key: str) -> Optional[bytes]:
    raw = _exchange(port, f"get {key}\r\n".encode(), b"END\r\n")
    if not raw.startswith(b"VALUE"):
        return None
    header, _, rest = raw.partition(b"\r\n")
    length = int(header.split()[3])
    return rest[:length]


def redis_cli(port: int, *args: str) -> bytes:
    exe = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    return subprocess.run([exe, "-p", str(port), "--raw", *args], capture_output=True, check=True, timeout=10).stdout


def redis_keys(port: int) -> list[str]:
    return [k for k in redis_cli(port, "KEYS", "*").decode().splitlines() if k]
