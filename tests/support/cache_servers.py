"""Real memcached and redis-server processes on loopback for the shared-tier tests (Debian
packages `memcached` and `redis-server`), plus tiny clients to inspect what they store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
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
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(port, self.proc, what)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_memcached() -> Server:
    exe = shutil.which("memcached") or "/usr/bin/memcached"
    port = free_port()
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
