"""The outbound client against the real AS: every method obtains a token that introspects as
active and that the tokenward filter accepts; one request however many callers; typed errors."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

import oidc_as
import pytest
from conftest import DPOP_ENVIRON, DPOP_URL, call, introspection_options
from fake_as import FakeAS, closed_port_url
from tokenward import ConfigurationError
from tokenward.client_credentials import (
    AuthServerUnavailableError,
    BearerAuth,
    ClientCredentials,
    CredentialsRejectedError,
)
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app

METHOD_CLIENTS = [
    "svc-basic",
    "svc-post",
    "svc-secret-jwt",
    "svc-private-jwt",
    "svc-tls",
    "svc-private-jwt-es256",
    "svc-private-jwt-es512",
    "svc-private-jwt-eddsa",
]


def client_options(server: oidc_as.AuthServer, client_id: str, **extra: Any) -> dict[str, Any]:
    opts = introspection_options(server, client_id)
    keep = {k: v for k, v in opts.items() if not k.startswith("mapping_") and k != "introspect_endpoint"}
    keep["token_endpoint"] = server.token_endpoint
    keep.update(extra)
    return keep


def fresh(server: oidc_as.AuthServer, client_id: str, **extra: Any) -> ClientCredentials:
    """A client whose cache is not shared with earlier tests (distinct scope)."""
    return ClientCredentials(**client_options(server, client_id, **extra))


@pytest.fixture(scope="module")
def resource(auth_server: oidc_as.AuthServer) -> ExternalAuth2Protocol:
    return ExternalAuth2Protocol(echo_app, introspection_options(auth_server, "svc-post"))


@pytest.mark.parametrize("client_id", METHOD_CLIENTS)
def test_each_method_obtains_a_token_the_filter_accepts(
    auth_server: oidc_as.AuthServer, resource: ExternalAuth2Protocol, client_id: str
) -> None:
    token = fresh(auth_server, client_id, scope="api").get_token()
    info = oidc_as.introspect(auth_server, token)
    assert info["active"] is True and info["client_id"] == client_id
    assert info["scope"] == "api"
    status, _, body = call(resource, {"Authorization": f"Bearer {token}"})
    assert status == "200 OK"
    assert body["environ"]["HTTP_X_USER_ID"] == client_id


def test_basic_secret_with_reserved_and_non_ascii_characters(auth_server: oidc_as.AuthServer) -> None:
    secret = oidc_as.CLIENTS["svc-basic"]["secret"]
    assert all(c in secret for c in ": +%&=") and not secret.isascii()
    assert fresh(auth_server, "svc-basic", scope="api:read").get_token()


def test_certificate_bound_token_accepted_only_with_the_same_certificate(auth_server: oidc_as.AuthServer) -> None:
    pki = auth_server.pki
    creds = fresh(auth_server, "svc-bound", certfile=str(pki / "client-a.pem"), keyfile=str(pki / "client-a.key"))
    token = creds.get_token()
    assert oidc_as.introspect(auth_server, token)["cnf"]["x5t#S256"] == oidc_as.thumbprints(pki)["client-a"]
    app = ExternalAuth2Protocol(
        echo_app, {**introspection_options(auth_server, "svc-post"), "thumbprint_verify": "true"}
    )
    auth = {"Authorization": f"Bearer {token}"}
    assert call(app, auth, SSL_CLIENT_CERT=(pki / "client-a.pem").read_text())[0] == "200 OK"
    assert call(app, auth, SSL_CLIENT_CERT=(pki / "client-b.pem").read_text())[0] == "401 Unauthorized"
    assert creds.get_connection_params(None) == {"cert": (str(pki / "client-a.pem"), str(pki / "client-a.key"))}


def test_one_token_request_for_many_callers(auth_server: oidc_as.AuthServer) -> None:
    auth_server.reset_stats()
    opts = client_options(auth_server, "svc-post", scope="api:write")
    first = ClientCredentials(**opts)
    tokens = {first.get_token() for _ in range(25)}
    # Tacker builds a new plugin per operation: equal options share the cached token.
    tokens |= {ClientCredentials(**opts).get_token() for _ in range(5)}
    assert len(tokens) == 1
    assert auth_server.stats()["token"].get("svc-post", 0) == 1

    concurrent = ClientCredentials(**client_options(auth_server, "svc-post", scope="api:read"))
    auth_server.reset_stats()
    with ThreadPoolExecutor(32) as pool:
        got = set(pool.map(lambda _: concurrent.get_token(), range(32)))
    assert len(got) == 1
    assert auth_server.stats()["token"]["svc-post"] == 1

    concurrent.invalidate()
    assert concurrent.get_token() not in got
    assert auth_server.stats()["token"]["svc-post"] == 2


def test_near_expiry_exactly_one_more_request(pki: Path) -> None:
    with oidc_as.start_as(pki, token_ttl=4) as short_as:
        creds = ClientCredentials(**client_options(short_as, "svc-post", token_expiry_margin="2"))
        first = creds.get_token()
        assert creds.get_token() == first
        time.sleep(2.3)  # inside the 2 s margin before expiry
        with ThreadPoolExecutor(8) as pool:
            seen = set(pool.map(lambda _: creds.get_token(), range(8)))
        assert creds.get_token() != first
        assert seen <= {first, creds.get_token()}
        assert short_as.stats()["token"]["svc-post"] == 2


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_secret": "wrong-secret-000000000000"}, CredentialsRejectedError),
        ({"client_id": "svc-nobody"}, CredentialsRejectedError),
    ],
)
def test_rejected_credentials_are_typed(auth_server: oidc_as.AuthServer, change: dict[str, str], error: type) -> None:
    creds = ClientCredentials(**{**client_options(auth_server, "svc-post"), **change})
    started = time.monotonic()
    with pytest.raises(error) as err:
        creds.get_token()
    assert time.monotonic() - started < 10
    assert err.value.kind == "credentials_rejected"
    assert "wrong-secret" not in str(err.value)


def test_wrong_private_key_is_rejected(auth_server: oidc_as.AuthServer) -> None:
    pki = auth_server.pki
    creds = fresh(auth_server, "svc-private-jwt", jwt_key_file=str(pki / "rsa-pkcs8.key"))
    with pytest.raises(CredentialsRejectedError):
        creds.get_token()


def test_as_down_or_garbage_is_unavailable_within_the_timeout() -> None:
    base = {"client_id": "svc", "client_secret": "s3cret-abc", "http_connect_timeout": "2", "scope": "x"}
    with pytest.raises(AuthServerUnavailableError) as err:
        ClientCredentials(token_endpoint=closed_port_url(), **base).get_token()
    assert err.value.kind == "unreachable"
    for body in (b"<html>", b"[]", b'{"token_type": "bearer"}'):
        with FakeAS(lambda form, headers, body=body: (200, body)) as fake:
            with pytest.raises(AuthServerUnavailableError):
                ClientCredentials(token_endpoint=fake.url, **base).get_token()
    with FakeAS(delay=4) as slow:
        started = time.monotonic()
        with pytest.raises(AuthServerUnavailableError):
            ClientCredentials(token_endpoint=slow.url, **base).get_token()
        assert time.monotonic() - started < 4


def test_bad_config_names_the_option() -> None:
    with pytest.raises(ConfigurationError) as err:
        ClientCredentials(client_id="x", client_secret="y")
    assert err.value.option == "token_endpoint"
    with pytest.raises(ConfigurationError) as err:
        ClientCredentials(
            token_endpoint="https://as/token", client_id="x", auth_method="private_key_jwt", jwt_algorithm="RS256"
        )
    assert err.value.option == "jwt_key_file"


def test_nothing_secret_in_logs_or_errors(auth_server: oidc_as.AuthServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = [oidc_as.CLIENTS[c]["secret"] for c in ("svc-basic", "svc-post", "svc-secret-jwt")]
    tokens = []
    for c in ("svc-basic", "svc-post", "svc-secret-jwt", "svc-private-jwt"):
        creds = fresh(auth_server, c, scope="api api:read")
        tokens.append(creds.get_token())
        assert tokens[-1] not in repr(creds)
    try:
        ClientCredentials(**client_options(auth_server, "svc-post", client_secret="bad-secret-xyz")).get_token()
    except CredentialsRejectedError as e:
        assert "bad-secret-xyz" not in str(e)
    for s in [*secrets, *tokens, "bad-secret-xyz"]:
        assert s not in caplog.text


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def protected_service(auth_server: oidc_as.AuthServer) -> Iterator[str]:
    """A second service behind the tokenward filter, over real HTTP. No caching, so a
    revoked token is refused at once."""
    app = ExternalAuth2Protocol(
        echo_app,
        {**introspection_options(auth_server, "svc-post"), "token_cache_time": "0", "token_cache_inactive_time": "0"},
    )
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_keystoneauth_session_reauthenticates_once_on_401(
    auth_server: oidc_as.AuthServer, protected_service: str
) -> None:
    from keystoneauth1 import loading

    loader = loading.get_plugin_loader("tokenward_client_credentials")
    opts = client_options(auth_server, "svc-admin", scope="api api:write")
    plugin = loader.load_from_options(**opts)
    session = plugin.create_session()
    auth_server.reset_stats()
    r = session.get(protected_service)
    assert r.status_code == 200 and r.json()["environ"]["HTTP_X_USER_ID"] == "svc-admin"
    oidc_as.revoke(auth_server, plugin.get_token())
    r = session.get(protected_service)
    assert r.status_code == 200, "re-authenticated after the 401"
    assert auth_server.stats()["token"]["svc-admin"] == 2


def test_requests_auth_retries_once(auth_server: oidc_as.AuthServer, protected_service: str) -> None:
    import requests

    creds = fresh(auth_server, "svc-array", scope="api:read api:write")
    auth = BearerAuth(creds)
    assert requests.get(protected_service, auth=auth, timeout=10).status_code == 200
    oidc_as.revoke(auth_server, creds.get_token())
    r = requests.get(protected_service, auth=auth, timeout=10)
    assert r.status_code == 200 and len(r.history) == 1


def test_from_config_reads_an_oslo_group(auth_server: oidc_as.AuthServer) -> None:
    from oslo_config import cfg
    from tokenward._config import register

    conf = cfg.ConfigOpts()
    register(conf)
    conf([])
    for k, v in client_options(auth_server, "svc-post", scope="api:read").items():
        conf.set_override(k, v, group="ext_oauth2_auth")
    creds = ClientCredentials.from_config(conf.ext_oauth2_auth)
    assert creds.get_token()


# ------------------------------------------------------------------ outbound DPoP (issue 11)


def dpop_key_file(tmp_path: Path, alg: str) -> tuple[str, Any]:
    from cryptography.hazmat.primitives import serialization

    key = oidc_as.new_private_key(alg)
    path = tmp_path / f"dpop-{alg}.pem"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return str(path), key


@pytest.fixture(scope="module")
def nonce_as(pki: Path) -> Iterator[oidc_as.AuthServer]:
    """A second AS that wants a DPoP nonce with every proof (RFC 9449 §8)."""
    with oidc_as.start_as(pki, dpop_nonce=True) as server:
        yield server


@pytest.mark.parametrize("alg", ["ES256", "RS256", "EdDSA"])
def test_a_dpop_key_gets_bound_tokens_and_signs_each_request(
    nonce_as: oidc_as.AuthServer, tmp_path: Path, alg: str
) -> None:
    import jwt_tools

    path, key = dpop_key_file(tmp_path, alg)
    creds = fresh(nonce_as, "svc-post", scope="api:read", dpop_key_file=path)
    value, proof = creds.authorization("POST", DPOP_URL + "?limit=5")
    scheme, token = value.split(" ", 1)
    assert scheme == "DPoP" and proof is not None
    answer = oidc_as.introspect(nonce_as, token)
    assert answer["token_type"] == "DPoP"
    assert answer["cnf"]["jkt"] == jwt_tools.jwk_thumbprint(jwt_tools.public_jwk(key))
    # The filter (dpop = required) accepts the token with the client's proof for that request.
    app = ExternalAuth2Protocol(echo_app, {**introspection_options(nonce_as, "svc-post"), "dpop": "required"})
    status, _, body = call(app, {"Authorization": value, "DPoP": proof}, **DPOP_ENVIRON)
    assert status == "200 OK", body
    # Each request gets its own proof; the same proof twice is a replay.
    second, again = creds.authorization("POST", DPOP_URL)
    assert second == value and again != proof
    status, headers, _ = call(app, {"Authorization": value, "DPoP": proof}, **DPOP_ENVIRON)
    assert status == "401 Unauthorized" and 'error="invalid_dpop_proof"' in headers["WWW-Authenticate"]


def test_requests_auth_sends_dpop_with_a_fresh_proof(nonce_as: oidc_as.AuthServer, tmp_path: Path) -> None:
    import requests

    path, _ = dpop_key_file(tmp_path, "ES256")
    app = ExternalAuth2Protocol(
        echo_app, {**introspection_options(nonce_as, "svc-post"), "dpop": "allowed", "token_cache_time": "0"}
    )
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        auth = BearerAuth(fresh(nonce_as, "svc-post", scope="api:write", dpop_key_file=path))
        url = f"http://127.0.0.1:{server.server_port}/v1/things?x=1"
        for _ in range(3):
            r = requests.get(url, auth=auth, timeout=10)
            assert r.status_code == 200, r.text
            assert r.request.headers["Authorization"].startswith("DPoP ")
    finally:
        server.shutdown()


def test_a_bad_dpop_key_file_is_a_start_up_error(auth_server: oidc_as.AuthServer, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello")
    with pytest.raises(ConfigurationError) as e:
        fresh(auth_server, "svc-post", dpop_key_file=str(bad))
    assert e.value.option == "dpop_key_file"


def test_option_names_kinds_and_booleans_come_from_the_core_table(pki: Path) -> None:
    from tokenward import _native
    from tokenward.client_credentials import OPTION_NAMES

    table = {row[0]: row for row in _native.options()}
    assert set(OPTION_NAMES) <= set(table)
    # Every option the core's client reads is accepted here (basic_auth_encoding once was not).
    base = {"token_endpoint": "https://as.example/token", "client_id": "svc", "client_secret": "s3cret-abc"}
    assert ClientCredentials(**base, basic_auth_encoding="raw")
    # Booleans are the core's spellings, and a bad one is the core's start-up error.
    for spelling, verify in (("yes", False), ("On", False), ("0", True), (False, True)):
        verify_arg, cert, timeout = ClientCredentials(**base, insecure=spelling)._native.session_settings()
        assert (verify_arg, cert, timeout) == (verify, None, 10.0), spelling
    with pytest.raises(ConfigurationError, match="insecure"):
        ClientCredentials(**base, insecure="maybe")
    cafile = str(pki / "ca.pem")
    settings = ClientCredentials(**base, cafile=cafile, http_connect_timeout=3)._native.session_settings()
    assert settings == (cafile, None, 3.0)
    from tokenward.client_credentials import ClientCredentialsLoader

    opts = {o.dest: o for o in ClientCredentialsLoader().get_options()}
    assert set(opts) == set(OPTION_NAMES)
    assert (opts["insecure"].type, opts["http_connect_timeout"].type) == (bool, int)
    assert opts["client_secret"].secret and not opts["client_id"].secret
    assert opts["token_endpoint"].required and not opts["scope"].required
