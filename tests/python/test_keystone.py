"""tokenward.auth_token against a real Keystone (tests/support/keystone_server.py: the keystone
package over HTTPS, X.509 tokenless authorization, seeded users): each token scope with each way
the service authenticates, mapped as keystonemiddleware.auth_token maps it (the reference runs
beside it on the same tokens), an untrusted certificate, revocation, application credentials
and their access rules, service tokens, gunicorn --preload and eventlet."""

from __future__ import annotations

import http.client
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import jwt_tools
import keystone_server
import oidc_as
import pytest
from cache_servers import free_port, memcached_get, memcached_keys, start_memcached
from conftest import DPOP_ENVIRON, DPOP_URL, introspection_options
from conftest import call as wsgi_call
from tokenward import auth_token

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "tests" / "support")])}

AUTH_TYPES = ["v3tokenlessauth", "password", "v3applicationcredential"]
SCOPES = ["project", "domain", "system", "unscoped"]

# What keystonemiddleware.auth_token sets (or sets to None) for a user or service token.
IDENTITY_KEYS = [
    "HTTP_X_IDENTITY_STATUS",
    "HTTP_X_SERVICE_IDENTITY_STATUS",
    "HTTP_X_ROLES",
    "HTTP_X_ROLE",
    "HTTP_OPENSTACK_SYSTEM_SCOPE",
    "HTTP_X_IS_ADMIN_PROJECT",
    "HTTP_X_SERVICE_CATALOG",
    "HTTP_X_USER",
    "HTTP_X_TENANT_ID",
    "HTTP_X_TENANT_NAME",
    "HTTP_X_TENANT",
    *[
        f"HTTP_X{p}_{s}"
        for p in ("", "_SERVICE")
        for s in (
            "DOMAIN_ID",
            "DOMAIN_NAME",
            "PROJECT_ID",
            "PROJECT_NAME",
            "PROJECT_DOMAIN_ID",
            "PROJECT_DOMAIN_NAME",
            "USER_ID",
            "USER_NAME",
            "USER_DOMAIN_ID",
            "USER_DOMAIN_NAME",
        )
    ],
    "HTTP_X_SERVICE_ROLES",
]


class App:
    """Keeps the environ of the last request it got."""

    def __init__(self) -> None:
        self.environ: dict[str, Any] | None = None

    def __call__(self, environ, start_response):
        self.environ = dict(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def call(filt, headers: dict[str, str], method: str = "GET", path: str = "/v2.1/servers") -> tuple[str, dict]:
    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "wsgi.url_scheme": "http"}
    for k, v in headers.items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    got: dict[str, Any] = {}

    def start_response(status, response_headers, exc_info=None):
        got["status"], got["headers"] = status, dict(response_headers)

    b"".join(filt(environ, start_response))
    return got["status"], got["headers"]


def identity(environ: dict[str, Any]) -> dict[str, Any]:
    """The identity keys of an environ that hold a value (the reference's None = absent)."""
    return {k: environ[k] for k in IDENTITY_KEYS if environ.get(k) is not None}


def ours(keystone, auth_type: str, **overrides: str) -> tuple[Any, App]:
    app = App()
    return auth_token.filter_factory({}, **keystone.middleware_options(auth_type, **overrides))(app), app


def reference(keystone, auth_type: str, tmp_path: Path, **overrides: str) -> tuple[Any, App]:
    app = App()
    options = keystone.middleware_options(auth_type, **overrides)
    return keystone_server.keystonemiddleware_filter(app, options, tmp_path / f"ksm-{auth_type}.conf"), app


@pytest.fixture(scope="module")
def filters(keystone) -> dict[str, tuple[Any, App]]:
    return {t: ours(keystone, t) for t in AUTH_TYPES}


@pytest.fixture(scope="module")
def references(keystone, tmp_path_factory) -> dict[str, tuple[Any, App]]:
    tmp = tmp_path_factory.mktemp("ksm")
    return {t: reference(keystone, t, tmp) for t in AUTH_TYPES}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("auth_type", AUTH_TYPES)
