"""The auth_token filter against a hostile or broken Keystone (an in-process fake: fault
injection only; tests/python/test_keystone.py uses the real one). Every answer ends in a
401 or 503, redirects are never followed (they would carry this service's password and the
user's token elsewhere), and no token or password reaches the logs."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

import pytest
from tokenward import auth_token

PASSWORD = "fault-pa55word-never-logged"
OWN = "gAAAAAfault-own-token-never-logged"
USER = "gAAAAAfault-user-token-never-logged"
SERVICE = "gAAAAAfault-service-token-never-logged"

# (status, headers, body chunks, seconds between chunks)
Answer = tuple[int, list[tuple[str, str]], list[bytes], float]
Respond = Callable[[str, dict[str, str]], Answer]


class FakeKeystone:
    """Answers ``respond(method, headers)``; records every request."""

    def __init__(self, respond: Respond) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                headers = {k: v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers))
                status, extra, chunks, pause = respond(self.command, headers)
                self.send_response(status)
                for name, value in extra:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(sum(len(c) for c in chunks)))
                self.end_headers()
                for chunk in chunks:
                    try:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(pause)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def issued(method: str, headers: dict[str, str]) -> Optional[Answer]:
    """This service's own token (a POST), else None."""
    if method != "POST":
        return None
    body = json.dumps({"token": {"expires_at": "2999-01-01T00:00:00.000000Z"}}).encode()
    return 201, [("X-Subject-Token", OWN), ("Content-Type", "application/json")], [body], 0.0


def valid_token() -> bytes:
    return json.dumps(
        {
            "token": {
                "methods": ["password"],
                "user": {"id": "u1", "name": "alice", "domain": {"id": "default", "name": "Default"}},
                "project": {"id": "p1", "name": "demo", "domain": {"id": "default", "name": "Default"}},
                "roles": [{"id": "r1", "name": "member"}],
                "expires_at": "2999-01-01T00:00:00.000000Z",
                "issued_at": "2020-01-01T00:00:00.000000Z",
            }
        }
    ).encode()


