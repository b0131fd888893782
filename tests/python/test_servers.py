"""The filter in the servers OpenStack runs: eventlet.wsgi (tacker-server) and gunicorn with
--preload; and spoofed identity headers sent over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import oidc_as
import pytest
from cache_servers import free_port
from conftest import ROOT, call, introspection_options
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "tests" / "support")])}

SPOOFED = [
    "X-Service-Catalog",
    "X-Identity-Status",
    "X-Service-Identity-Status",
    "X-Is-Admin-Project",
    "X-Role",
    "X-User",
    "X-Tenant-Id",
    "X-Tenant-Name",
    "X-Tenant",
    "X-Roles",
    "X-Service-Roles",
    "OpenStack-System-Scope",
    *[
        f"{p}-{s}"
        for p in ("X", "X-Service")
        for s in (
            "Domain-Id",
            "Domain-Name",
            "Project-Id",
            "Project-Name",
            "Project-Domain-Id",
            "Project-Domain-Name",
            "User-Id",
            "User-Name",
            "User-Domain-Id",
            "User-Domain-Name",
        )
    ],
]


def get(port: int, headers: dict[str, str], path: str = "/") -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, json.loads(body)


def wait_port(proc: subprocess.Popen[str], port: int, deadline: float = 30) -> None:
    end = time.time() + deadline
    while time.time() < end:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server died"
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} not open")


def test_spoofed_identity_headers_never_reach_the_app(auth_server: oidc_as.AuthServer) -> None:
    app = ExternalAuth2Protocol(echo_app, introspection_options(auth_server, "svc-post"))
    token = oidc_as.obtain_token(auth_server, "svc-post")
    spoof = {h: "spoofed" for h in SPOOFED}
    for _ in range(2):  # a miss, then a cache hit (which deletes only the keys it does not write)
        status, _, body = call(app, {**spoof, "Authorization": f"Bearer {token}"})
        assert status == "200 OK"
        leaked = {k: v for k, v in body["environ"].items() if v == "spoofed"}
        assert leaked == {}
        assert "HTTP_OPENSTACK_SYSTEM_SCOPE" not in body["environ"]
        assert body["environ"]["HTTP_X_USER_ID"] == "svc-post"
    # Refused requests never reach the app at all.
    status, _, body = call(app, {**spoof, "Authorization": "Bearer nope"})
    assert status == "401 Unauthorized" and "environ" not in body


@pytest.fixture(scope="module")
def gunicorn(auth_server: oidc_as.AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("gunicorn")
    options = introspection_options(auth_server, "svc-basic")
    lines = "\n".join(f"{k} = {v.replace('%', '%%')}" for k, v in options.items())
    ini = tmp / "api-paste.ini"
    ini.write_text(
        textwrap.dedent(
            """\
            [pipeline:main]
            pipeline = authtoken echo

            [filter:authtoken]
            paste.filter_factory = tokenward.external_oauth2_token:filter_factory
            """
        )
        + lines
        + "\n\n[app:echo]\npaste.app_factory = wsgi_apps:echo_app_factory\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--preload",
            "--workers",
            "2",
            "--threads",
            "4",
            "--bind",
            f"127.0.0.1:{port}",
            "--paste",
            str(ini),
        ],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(proc, port)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_gunicorn_preload_two_workers_concurrent(gunicorn: int, auth_server: oidc_as.AuthServer) -> None:
    tokens = [oidc_as.obtain_token(auth_server, c) for c in ("svc-post", "svc-basic", "svc-admin", "svc-array")]

    def one(i: int) -> tuple[int, int, str]:
        status, body = get(gunicorn, {"Authorization": f"Bearer {tokens[i % len(tokens)]}"})
        return status, body.get("pid", 0), body.get("environ", {}).get("HTTP_X_USER_ID", "")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    assert {s for s, _, _ in results} == {200}
    assert len({pid for _, pid, _ in results}) == 2, "both forked workers answered"
    assert {u for _, _, u in results} == {"svc-post", "svc-basic", "svc-admin", "svc-array"}
    conn = http.client.HTTPConnection("127.0.0.1", gunicorn, timeout=10)
    conn.request("GET", "/", headers={"Authorization": "Bearer garbage"})
    assert conn.getresponse().status == 401


def test_spoofed_headers_over_http_in_every_spelling(gunicorn: int, auth_server: oidc_as.AuthServer) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-post")
    headers = {"Authorization": f"Bearer {token}"}
    for name in SPOOFED:
        headers[name] = "spoofed"
    status, body = get(gunicorn, headers)
    assert status == 200
    assert [k for k, v in body["environ"].items() if v == "spoofed"] == []
    for spelling in ("x_roles", "X_ROLES", "openstack_system_scope", "OPENSTACK-SYSTEM-SCOPE", "x-user-id"):
        status, body = get(gunicorn, {"Authorization": f"Bearer {token}", spelling: "spoofed"})
        assert status == 200
        assert "spoofed" not in body["environ"].values(), spelling


def test_eventlet_misses_do_not_stall_the_hub(pki: Path) -> None:
    delay_ms = 1000
    with oidc_as.start_as(pki, delay_ms=delay_ms) as slow_as:
        tokens = [oidc_as.obtain_token(slow_as, "svc-post") for _ in range(20)]
        options = introspection_options(slow_as, "svc-post")
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "eventlet_server.py"), json.dumps(options)],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            started = time.monotonic()
            with ThreadPoolExecutor(20) as pool:
                results = list(pool.map(lambda t: get(port, {"Authorization": f"Bearer {t}"})[0], tokens))
            elapsed = time.monotonic() - started
            # Refusals decided in eventlet's thread pool are logged on the request's greenthread.
            with ThreadPoolExecutor(8) as pool:
                refused = list(pool.map(lambda i: get(port, {"Authorization": f"Bearer junk-{i}"})[0], range(8)))
        finally:
            proc.terminate()
            _, stderr = proc.communicate(timeout=10)
    assert refused == [401] * 8
    assert stderr.count("401 Unauthorized: token fp:") == 8, stderr[-3000:]
    assert "Traceback" not in stderr and "switch to a different thread" not in stderr, stderr[-3000:]
    assert results == [200] * 20
    # Serialised on the hub this would take 20 AS latencies (20 s). Allow a wide margin.
    print(f"20 concurrent misses under eventlet, AS latency {delay_ms} ms: {elapsed:.2f} s")
    assert elapsed < 6 * delay_ms / 1000, f"{elapsed:.1f} s: misses were serialised"