def test_each_scope_with_each_service_auth_maps_as_auth_token(keystone, filters, references, auth_type, scope):
    token = keystone.token("alice", scope=scope)
    filt, app = filters[auth_type]
    status, _ = call(filt, {"X-Auth-Token": token})
    assert status == "200 OK", keystone.log_tail()
    got = identity(app.environ)
    ref_filt, ref_app = references[auth_type]
    assert call(ref_filt, {"X-Auth-Token": token})[0] == "200 OK"
    want = identity(ref_app.environ)
    assert got == want
    # And what that is, from Keystone's own answer.
    answer = keystone.validate(token)
    assert got["HTTP_X_IDENTITY_STATUS"] == "Confirmed"
    assert got["HTTP_X_USER_ID"] == keystone.users["alice"].id
    assert got["HTTP_X_ROLES"] == ",".join(r["name"] for r in answer.get("roles", []))
    assert ("HTTP_OPENSTACK_SYSTEM_SCOPE" in got) == (scope == "system")
    assert ("HTTP_X_PROJECT_ID" in got) == (scope == "project")
    assert ("HTTP_X_DOMAIN_ID" in got) == (scope == "domain")
    if scope == "project":
        assert got["HTTP_X_PROJECT_ID"] == keystone.projects["demo"].id
        assert json.loads(got["HTTP_X_SERVICE_CATALOG"])[0]["endpoints"]
    if scope == "unscoped":
        assert got["HTTP_X_ROLES"] == "" and "HTTP_X_SERVICE_CATALOG" not in got
    assert app.environ["keystone.token_info"]["token"]["user"]["id"] == keystone.users["alice"].id
    plugin = app.environ["keystone.token_auth"]
    assert plugin.has_user_token and plugin.user.user_id == keystone.users["alice"].id
    headers = plugin.get_headers(None)
    assert headers["X-Auth-Token"] == token
    # The service's own token goes with it when it has one (not with tokenless auth).
    assert ("X-Service-Token" in headers) == (auth_type != "v3tokenlessauth")
    if auth_type != "v3tokenlessauth":
        assert keystone.validate(headers["X-Service-Token"])["user"]["name"] in ("svc",)


def test_each_request_gets_its_own_token_info(keystone, filters) -> None:
    filt, app = filters["password"]
    token = keystone.token("alice")
    infos = []
    for _ in range(3):
        assert call(filt, {"X-Auth-Token": token})[0] == "200 OK"
        infos.append(app.environ["keystone.token_info"])
    assert infos[0] == infos[1]
    infos[0]["token"]["roles"].append({"id": "x", "name": "admin"})
    infos[0]["token"]["catalog"][0]["endpoints"].clear()
    infos[0]["token"]["user"]["name"] = "mallory"
    assert infos[1] == infos[2] and infos[1] != infos[0]
    assert "admin" not in [r["name"] for r in infos[2]["token"]["roles"]]
    assert filt.authenticator.metrics()["cache_hits"] >= 2
    # keystone.token_auth (one per token while cached) has its own copy, untouched.
    plugin = app.environ["keystone.token_auth"]
    assert "admin" not in plugin.user.role_names and plugin.user.username == "alice"
    assert plugin.get_headers(None)["X-Auth-Token"] == token


def test_concurrent_requests_with_one_new_token_make_one_validation(keystone, filters) -> None:
    filt, _ = filters["v3tokenlessauth"]
    token = keystone.token("alice")
    since = len(keystone.access_log())
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: call(filt, {"X-Auth-Token": token})[0], range(8)))
    assert statuses == ["200 OK"] * 8
    assert keystone.validations(since, user_agent="tokenward") == 1


def test_password_auth_obtains_one_service_token_for_all_threads(keystone) -> None:
    filt, _ = ours(keystone, "password")
    tokens = [keystone.token("alice") for _ in range(8)]
    since = len(keystone.access_log())
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda t: call(filt, {"X-Auth-Token": t})[0], tokens))
    assert statuses == ["200 OK"] * 8
    mine = [r for r in keystone.access_log()[since:] if r.user_agent.startswith("tokenward")]
    posts = [r for r in mine if r.method == "POST" and r.path == "/v3/auth/tokens"]
    gets = [r for r in mine if r.method == "GET" and r.path == "/v3/auth/tokens"]
    assert (len(posts), len(gets)) == (1, 8), mine


