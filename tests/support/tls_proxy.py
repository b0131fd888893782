"""A real nginx (Debian package ``nginx``) as a TLS-terminating reverse proxy on loopback.

It runs in the foreground as the caller's user, one process (``master_process off``: no
switch to another user, whoever runs the tests), with its own prefix directory holding the
configuration, pid file, error and access logs and temp paths; nothing under /etc or /var is
read or written, and no system service is involved.

    proxy = Nginx(tmp_dir, server_block)   # server_block: the ``server { ... }`` text
    ...
    proxy.stop()
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

TEMPLATE = """\
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{server}
}}
"""


def nginx_binary() -> str:
    """The nginx executable (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        raise RuntimeError("nginx not found: install the Debian package nginx (scripts/env.sh does)")
    return found


class Nginx:
    """nginx with ``server`` (one or more ``server { ... }`` blocks) inside ``http``, its
    prefix in ``directory``; waits until every port in ``ports`` accepts connections."""

    def __init__(self, directory: Path, server: str, ports: list[int]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(TEMPLATE.format(dir=self.dir, server=server))
        exe = nginx_binary()
        # -e: the error log before the configuration is read (else the compiled-in path).
        argv = [exe, "-p", str(self.dir), "-c", str(self.conf), "-e", str(self.dir / "error.log"), "-g", "daemon off;"]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 15
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited with {self.proc.returncode}:\n{self.error_log()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        self.stop()
                        raise TimeoutError(f"nginx did not listen on {port}:\n{self.error_log()}") from None
                    time.sleep(0.05)

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: fast shutdown
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