class App:
    def __init__(self) -> None:
        self.environ: Optional[dict[str, Any]] = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.environ = dict(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def make_filter(ks: FakeKeystone, **extra: str) -> tuple[Any, App]:
    app = App()
    conf = {
        "auth_url": ks.url + "/v3",  # versioned: no discovery GET among the scripted answers
        "auth_type": "password",
        "username": "nova",
        "password": PASSWORD,
        "user_domain_id": "default",
        "project_id": "service-project",
        "http_connect_timeout": "2",
        "http_request_max_retries": "0",
        "as_failure_threshold": "1000",
    }
    conf.update(extra)
    return auth_token.filter_factory({}, **conf)(app), app


def call(filt: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, headers

    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v2.1/servers", "SCRIPT_NAME": ""}
    env.update(environ)
    body = b"".join(filt(env, start_response))
    return seen["status"], seen["headers"], body


@pytest.fixture
def trap():
    """Where a redirect points: it must never be asked anything."""
    ks = FakeKeystone(lambda method, headers: (200, [], [valid_token()], 0.0))
    yield ks
    ks.close()


def _no_secret(caplog: pytest.LogCaptureFixture, *texts: Any) -> None:
    everything = "\n".join([r.getMessage() for r in caplog.records] + [repr(t) for t in texts])
    for secret in (PASSWORD, OWN, USER, SERVICE):
        assert secret not in everything, secret


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("which", ["POST", "GET"])
def test_a_redirect_is_never_followed_and_is_a_503(trap, caplog, status, which):
    def respond(method: str, headers: dict[str, str]) -> Answer:
        if method == which:
            return status, [("Location", trap.url + "/v3/auth/tokens")], [], 0.0
        return issued(method, headers) or (200, [], [valid_token()], 0.0)

    ks = FakeKeystone(respond)
    try:
        filt, app = make_filter(ks)
        with caplog.at_level(logging.DEBUG):
            result = call(filt, {"HTTP_X_AUTH_TOKEN": USER, "HTTP_X_SERVICE_TOKEN": SERVICE})
        assert result[0].startswith("503"), result
        assert app.environ is None
        assert trap.requests == [], "the redirect was followed"
        _no_secret(caplog, result)
    finally:
        ks.close()


def _echo_500(method: str, headers: dict[str, str]) -> Answer:
    said = f"{headers.get('X-Subject-Token')} {headers.get('X-Auth-Token')} {PASSWORD}"
    body = json.dumps({"error": {"code": 500, "title": "Internal Server Error", "message": said}})
    return 500, [("Content-Type", "application/json")], [body.encode()], 0.0


FAULTS: dict[str, tuple[Respond, str]] = {
    "garbage": (lambda m, h: (200, [], [b"{{{"], 0.0), "503"),
    "non-utf8": (lambda m, h: (200, [], [b'{"token": "\xff\xfe"}'], 0.0), "503"),
    "html-200": (lambda m, h: (200, [("Content-Type", "text/html")], [b"<html>hi</html>"], 0.0), "503"),
    "html-404": (lambda m, h: (404, [("Content-Type", "text/html")], [b"<html>nope</html>"], 0.0), "401"),
    "no-token": (lambda m, h: (200, [], [b"{}"], 0.0), "401"),
    "duplicate": (lambda m, h: (200, [], [b'{"token": {"user": {"id": "a", "id": "b"}}}'], 0.0), "503"),
    "too-large": (lambda m, h: (200, [], [b" " * (1 << 20), b"{}"], 0.0), "503"),
    "403": (lambda m, h: (403, [], [b""], 0.0), "503"),
    "500-echo": (_echo_500, "503"),
    "502": (lambda m, h: (502, [], [b"<html>bad gateway</html>"], 0.0), "503"),
    "drip": (lambda m, h: (200, [], [b" "] * 40 + [valid_token()], 0.25), "503"),
}


@pytest.mark.parametrize("name", sorted(FAULTS))
@pytest.mark.parametrize("side", ["POST", "GET"])
def test_a_faulty_answer_is_a_401_or_503_without_secrets_in_logs(caplog, name, side):
    fault, expected = FAULTS[name]
    if side == "POST":
        # This service's own token cannot be had: never the user's fault.
        expected = "503"

    def respond(method: str, headers: dict[str, str]) -> Answer:
        if method == side:
            return fault(method, headers)
        return issued(method, headers) or (200, [], [valid_token()], 0.0)

    ks = FakeKeystone(respond)
    try:
        filt, app = make_filter(ks)
        with caplog.at_level(logging.DEBUG):
            result = call(filt, {"HTTP_X_AUTH_TOKEN": USER})
        assert result[0][:3] == expected, (name, result)
        assert app.environ is None
        _no_secret(caplog, result)
    finally:
        ks.close()


SPOOFED = [
    "X-Identity-Status",
    "X-Service-Identity-Status",
    "X-User-Id",
    "X-User-Name",
    "X-User-Domain-Id",
    "X-User-Domain-Name",
    "X-Project-Id",
    "X-Project-Name",
    "X-Project-Domain-Id",
    "X-Project-Domain-Name",
    "X-Domain-Id",
    "X-Domain-Name",
    "X-Roles",
    "X-Role",
    "X-User",
    "X-Tenant",
    "X-Tenant-Id",
    "X-Tenant-Name",
    "X-Is-Admin-Project",
    "OpenStack-System-Scope",
    "X-Service-Catalog",
    "X-Service-Roles",
    "X-Service-User-Id",
    "X-Service-User-Name",
    "X-Service-User-Domain-Id",
    "X-Service-User-Domain-Name",
    "X-Service-Project-Id",
    "X-Service-Project-Name",
    "X-Service-Project-Domain-Id",
    "X-Service-Project-Domain-Name",
    "X-Service-Domain-Id",
    "X-Service-Domain-Name",
]


def _spoofed_environ() -> dict[str, str]:
    return {"HTTP_" + name.upper().replace("-", "_"): "spoofed" for name in SPOOFED}


@pytest.mark.parametrize(
    "tokens",
    [
        {},
        {"HTTP_X_AUTH_TOKEN": "unknown"},
        {"HTTP_X_SERVICE_TOKEN": "svc-valid"},
        {"HTTP_X_AUTH_TOKEN": "user-valid", "HTTP_X_SERVICE_TOKEN": "unknown"},
        {"HTTP_X_AUTH_TOKEN": "user-valid", "HTTP_X_SERVICE_TOKEN": "user-valid"},
        {"HTTP_X_AUTH_TOKEN": "user-valid"},
    ],
    ids=["none", "invalid", "service-only", "bad-service", "service-without-role", "valid"],
)
def test_spoofed_identity_keys_never_reach_the_app_with_delay_auth_decision(tokens):
    def respond(method: str, headers: dict[str, str]) -> Answer:
        own = issued(method, headers)
        if own:
            return own
        subject = headers.get("X-Subject-Token")
        if subject in ("user-valid", "svc-valid"):
            body = json.loads(valid_token())
            if subject == "svc-valid":
                body["token"]["roles"] = [{"id": "s", "name": "service"}]
                body["token"]["user"]["id"] = "svc-user"
            return 200, [], [json.dumps(body).encode()], 0.0
        return 404, [], [b'{"error": {"code": 404}}'], 0.0

    ks = FakeKeystone(respond)
    try:
        filt, app = make_filter(ks, delay_auth_decision="true")
        status, _, _ = call(filt, {**_spoofed_environ(), **tokens})
        assert status.startswith("200"), status
        assert app.environ is not None
        leaked = {k: v for k, v in app.environ.items() if v == "spoofed"}
        assert leaked == {}, leaked
    finally:
        ks.close()


def test_the_fake_drips_slower_than_the_timeout():
    # Self-check of the drip fault: the whole answer takes longer than http_connect_timeout.
    fault, _ = FAULTS["drip"]
    _, _, chunks, pause = fault("GET", {})
    assert len(chunks) * pause > 2