@pytest.mark.parametrize("auth_type", ["password", "v3applicationcredential"])
def test_an_unversioned_auth_url_is_discovered_from_keystones_version_document(keystone, auth_type) -> None:
    """auth_url without /v3 (as devstack writes it): Keystone's root answers 300 with its
    versions; the filter finds v3 there once and validates as with auth_url ending in /v3."""
    filt, app = ours(keystone, auth_type, auth_url=keystone.url)
    since = len(keystone.access_log())
    for _ in range(3):
        status, _ = call(filt, {"X-Auth-Token": keystone.token("alice")})
        assert status == "200 OK"
    assert app.environ is not None and app.environ["HTTP_X_USER_NAME"] == "alice"
    mine = [r for r in keystone.access_log()[since:] if r.user_agent.startswith("tokenward")]
    assert [(r.method, r.path) for r in mine if not r.path.startswith("/v3/")] == [("GET", "/")], mine
    assert sum(r.method == "POST" and r.path == "/v3/auth/tokens" for r in mine) == 1, mine


@pytest.mark.parametrize("strategy", ["None", "ENCRYPT"])
def test_hosts_share_validations_through_memcached(keystone, strategy) -> None:
    with start_memcached() as memcached:
        shared = {
            "memcached_servers": f"127.0.0.1:{memcached.port}",
            "memcache_security_strategy": strategy,
            "memcache_secret_key": "fleet-secret-keystone",
        }
        (a, _), (b, app_b) = ours(keystone, "password", **shared), ours(keystone, "password", **shared)
        token = keystone.token("alice")
        assert call(a, {"X-Auth-Token": token})[0] == "200 OK"
        since = len(keystone.access_log())
        assert call(b, {"X-Auth-Token": token})[0] == "200 OK"
        assert app_b.environ["HTTP_X_USER_ID"] == keystone.users["alice"].id
        assert keystone.validations(since, user_agent="tokenward") == 0, "host B used host A's answer"
        assert b.authenticator.metrics()["shared_hits"] == 1
        keys = memcached_keys(memcached.port)
        assert keys and all(token not in k for k in keys)
        stored = [memcached_get(memcached.port, k) or b"" for k in keys]
        assert all(token.encode() not in v for v in stored)
        assert any(b"alice" in v for v in stored) == (strategy == "None")


def test_an_invalid_token_is_401_with_the_keystone_challenge_and_cached(keystone, filters) -> None:
    filt, app = filters["v3tokenlessauth"]
    app.environ = None
    token = keystone.token("bob")
    keystone.revoke(token)
    before = filt.authenticator.metrics()
    status, headers = call(filt, {"X-Auth-Token": token})
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'
    assert app.environ is None
    status, _ = call(filt, {"X-Auth-Token": token})
    after = filt.authenticator.metrics()
    assert status == "401 Unauthorized"
    assert after["introspections"] - before["introspections"] == 1, "the refusal is cached"
    assert after["cache_negative_hits"] - before["cache_negative_hits"] == 1


def test_a_revoked_token_is_refused_once_its_cache_time_has_passed(keystone) -> None:
    filt, _ = ours(keystone, "v3tokenlessauth", token_cache_time="1")
    token = keystone.token("alice")
    assert call(filt, {"X-Auth-Token": token})[0] == "200 OK"
    keystone.revoke(token)
    assert call(filt, {"X-Auth-Token": token})[0] == "200 OK", "cached for token_cache_time"
    deadline = time.monotonic() + 15
    status = "200 OK"
    while status == "200 OK" and time.monotonic() < deadline:
        time.sleep(0.2)
        status = call(filt, {"X-Auth-Token": token})[0]
    assert status == "401 Unauthorized"


def test_an_untrusted_issuers_certificate_is_503_with_a_clear_log_not_401(keystone, caplog) -> None:
    cert, key = keystone.untrusted_cert
    caplog.set_level(logging.INFO)
    filt, app = ours(keystone, "v3tokenlessauth", certfile=cert, keyfile=key, delay_auth_decision="true")
    token = keystone.token("alice")
    for _ in range(3):
        status, headers = call(filt, {"X-Auth-Token": token})
        assert status == "503 Service Unavailable"
        assert headers["Retry-After"]
    assert app.environ is None, "delay_auth_decision does not pass an outage on as Invalid"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "trusted_issuer" in errors[0] or "certificate" in errors[0], errors[0]
    assert token not in caplog.text


