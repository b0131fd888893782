"""Offline JWT access-token validation (issue 10) through the paste filter, against the real
test AS (oidc-provider issuing RFC 9068 tokens) and against keys served by ``JwksServer``."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import jwt_tools
import oidc_as
import pytest
from conftest import MAPPING, call, introspection_options
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt_tools import JwksServer, RecordingServer, alg_none, b64url, compact, hs256, keycloak_claims, mint
from test_real_as import paste_app

LOG_NAME = "keystonemiddleware.external_oauth2_token"
TOKEN_CLIENTS = ["svc-basic", "svc-post", "svc-secret-jwt", "svc-private-jwt", "svc-tls"]


# ------------------------------------------------------------------ helpers


def jwt_options(server: oidc_as.AuthServer, **extra: str) -> dict[str, str]:
    """`validation = jwt` at the real AS: no introspection endpoint, no client credentials."""
    return {
        "validation": "jwt",
        "token_issuer": server.issuer,
        "jwks_uri": server.jwks_uri,
        "token_audience": server.jwt_resource,
        "cafile": server.ca_file,
        "http_connect_timeout": "5",
        **MAPPING,
        **extra,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def metrics(app: Any) -> dict[str, int]:
    return dict(app.authenticator.metrics())


def segments(token: str) -> list[str]:
    return token.split(".")


def header_of(token: str) -> dict[str, Any]:
    head = segments(token)[0]
    return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))


def claims_of(token: str) -> dict[str, Any]:
    body = segments(token)[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def jwt_token(server: oidc_as.AuthServer, client: str, scope: str | None = None) -> str:
    return oidc_as.obtain_token(server, client, scope=scope, resource=server.jwt_resource)


def assert_identity(body: dict[str, Any], client: str) -> None:
    """The same OpenStack headers an introspected opaque token of ``client`` gets."""
    env = body["environ"]
    assert env["HTTP_X_USER_ID"] == client
    assert env["HTTP_X_USER_NAME"] == client
    assert env["HTTP_X_PROJECT_ID"] == f"prj-{client}"
    assert env["HTTP_X_TENANT"] == f"prj-{client}"
    assert env["HTTP_X_PROJECT_NAME"] == "demo"
    assert env["HTTP_X_PROJECT_DOMAIN_ID"] == "default"
    assert env["HTTP_X_USER_DOMAIN_NAME"] == "Default"
    assert env["HTTP_X_IDENTITY_STATUS"] == "Confirmed"
    meta = body["token_info"]["origin_token_metadata"]
    assert meta["client_id"] == client and meta["sub"] == client
    assert "active" not in meta, "claims of a JWT, not an introspection answer"


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, str]:
    private = oidc_as.private_jwk(key, kid, alg)
    return {k: v for k, v in private.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}


def signed_raw(header: dict[str, Any], payload: bytes, key: Any) -> str:
    """A JWS over an arbitrary payload (not necessarily JSON), properly signed."""
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    signing_input = f"{head}.{b64url(payload)}".encode()
    return f"{head}.{b64url(payload)}.{b64url(jwt_tools.sign(header['alg'], signing_input, key))}"


def write_keys(path: Path, *files: Path) -> Path:
    """A signing-keys file holding the keys of ``files`` in order (the first signs)."""
    keys = [k for f in files for k in json.loads(f.read_text())["keys"]]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"keys": keys}, f)
    return path


def wait_past(start: float, interval: float) -> None:
    """Sleeps only what is left of ``interval`` since ``start`` (monotonic)."""
    left = start + interval + 0.05 - time.monotonic()
    if left > 0:
        time.sleep(left)


# --------------------------------------------- 1. real AS: tokens, mapping, AS stopped


def test_real_as_jwts_of_each_client_method_map_like_opaque_tokens(
    tmp_path: Path, auth_server: oidc_as.AuthServer
) -> None:
    """RS256 tokens of every client auth method, keys found by discovery (no jwks_uri)."""
    tokens = {c: jwt_token(auth_server, c) for c in [*TOKEN_CLIENTS, "svc-admin"]}
    assert {header_of(t)["alg"] for t in tokens.values()} == {"RS256"}
    assert {header_of(t)["typ"] for t in tokens.values()} == {"at+jwt"}
    opts = jwt_options(auth_server)
    del opts["jwks_uri"]
    app = paste_app(tmp_path, opts)
    before = auth_server.stats()["introspection"].get("_all", 0)
    for client in TOKEN_CLIENTS:
        status, _, body = call(app, bearer(tokens[client]))
        assert status == "200 OK", (client, body)
        assert_identity(body, client)
        assert body["environ"]["HTTP_X_ROLES"] == "member,reader"
        assert body["environ"]["HTTP_X_IS_ADMIN_PROJECT"] == "false"
    _, _, body = call(app, bearer(tokens["svc-admin"]))
    assert body["environ"]["HTTP_X_IS_ADMIN_PROJECT"] == "true"
    assert body["environ"]["HTTP_X_ROLES"] == "admin,member"
    m = metrics(app)
    assert m["jwt_verifications"] == len(TOKEN_CLIENTS) + 1
    assert (m["jwks_fetches"], m["jwks_fetch_errors"], m["introspections"]) == (1, 0, 0)
    assert auth_server.stats()["introspection"].get("_all", 0) == before, "jwt mode never introspects"
    # An opaque token is not a JWT: refused locally, not introspected.
    opaque = oidc_as.obtain_token(auth_server, "svc-post")
    status, headers, _ = call(app, bearer(opaque))
    assert status == "401 Unauthorized" and "WWW-Authenticate" in headers
    assert auth_server.stats()["introspection"].get("_all", 0) == before


def test_jwt_or_introspection_introspects_only_opaque_tokens(tmp_path: Path, auth_server: oidc_as.AuthServer) -> None:
    opts = {
        **introspection_options(auth_server, "svc-post"),
        "validation": "jwt_or_introspection",
        "token_issuer": auth_server.issuer,
        "jwks_uri": auth_server.jwks_uri,
    }
    app = paste_app(tmp_path, opts)
    opaque = oidc_as.obtain_token(auth_server, "svc-basic")
    signed = jwt_token(auth_server, "svc-tls")
    count = lambda: auth_server.stats()["introspection"].get("svc-post", 0)  # noqa: E731
    before = count()
    status, _, body = call(app, bearer(opaque))
    assert status == "200 OK", body
    assert body["environ"]["HTTP_X_USER_ID"] == "svc-basic"
    assert body["token_info"]["origin_token_metadata"]["active"] is True
    assert count() == before + 1
    status, _, body = call(app, bearer(signed))
    assert status == "200 OK", body
    assert_identity(body, "svc-tls")
    assert count() == before + 1, "the JWT was verified locally, not introspected"
    m = metrics(app)
    assert (m["introspections"], m["jwt_verifications"], m["jwks_fetches"]) == (1, 1, 1)


def test_es256_as_down_at_start_up_then_back_then_stopped(tmp_path: Path, pki: Path) -> None:
    """Start-up needs no key set: 503 + Retry-After while the JWKS is unreachable, 200 once it is
    back; keys once fetched keep tokens (minted before the stop) valid with the AS stopped."""
    keys = oidc_as.make_signing_keys(tmp_path / "es.json", [("es-1", "ES256"), ("rs-1", "RS256")])
    server = oidc_as.start_as(pki, signing_keys=keys, jwt_alg="ES256")
    try:
        clients = ["svc-post", "svc-private-jwt-es256", "svc-tls", "svc-secret-jwt"]
        tokens = {c: jwt_token(server, c) for c in clients}
        assert {(header_of(t)["alg"], header_of(t)["kid"]) for t in tokens.values()} == {("ES256", "es-1")}
        port = server.port
        server.stop()
        app = paste_app(tmp_path, jwt_options(server, jwks_min_refresh_interval="1", retry_after="7"))
        first = tokens.pop("svc-post")
        for _ in range(3):
            status, headers, body = call(app, bearer(first))
            assert status == "503 Service Unavailable", body
            assert headers["Retry-After"] == "7" and body["error"]["code"] == 503
        failed_at = time.monotonic()
        m = metrics(app)
        assert (m["jwks_fetches"], m["jwks_fetch_errors"]) == (1, 1), "no refetch within the interval"
        server = oidc_as.start_as(pki, port=port, signing_keys=keys, jwt_alg="ES256")
        wait_past(failed_at, 1)
        status, _, body = call(app, bearer(first))
        assert status == "200 OK", body
        assert_identity(body, "svc-post")
        server.stop()
        for client, token in tokens.items():
            status, _, body = call(app, bearer(token))
            assert status == "200 OK", (client, body)
            assert_identity(body, client)
        m = metrics(app)
        assert (m["jwks_fetches"], m["jwks_fetch_errors"], m["jwt_verifications"]) == (2, 1, len(clients))
    finally:
        server.stop()


# ------------------------------------------------------------------ 2. key rotation


def test_key_rotation_and_an_unknown_kid_flood(tmp_path: Path, pki: Path) -> None:
    interval = 1.0
    old = oidc_as.make_signing_keys(tmp_path / "old.json", [("rs-old", "RS256")])
    new = oidc_as.make_signing_keys(tmp_path / "new.json", [("rs-new", "RS256")])
    server = oidc_as.start_as(pki, signing_keys=old)
    try:
        port, issuer = server.port, server.issuer
        app = paste_app(tmp_path, jwt_options(server, jwks_min_refresh_interval=str(int(interval))))
        t_old = jwt_token(server, "svc-post")
        assert header_of(t_old)["kid"] == "rs-old"
        assert call(app, bearer(t_old))[0] == "200 OK"
        fetched_at = time.monotonic()
        t_old_unseen = jwt_token(server, "svc-basic")

        # Rollover: the new key signs, the old one is still published.
        server.stop()
        server = oidc_as.start_as(pki, port=port, signing_keys=write_keys(tmp_path / "both.json", new, old))
        assert server.issuer == issuer
        fresh = [jwt_token(server, c) for c in ("svc-post", "svc-tls", "svc-secret-jwt")]
        assert {header_of(t)["kid"] for t in fresh} == {"rs-new"}
        wait_past(fetched_at, interval)
        before = metrics(app)
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda t: call(app, bearer(t)), fresh))
        assert [r[0] for r in results] == ["200 OK"] * 3, [r[2] for r in results]
        after = metrics(app)
        assert after["jwks_fetches"] - before["jwks_fetches"] == 1, "one fetch shared by all"
        assert after["jwks_unknown_kid_refetches"] - before["jwks_unknown_kid_refetches"] == 1
        refetched_at = time.monotonic()
        assert call(app, bearer(t_old_unseen))[0] == "200 OK", "the old key is still published"
        assert metrics(app)["jwks_fetches"] == after["jwks_fetches"]

        # Retirement: the old key is gone from the AS's key set.
        server.stop()
        server = oidc_as.start_as(pki, port=port, signing_keys=new)
        wait_past(refetched_at, interval)
        kid_key = ec.generate_private_key(ec.SECP256R1())
        claims = claims_of(fresh[0])
        flood = [
            mint(
                {"alg": "ES256", "typ": "at+jwt", "kid": uuid.uuid4().hex}, {**claims, "jti": uuid.uuid4().hex}, kid_key
            )
            for _ in range(1000)
        ]
        before = metrics(app)
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda t: call(app, bearer(t)), flood))
        elapsed = time.monotonic() - start
        after = metrics(app)
        statuses = {r[0] for r in results}
        assert statuses == {"401 Unauthorized"}, statuses
        assert all("WWW-Authenticate" in r[1] for r in results)
        fetches = after["jwks_fetches"] - before["jwks_fetches"]
        assert 1 <= fetches <= 1 + elapsed / interval, (fetches, elapsed)
        assert after["jwks_unknown_kid_refetches"] - before["jwks_unknown_kid_refetches"] == fetches
        assert after["jwks_fetch_errors"] == before["jwks_fetch_errors"]
        # That refetch saw the old key retired: an old-kid token never seen before is refused...
        old_key = oidc_as.signing_key(old, "rs-old")
        late = mint({"alg": "RS256", "typ": "at+jwt", "kid": "rs-old"}, {**claims, "jti": uuid.uuid4().hex}, old_key)
        assert call(app, bearer(late))[0] == "401 Unauthorized"
        # ...while the new key keeps working with the AS stopped.
        last = jwt_token(server, "svc-basic")
        server.stop()
        status, _, body = call(app, bearer(last))
        assert status == "200 OK", body
        assert_identity(body, "svc-basic")
    finally:
        server.stop()


# ------------------------------------------------- 3. Keycloak-shaped tokens, discovery

KEYCLOAK_MAPPING = {
    "mapping_user_id": "sub",
    "mapping_user_name": "preferred_username",
    "mapping_roles": "realm_access.roles",
    "mapping_project_id": "project.id",
    "mapping_project_name": "project.name",
    "mapping_project_domain_id": "project.domain.id",
    "mapping_project_domain_name": "project.domain.name",
    "mapping_user_domain_id": "user_domain.id",
    "mapping_user_domain_name": "user_domain.name",
}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def keycloak_app(tmp_path: Path, srv: JwksServer, **extra: str) -> Any:
    opts = {
        "validation": "jwt",
        "token_issuer": srv.base_url,
        "token_audience": "account",
        "token_required_scope": "profile",
        "http_connect_timeout": "5",
        **KEYCLOAK_MAPPING,
        **extra,
    }
    return paste_app(tmp_path, opts)


def test_keycloak_shaped_token_found_by_discovery(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    with JwksServer({"keys": [public_jwk(rsa_key, "kc-1", "RS256")]}) as srv:
        srv.issuer = srv.base_url
        app = keycloak_app(tmp_path, srv)
        head = {"alg": "RS256", "typ": "JWT", "kid": "kc-1"}
        token = mint(head, keycloak_claims(srv.base_url, roles=["admin", "member"]), rsa_key)
        status, _, body = call(app, bearer(token))
        assert status == "200 OK", body
        env = body["environ"]
        assert env["HTTP_X_USER_ID"] == "f3b1c2d4-0000-4000-8000-00000000a11c"
        assert env["HTTP_X_USER_NAME"] == "alice"
        assert env["HTTP_X_ROLES"] == "admin,member"
        assert env["HTTP_X_IS_ADMIN_PROJECT"] == "true"
        assert env["HTTP_X_PROJECT_ID"] == "prj-keycloak"
        assert env["HTTP_X_PROJECT_DOMAIN_NAME"] == "Default"
        assert body["token_info"]["origin_token_metadata"]["azp"] == "tokenward"
        assert (srv.count(JwksServer.DISCOVERY_PATH), srv.count()) == (1, 1)
        # token_required_scope = profile: a token without it is 403 (scope present or not).
        for claims in (
            keycloak_claims(srv.base_url, scope="openid email"),
            {k: v for k, v in keycloak_claims(srv.base_url).items() if k != "scope"},
        ):
            status, _, body = call(app, bearer(mint(head, claims, rsa_key)))
            assert status == "403 Forbidden", body
            assert body["error"]["code"] == 403
        # Roles that are not strings do not map (403, never a 500).
        bad_roles = keycloak_claims(srv.base_url, realm_access={"roles": ["member", 7]})
        assert call(app, bearer(mint(head, bad_roles, rsa_key)))[0] == "403 Forbidden"
        # jwt_typ narrowed to RFC 9068's type refuses Keycloak's "JWT".
        strict = keycloak_app(tmp_path, srv, jwt_typ="at+jwt")
        assert call(strict, bearer(token))[0] == "401 Unauthorized"
        assert srv.count() == 1, "a typ refusal fetches no keys"


def test_discovery_issuer_mismatch_is_503_and_its_jwks_uri_is_never_fetched(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    with JwksServer({"keys": [public_jwk(rsa_key, "kc-1", "RS256")]}, issuer="https://evil.example") as srv:
        app = keycloak_app(tmp_path, srv, retry_after="3")
        token = mint({"alg": "RS256", "typ": "JWT", "kid": "kc-1"}, keycloak_claims(srv.base_url), rsa_key)
        for _ in range(2):
            status, headers, body = call(app, bearer(token))
            assert status == "503 Service Unavailable", body
            assert headers["Retry-After"] == "3"
        assert srv.count(JwksServer.DISCOVERY_PATH) >= 1
        assert srv.count() == 0, "the jwks_uri of a metadata document naming another issuer"
        assert metrics(app)["jwks_fetch_errors"] >= 1


# -------------------------------------------------------------------- 4. attacks

ISSUER = "https://as.test.example"
AUDIENCE = "urn:tokenward:api"
GOOD_HEADER = {"alg": "RS256", "typ": "at+jwt", "kid": "rs-1"}


def as_claims(**extra: Any) -> dict[str, Any]:
    """Claims shaped as the test AS's JWT access tokens, valid for the attack filter."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "svc-post",
        "client_id": "svc-post",
        "username": "svc-post",
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "user_domain": {"id": "default", "name": "Default"},
        "project": {"id": "prj-svc-post", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "roles": "member,reader",
    }
    claims.update(extra)
    return {k: v for k, v in claims.items() if v is not None}