def test_keystone_unreachable_is_503_even_with_delay_auth_decision(keystone) -> None:
    port = free_port()
    filt, app = ours(
        keystone,
        "v3tokenlessauth",
        auth_url=f"https://127.0.0.1:{port}/v3",
        delay_auth_decision="true",
        http_request_max_retries="0",
    )
    status, headers = call(filt, {"X-Auth-Token": keystone.token("alice")})
    assert status == "503 Service Unavailable" and "Retry-After" in headers
    assert app.environ is None


def test_application_credential_tokens_and_their_access_rules(keystone) -> None:
    plain = keystone.token(keystone.app_creds["alice"])
    filt, app = ours(keystone, "password")
    assert call(filt, {"X-Auth-Token": plain})[0] == "200 OK"
    assert app.environ["HTTP_X_USER_ID"] == keystone.users["alice"].id
    assert app.environ["HTTP_X_PROJECT_ID"] == keystone.projects["demo"].id
    ruled = keystone.token(keystone.app_creds["alice-rules"])
    # Without service_type the rules cannot be enforced: refused, as the reference.
    assert call(filt, {"X-Auth-Token": ruled}, path="/allowed/x")[0] == "401 Unauthorized"
    filt, app = ours(keystone, "password", service_type=keystone_server.SERVICE_TYPE)
    assert call(filt, {"X-Auth-Token": ruled}, "GET", "/allowed/a/b")[0] == "200 OK"
    assert call(filt, {"X-Auth-Token": ruled}, "POST", "/allowed/items")[0] == "200 OK"
    assert call(filt, {"X-Auth-Token": ruled}, "DELETE", "/allowed/items")[0] == "401 Unauthorized"
    assert call(filt, {"X-Auth-Token": ruled}, "GET", "/elsewhere")[0] == "401 Unauthorized"
    # A chain of service calls (a valid service token) is not held to the user-facing rules.
    service = keystone.token("nova")
    headers = {"X-Auth-Token": ruled, "X-Service-Token": service}
    assert call(filt, headers, "DELETE", "/allowed/items")[0] == "200 OK"
    assert call(filt, {"X-Auth-Token": ruled, "X-Service-Token": "garbage"}, "DELETE", "/x")[0] == "401 Unauthorized"


def test_service_tokens_and_service_token_roles_required(keystone, tmp_path) -> None:
    user = keystone.token("alice")
    filt, app = ours(keystone, "v3tokenlessauth")
    status, _ = call(filt, {"X-Auth-Token": user, "X-Service-Token": keystone.token("nova")})
    assert status == "200 OK"
    env = app.environ
    assert env["HTTP_X_SERVICE_IDENTITY_STATUS"] == "Confirmed"
    assert env["HTTP_X_SERVICE_USER_NAME"] == "nova"
    assert env["HTTP_X_SERVICE_PROJECT_ID"] == keystone.projects["service"].id
    assert "service" in env["HTTP_X_SERVICE_ROLES"].split(",")
    assert env["HTTP_X_USER_ID"] == keystone.users["alice"].id
    # A user's token as the service token: refused (service_token_roles_required defaults true).
    status, _ = call(filt, {"X-Auth-Token": user, "X-Service-Token": keystone.token("bob")})
    assert status == "401 Unauthorized"
    lax, app = ours(keystone, "v3tokenlessauth", service_token_roles_required="false")
    assert call(lax, {"X-Auth-Token": user, "X-Service-Token": keystone.token("bob")})[0] == "200 OK"
    assert app.environ["HTTP_X_SERVICE_USER_NAME"] == "bob"


def test_a_system_scoped_service_token_does_not_make_the_user_system_scoped(keystone, tmp_path) -> None:
    user = keystone.token("alice")
    service = keystone.token("admin", scope="system")
    overrides = {"service_token_roles": "admin"}
    filt, app = ours(keystone, "v3tokenlessauth", **overrides)
    assert call(filt, {"X-Auth-Token": user, "X-Service-Token": service})[0] == "200 OK"
    assert "HTTP_OPENSTACK_SYSTEM_SCOPE" not in app.environ
    assert app.environ["HTTP_X_PROJECT_ID"] == keystone.projects["demo"].id
    # The reference makes the project-scoped user system-scoped.
    ref, ref_app = reference(keystone, "v3tokenlessauth", tmp_path, **overrides)
    assert call(ref, {"X-Auth-Token": user, "X-Service-Token": service})[0] == "200 OK"
    assert ref_app.environ["HTTP_OPENSTACK_SYSTEM_SCOPE"] == "all"


def test_a_client_sent_system_scope_never_reaches_the_app(keystone, tmp_path) -> None:
    filt, app = ours(keystone, "v3tokenlessauth", delay_auth_decision="true")
    for headers in ({}, {"X-Auth-Token": "gAAAAAnot-a-token"}, {"X-Auth-Token": keystone.token("alice")}):
        assert call(filt, {**headers, "OpenStack-System-Scope": "all"})[0] == "200 OK"
        assert "HTTP_OPENSTACK_SYSTEM_SCOPE" not in app.environ, headers
    ref, ref_app = reference(keystone, "v3tokenlessauth", tmp_path, delay_auth_decision="true")
    call(ref, {"OpenStack-System-Scope": "all"})
    assert ref_app.environ["HTTP_OPENSTACK_SYSTEM_SCOPE"] == "all", "the reference lets it through"


def test_one_filter_for_oauth_bearer_tokens_and_keystone_tokens(keystone, auth_server) -> None:
    options = {
        **keystone.middleware_options("v3tokenlessauth"),
        **introspection_options(auth_server, "svc-post"),
        "bearer_validation": "introspection",
    }
    app = App()
    filt = auth_token.filter_factory({}, **options)(app)
    bearer = oidc_as.obtain_token(auth_server, "svc-post")
    assert call(filt, {"Authorization": f"Bearer {bearer}", "X-Roles": "admin"})[0] == "200 OK"
    assert app.environ["HTTP_X_USER_ID"] == "svc-post"
    assert app.environ["HTTP_X_ROLES"] != "admin"
    assert app.environ["external.token_info"]["user_id"] == "svc-post"
    assert "keystone.token_info" not in app.environ
    token = keystone.token("alice")
    assert call(filt, {"X-Auth-Token": token})[0] == "200 OK"
    assert app.environ["HTTP_X_USER_ID"] == keystone.users["alice"].id
    # Both: the Keystone token is the one checked, as auth_token would.
    assert call(filt, {"X-Auth-Token": token, "Authorization": "Bearer garbage"})[0] == "200 OK"
    status, headers = call(filt, {"Authorization": "Bearer garbage"})
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"].startswith("Authorization OAuth 2.0 uri=")
    status, headers = call(filt, {"X-Auth-Token": "gAAAAAgarbage"})
    assert status == "401 Unauthorized" and headers["WWW-Authenticate"].startswith("Keystone uri=")