def _attack_options(r: Rig) -> dict[str, str]:
    return {
        "validation": "jwt",
        "token_issuer": ISSUER,
        "jwks_uri": r.jwks.jwks_uri,
        "token_audience": AUDIENCE,
        "jwks_min_refresh_interval": "1",
        "http_connect_timeout": "5",
        **MAPPING,
    }


class Rig:
    """A JWKS with an RSA key (rs-1) and an EC key (ec-1), and a filter that trusts it."""

    def __init__(self, tmp_path: Path, rsa_key: Any, ec_key: Any) -> None:
        self.rsa, self.ec = rsa_key, ec_key
        self.attacker_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.attacker_ec = ec.generate_private_key(ec.SECP256R1())
        self.jwks = JwksServer({"keys": [public_jwk(rsa_key, "rs-1", "RS256"), public_jwk(ec_key, "ec-1", "ES256")]})
        evil = {"keys": [public_jwk(self.attacker_rsa, "evil", "RS256")]}
        self.recorder = RecordingServer(json.dumps(evil).encode())
        self.app = paste_app(tmp_path, _attack_options(self))

    def good(self, **claims: Any) -> str:
        return mint(GOOD_HEADER, as_claims(**claims), self.rsa)

    def close(self) -> None:
        self.jwks.close()
        self.recorder.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, rsa_key: Any, ec_key: Any) -> Iterator[Rig]:
    r = Rig(tmp_path_factory.mktemp("attacks"), rsa_key, ec_key)
    yield r
    r.close()


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _padded(r: Rig, size: int) -> str:
    """A properly signed token of about ``size`` characters."""
    base = len(r.good())
    return r.good(pad="x" * int((size - base) * 3 / 4))