def test_the_combined_filter_checks_certificate_and_dpop_bound_bearer_tokens(keystone, auth_server) -> None:
    """bearer_validation takes the OAuth filter's whole request path: RFC 8705 certificate
    binding and RFC 9449 DPoP proofs are checked as external_oauth2_token checks them."""
    base = {
        **keystone.middleware_options("v3tokenlessauth"),
        **introspection_options(auth_server, "svc-post"),
        "bearer_validation": "introspection",
    }
    pki = auth_server.pki
    app = App()
    bound = auth_token.filter_factory({}, **base, thumbprint_verify="true")(app)
    token = oidc_as.obtain_token(auth_server, "svc-bound", cert=("client-a.pem", "client-a.key"))
    auth = {"Authorization": f"Bearer {token}", "X-Roles": "admin"}
    right, wrong = (pki / "client-a.pem").read_text(), (pki / "client-b.pem").read_text()
    for _ in range(2):  # the AS's answer, then the cache
        status, _, _ = wsgi_call(bound, auth, SSL_CLIENT_CERT=right)
        assert status == "200 OK"
        assert app.environ["HTTP_X_USER_ID"] == "svc-bound"
        assert app.environ["HTTP_X_ROLES"] != "admin"
        cnf = app.environ["external.token_info"]["origin_token_metadata"]["cnf"]
        assert cnf["x5t#S256"] == oidc_as.thumbprints(pki)["client-a"]
        assert wsgi_call(bound, auth, SSL_CLIENT_CERT=wrong)[0] == "401 Unauthorized"
        assert wsgi_call(bound, auth)[0] == "401 Unauthorized"

    dpop = auth_token.filter_factory({}, **base, dpop="required")(app)
    key = oidc_as.new_private_key("ES256")
    token = oidc_as.obtain_token(auth_server, "svc-post", dpop_key=key)
    environ = DPOP_ENVIRON
    for _ in range(2):
        proof = jwt_tools.dpop_proof(key, "POST", DPOP_URL, token=token)
        status, _, _ = wsgi_call(dpop, {"Authorization": f"DPoP {token}", "DPoP": proof}, **environ)
        assert status == "200 OK"
        assert app.environ["HTTP_X_USER_ID"] == "svc-post"
        status, headers, _ = wsgi_call(dpop, {"Authorization": f"DPoP {token}"}, **environ)
        assert status == "401 Unauthorized"
        assert headers["WWW-Authenticate"].startswith("DPoP "), headers
        # A DPoP-bound token is never a bearer token.
        assert wsgi_call(dpop, {"Authorization": f"Bearer {token}"}, **environ)[0] == "401 Unauthorized"


# ------------------------------------------------------------------ servers


def get(port: int, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/", headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, (json.loads(body) if resp.status == 200 else {})


def wait_port(proc: subprocess.Popen, port: int, deadline: float = 60) -> None:
    end = time.time() + deadline
    while time.time() < end:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server died"
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} not open")


@pytest.fixture(scope="module")
def gunicorn(keystone, tmp_path_factory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp("gunicorn-keystone")
    lines = "\n".join(f"{k} = {v.replace('%', '%%')}" for k, v in keystone.middleware_options("password").items())
    ini = tmp / "api-paste.ini"
    ini.write_text(
        textwrap.dedent(
            """\
            [pipeline:main]
            pipeline = authtoken echo

            [filter:authtoken]
            use = egg:tokenward#auth_token
            """
        )
        + lines
        + "\n\n[app:echo]\npaste.app_factory = wsgi_apps:echo_app_factory\n"
    )
    port = free_port()
    cmd = [sys.executable, "-m", "gunicorn", "--preload", "--workers", "2", "--threads", "4"]
    proc = subprocess.Popen(
        [*cmd, "--bind", f"127.0.0.1:{port}", "--paste", str(ini)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_port(proc, port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_gunicorn_preload_two_workers(keystone, gunicorn) -> None:
    tokens = [keystone.token(u) for u in ("alice", "bob")] + [keystone.token("alice", scope="system")]
    users = {keystone.users["alice"].id, keystone.users["bob"].id}

    def one(i: int) -> tuple[int, int, str]:
        status, body = get(gunicorn, {"X-Auth-Token": tokens[i % len(tokens)], "X-Roles": "admin"})
        return status, body.get("pid", 0), body.get("environ", {}).get("HTTP_X_USER_ID", "")

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(one, range(120)))
    assert {s for s, _, _ in results} == {200}
    assert len({pid for _, pid, _ in results}) == 2, "both forked workers answered"
    assert {u for _, _, u in results} == users
    assert get(gunicorn, {"X-Auth-Token": "gAAAAAgarbage"})[0] == 401


def test_eventlet_misses_run_in_the_thread_pool(keystone) -> None:
    options = keystone.middleware_options("v3tokenlessauth")
    script = HERE / "eventlet_keystone_server.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), json.dumps(options)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        tokens = [keystone.token("alice") for _ in range(6)]
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda t: get(port, {"X-Auth-Token": t})[0], tokens))
        refused = [get(port, {"X-Auth-Token": f"gAAAAAjunk-{i}"})[0] for i in range(3)]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert results == [200] * 6, stderr[-3000:]
    assert refused == [401] * 3
    assert stderr.count("Keystone token fp:") == 3, stderr[-3000:]
    assert "Traceback" not in stderr and "switch to a different thread" not in stderr, stderr[-3000:]