def _swap(token: str, index: int, text: str) -> str:
    parts = segments(token)
    parts[index] = text
    return ".".join(parts)


ATTACKS: dict[str, Callable[[Rig], str]] = {
    "alg none": lambda r: alg_none(as_claims(), {"typ": "at+jwt", "kid": "rs-1"}),
    "alg none with a real signature": lambda r: _swap(
        r.good(), 0, b64url(json.dumps({"alg": "none", "typ": "at+jwt", "kid": "rs-1"}).encode())
    ),
    "HS256 keyed with the RSA public key PEM": lambda r: hs256(
        as_claims(), _pem(r.rsa), {"typ": "at+jwt", "kid": "rs-1"}
    ),
    "HS256 keyed with the JWK text": lambda r: hs256(
        as_claims(), json.dumps(public_jwk(r.rsa, "rs-1", "RS256")).encode(), {"typ": "at+jwt", "kid": "rs-1"}
    ),
    "another key's signature with a known kid": lambda r: mint(GOOD_HEADER, as_claims(), r.attacker_rsa),
    "another key's signature without kid": lambda r: mint(
        {"alg": "RS256", "typ": "at+jwt"}, as_claims(), r.attacker_rsa
    ),
    "kid of the EC key on an RS256 token": lambda r: mint(
        {"alg": "RS256", "typ": "at+jwt", "kid": "ec-1"}, as_claims(), r.rsa
    ),
    "kid of the RSA key on an ES256 token": lambda r: mint(
        {"alg": "ES256", "typ": "at+jwt", "kid": "rs-1"}, as_claims(), r.ec
    ),
    "jku to the attacker's key set": lambda r: mint(
        {"alg": "RS256", "typ": "at+jwt", "kid": "evil", "jku": r.recorder.url("/jwks")}, as_claims(), r.attacker_rsa
    ),
    "jku with a known kid": lambda r: mint(
        {**GOOD_HEADER, "jku": r.recorder.url("/jwks")}, as_claims(), r.attacker_rsa
    ),
    "x5u to the attacker": lambda r: mint(
        {"alg": "RS256", "typ": "at+jwt", "kid": "evil", "x5u": r.recorder.url("/cert.pem")},
        as_claims(),
        r.attacker_rsa,
    ),
    "embedded jwk": lambda r: mint(
        {"alg": "RS256", "typ": "at+jwt", "jwk": public_jwk(r.attacker_rsa, "evil", "RS256")},
        as_claims(),
        r.attacker_rsa,
    ),
    "payload tampered after signing": lambda r: _swap(
        r.good(), 1, b64url(json.dumps(as_claims(roles="admin")).encode())
    ),
    "wrong iss": lambda r: r.good(iss="https://evil.example"),
    "no iss": lambda r: r.good(iss=None),
    "aud mismatch": lambda r: r.good(aud="urn:other:api"),
    "aud list without ours": lambda r: r.good(aud=["urn:other:api", "account"]),
    "expired": lambda r: r.good(exp=int(time.time()) - 120, iat=int(time.time()) - 600),
    "no exp": lambda r: r.good(exp=None),
    "nbf in the future": lambda r: r.good(nbf=int(time.time()) + 600),
    "iat in the future": lambda r: r.good(iat=int(time.time()) + 600),
    "exp not a number": lambda r: r.good(exp="tomorrow"),
    "no typ": lambda r: mint({"alg": "RS256", "kid": "rs-1"}, as_claims(), r.rsa),
    "crit extension": lambda r: mint({**GOOD_HEADER, "crit": ["exp"]}, as_claims(), r.rsa),
    "header repeats alg": lambda r: compact(
        b'{"alg":"RS256","alg":"none","typ":"at+jwt","kid":"rs-1"}', json.dumps(as_claims()).encode(), b"sig"
    ),
    "bad base64 character": lambda r: _swap(r.good(), 2, segments(r.good())[2][:-2] + "!!"),
    "padded base64": lambda r: _swap(r.good(), 1, segments(r.good())[1] + "=="),
    "standard base64 alphabet": lambda r: _swap(r.good(), 2, segments(r.good())[2][:-1] + "+"),
    "header not JSON": lambda r: compact(b'{"alg":"RS256",', json.dumps(as_claims()).encode(), b"sig"),
    "header not an object": lambda r: compact(b'["RS256","at+jwt"]', json.dumps(as_claims()).encode(), b"sig"),
    "payload not JSON (signed)": lambda r: signed_raw(GOOD_HEADER, b'{"iss":"https://as.test.example",', r.rsa),
    "payload not an object (signed)": lambda r: signed_raw(GOOD_HEADER, b'["svc-post"]', r.rsa),
    "payload a JSON string (signed)": lambda r: signed_raw(GOOD_HEADER, b'"svc-post"', r.rsa),
    "empty signature": lambda r: _swap(r.good(), 2, ""),
    "two segments": lambda r: ".".join(segments(r.good())[:2]),
    "four segments": lambda r: r.good() + ".e30",
    "five-segment JWE": lambda r: ".".join(
        [b64url(b'{"alg":"RSA-OAEP","enc":"A256GCM","typ":"at+jwt","kid":"rs-1"}')]
        + [b64url(os.urandom(n)) for n in (256, 12, 64, 16)]
    ),
    "signed token over 16 KiB": lambda r: _padded(r, 16 * 1024 + 64),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_is_401(rig: Rig, name: str, caplog: pytest.LogCaptureFixture) -> None:
    token = ATTACKS[name](rig)
    status, headers, body = call(rig.app, bearer(token))
    assert status == "401 Unauthorized", (name, body)
    assert body["error"]["code"] == 401
    assert headers["WWW-Authenticate"].startswith("Authorization OAuth 2.0")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no exception, no 500"
    assert not rig.recorder.hit, rig.recorder.requests


def test_attack_controls_are_accepted(rig: Rig) -> None:
    """The attack filter accepts honest tokens, so each 401 above is about its attack."""
    for token in (
        rig.good(),
        mint({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"}, as_claims(), rig.ec),
        mint({"alg": "RS256", "typ": "at+jwt"}, as_claims(), rig.rsa),  # no kid: every key is tried
        rig.good(aud=["account", AUDIENCE]),
        _padded(rig, 16 * 1024 - 64),
    ):
        assert len(token) <= 16 * 1024
        status, _, body = call(rig.app, bearer(token))
        assert status == "200 OK", body
        assert body["environ"]["HTTP_X_PROJECT_ID"] == "prj-svc-post"
    assert len(_padded(rig, 16 * 1024 + 64)) > 16 * 1024
    assert not rig.recorder.hit


def test_a_failing_jwks_endpoint_is_503_until_it_answers(tmp_path: Path, rsa_key: Any) -> None:
    with JwksServer({"keys": [public_jwk(rsa_key, "rs-1", "RS256")]}) as srv:
        srv.failure = 500
        opts = {
            "validation": "jwt",
            "token_issuer": ISSUER,
            "jwks_uri": srv.jwks_uri,
            "jwks_min_refresh_interval": "1",
            **MAPPING,
        }
        app = paste_app(tmp_path, opts)
        assert srv.count() == 0, "nothing is fetched at start-up"
        token = mint(GOOD_HEADER, as_claims(), rsa_key)
        status, headers, _ = call(app, bearer(token))
        assert status == "503 Service Unavailable" and headers["Retry-After"] == "5"
        failed_at = time.monotonic()
        srv.failure = "garbage"
        wait_past(failed_at, 1)
        status, headers, _ = call(app, bearer(token))
        assert status == "503 Service Unavailable" and "Retry-After" in headers
        failed_at = time.monotonic()
        srv.failure = None
        assert call(app, bearer(token))[0] == "503 Service Unavailable", "no refetch within the interval"
        wait_past(failed_at, 1)
        assert call(app, bearer(token))[0] == "200 OK"
        assert srv.count() == 3
        m = metrics(app)
        assert (m["jwks_fetches"], m["jwks_fetch_errors"]) == (3, 2)


# ------------------------------------------------------------- 5. secrets hygiene


def test_refused_tokens_never_reach_the_logs(
    tmp_path: Path, rsa_key: Any, ec_key: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger=LOG_NAME)
    r = Rig(tmp_path, rsa_key, ec_key)
    try:
        refused = [build(r) for build in ATTACKS.values()]
        unknown_kid = mint({"alg": "RS256", "typ": "at+jwt", "kid": "nope"}, as_claims(), r.attacker_rsa)
        refused.append(unknown_kid)
        for token in refused:
            assert call(r.app, bearer(token))[0] == "401 Unauthorized"
        # A 503 logs at ERROR, with the AS's error, not the token.
        r.jwks.failure = 500
        down = paste_app(tmp_path, _attack_options(r))
        unavailable = r.good()
        assert call(down, bearer(unavailable))[0] == "503 Service Unavailable"
        refused.append(unavailable)
    finally:
        r.close()
    text = caplog.text + "".join(repr(rec.args) for rec in caplog.records)
    fingerprinted = [rec for rec in caplog.records if "token fp:" in rec.getMessage()]
    assert len(fingerprinted) >= len(refused) - 1, "refusals are logged, by fingerprint"
    assert any(rec.levelno >= logging.ERROR for rec in caplog.records), "the 503 is logged"
    for token in refused:
        assert token not in text
        for part in segments(token)[1:]:
            if len(part) >= 16:
                assert part not in text


def test_paste_load_warns_only_about_introspection_options_given(
    tmp_path: Path, auth_server: oidc_as.AuthServer, caplog: pytest.LogCaptureFixture
) -> None:
    """oslo.config defaults (auth_method's) are not options given: no warning for them."""
    caplog.set_level(logging.WARNING, logger=LOG_NAME)
    paste_app(tmp_path, jwt_options(auth_server))
    unused = [r.getMessage() for r in caplog.records if "is not used with validation = jwt" in r.getMessage()]
    assert unused == []
    caplog.clear()
    paste_app(tmp_path, jwt_options(auth_server, client_secret="s3cret-not-needed"))
    unused = [r.getMessage() for r in caplog.records if "is not used with validation = jwt" in r.getMessage()]
    assert len(unused) == 1 and '"client_secret"' in unused[0]
    assert "s3cret-not-needed" not in caplog.text
