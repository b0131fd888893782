"""Self-check of the test authorization server and its Python driver.

Starts tests/as/server.mjs (oidc-provider) and checks every client, the
identity claims, certificate binding, revocation and the stats hooks.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import oidc_as
from oidc_as import (
    CLIENTS,
    ensure_pki,
    expected_extra_claims,
    introspect,
    obtain_token,
    revoke,
    start_as,
    thumbprints,
    token_response,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return ensure_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(pki):
    with start_as(pki, http_port=0) as s:
        yield s


def _check_active(server, client_id, token, scope=None):
    info = introspect(server, token)
    assert info["active"] is True, info
    assert info["client_id"] == client_id
    assert info["iss"] == server.issuer
    assert info["token_type"] == "Bearer"
    for k, v in expected_extra_claims(client_id).items():
        assert info[k] == v, (k, info)
    if scope is not None:
        assert info["scope"] == scope
    return info


# ------------------------------------------------------------------- PKI
def test_pki_files(pki):
    for name in [
        "ca.pem",
        "ca.key",
        "server.pem",
        "server.key",
        "client-a.pem",
        "client-a.key",
        "client-b.pem",
        "client-b.key",
        "client-a-combined.pem",
        "client-v1.pem",
        "client-v1.key",
        "rsa-pkcs1.key",
        "rsa-pkcs8.key",
        "ec256-sec1.key",
        "ec384.key",
        "ec521.key",
        "ed25519.key",
        "thumbprints.json",
        "done",
    ]:
        assert (pki / name).exists(), name
    for k in ["rsa-pkcs1", "rsa-pkcs8", "ec256-sec1", "ec384", "ec521", "ed25519"]:
        assert (pki / f"{k}.pub.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (pki / "rsa-pkcs1.key").read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert (pki / "rsa-pkcs8.key").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    sec1 = (pki / "ec256-sec1.key").read_text()
    assert sec1.startswith("-----BEGIN EC PARAMETERS-----") and "BEGIN EC PRIVATE KEY" in sec1
    combined = (pki / "client-a-combined.pem").read_text()
    assert combined.index("BEGIN CERTIFICATE") < combined.index("PRIVATE KEY")


def test_pki_certificates(pki):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    load = lambda n: x509.load_pem_x509_certificate((pki / n).read_bytes())  # noqa: E731
    ca, server, a, b, v1 = (load(n) for n in ["ca.pem", "server.pem", "client-a.pem", "client-b.pem", "client-v1.pem"])
    assert ca.version == x509.Version.v3
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.version == x509.Version.v3
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    tp = thumbprints(pki)
    for name, cert in (("client-a", a), ("client-b", b)):
        assert cert.version == x509.Version.v3
        assert cert.subject.rfc4514_string() == f"CN={name},O=tokenward-test"
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
        der_hash = cert.fingerprint(hashes.SHA256())
        assert tp[name] == base64.urlsafe_b64encode(der_hash).rstrip(b"=").decode()
        assert cert.issuer == ca.subject
    assert v1.version == x509.Version.v1
    assert v1.issuer == ca.subject


def test_pki_idempotent(pki):
    before = (pki / "ca.pem").read_bytes()
    ensure_pki(pki)
    assert (pki / "ca.pem").read_bytes() == before


# -------------------------------------------------------------------- AS
def test_ready_info(server):
    assert server.issuer == f"https://localhost:{server.port}"
    assert server.token_endpoint.startswith(server.issuer)
    assert server.introspection_endpoint.startswith(server.issuer)
    assert server.revocation_endpoint.startswith(server.issuer)
    assert server.http_base and server.http_base.startswith("http://127.0.0.1:")
    r = requests.get(server.issuer + "/_health", verify=server.ca_file, timeout=10)
    assert r.status_code == 200


@pytest.mark.parametrize("client_id", sorted(CLIENTS))
def test_every_client_gets_active_token_with_claims(server, client_id):
    token = obtain_token(server, client_id)
    assert token.count(".") == 0, "client-credentials tokens must be opaque"
    info = _check_active(server, client_id, token)
    if CLIENTS[client_id]["bound"]:
        assert info["cnf"] == {"x5t#S256": thumbprints(server)["client-a"]}
    else:
        assert "cnf" not in info


@pytest.mark.parametrize("scope", ["api", "api:read api:write", "api api:read api:write"])
def test_scope(server, scope):
    r = token_response(server, "svc-post", scope=scope)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == scope
    _check_active(server, "svc-post", r.json()["access_token"], scope=scope)


def test_no_scope_means_no_scope_claim(server):
    info = introspect(server, obtain_token(server, "svc-post"))
    assert "scope" not in info


def test_token_ttl_default(server):
    r = token_response(server, "svc-admin")
    assert r.json()["expires_in"] == 600
    info = introspect(server, r.json()["access_token"])
    assert info["exp"] - info["iat"] == 600


def test_bound_token_follows_presented_cert(server):
    tp = thumbprints(server)
    token = obtain_token(server, "svc-bound", cert=("client-b.pem", "client-b.key"))
    assert introspect(server, token)["cnf"] == {"x5t#S256": tp["client-b"]}
    token = obtain_token(server, "svc-bound", cert=("client-a.pem", "client-a.key"))
    assert introspect(server, token)["cnf"] == {"x5t#S256": tp["client-a"]}


def test_bound_client_without_cert_fails(server):
    # svc-bound must present a certificate; send the request by hand without one
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": oidc_as.basic_auth_header("svc-bound", CLIENTS["svc-bound"]["secret"])},
        verify=server.ca_file,
        timeout=10,
    )
    assert r.status_code == 400


def test_tls_client_auth_rejects_other_cert(server):
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "client_credentials", "client_id": "svc-tls"},
        cert=(str(server.pki / "client-b.pem"), str(server.pki / "client-b.key")),
        verify=server.ca_file,
        timeout=10,
    )
    assert r.status_code == 401
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "client_credentials", "client_id": "svc-tls"},
        verify=server.ca_file,
        timeout=10,
    )
    assert r.status_code == 401


def test_combined_pem_works_for_tls_client(server):
    r = requests.post(
        server.token_endpoint,
        data={"grant_type": "client_credentials", "client_id": "svc-tls"},
        cert=str(server.pki / "client-a-combined.pem"),
        verify=server.ca_file,
        timeout=10,
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("client_id", ["svc-admin", "svc-tls", "svc-private-jwt-eddsa"])
def test_revocation(server, client_id):
    token = obtain_token(server, client_id)
    other = obtain_token(server, client_id)
    assert introspect(server, token)["active"] is True
    revoke(server, token)
    assert introspect(server, token) == {"active": False}
    assert introspect(server, other)["active"] is True
    revoke(server, token)  # already revoked: no-op


def test_revocation_by_other_client_refused(server):
    token = obtain_token(server, "svc-admin")
    with pytest.raises(requests.HTTPError):
        revoke(server, token, client_id="svc-post")
    assert introspect(server, token)["active"] is True


def test_unknown_token_inactive(server):
    assert introspect(server, "not-a-token") == {"active": False}


def test_basic_secret_special_characters(server):
    secret = CLIENTS["svc-basic"]["secret"]
    assert any(ord(ch) > 127 for ch in secret) and all(ch in secret for ch in ":+%&= ")
    # correctly form-urlencoded (RFC 6749 §2.3.1) works
    token = obtain_token(server, "svc-basic")
    _check_active(server, "svc-basic", token)
    # introspection authenticated with the same Basic credentials works too
    assert introspect(server, token, client_id="svc-basic")["active"] is True

    def raw(header_value):
        return requests.post(
            server.token_endpoint,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": header_value},
            verify=server.ca_file,
            timeout=10,
        )

    # not encoded at all (plain RFC 7617 Basic with UTF-8): rejected
    plain = "Basic " + base64.b64encode(f"svc-basic:{secret}".encode()).decode()
    assert raw(plain).status_code in (400, 401)
    # percent-encoded but '+' left alone (decodes to a space): rejected
    wrong = "svc-basic:" + oidc_as.form_urlencode(secret).replace("%2B", "+")
    assert raw("Basic " + base64.b64encode(wrong.encode()).decode()).status_code in (400, 401)
    # wrong secret: rejected
    assert raw(oidc_as.basic_auth_header("svc-basic", secret + "x")).status_code == 401


def test_client_assertion_audiences(server):
    import uuid

    import jwt

    key = (server.pki / "rsa-pkcs1.key").read_bytes()
    for aud in (server.issuer, server.token_endpoint, "https://elsewhere.example"):
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iss": "svc-private-jwt",
                "sub": "svc-private-jwt",
                "aud": aud,
                "iat": now,
                "exp": now + 60,
                "jti": uuid.uuid4().hex,
            },
            key,
            algorithm="RS256",
        )
        r = requests.post(
            server.token_endpoint,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": oidc_as.JWT_BEARER,
                "client_assertion": assertion,
            },
            verify=server.ca_file,
            timeout=10,
        )
        assert r.status_code == (401 if "elsewhere" in aud else 200), (aud, r.text)


def test_http_listener(server):
    # same provider over plain HTTP; issuer stays https
    r = requests.post(
        server.http_base + "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "svc-post",
            "client_secret": CLIENTS["svc-post"]["secret"],
            "scope": "api",
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    r = requests.post(
        server.http_base + "/token/introspection",
        data={"token": token, "client_id": "svc-post", "client_secret": CLIENTS["svc-post"]["secret"]},
        timeout=10,
    )
    assert r.json()["active"] is True and r.json()["iss"] == server.issuer
    assert requests.get(server.http_base + "/_health", timeout=10).status_code == 200


def test_stats(server):
    server.reset_stats()
    assert server.stats() == {"token": {}, "introspection": {}}
    t1 = obtain_token(server, "svc-admin")
    obtain_token(server, "svc-admin")
    obtain_token(server, "svc-private-jwt-es256")
    bad = token_response(server, "svc-admin")  # succeeds; now a failing one:
    assert bad.status_code == 200
    requests.post(
        server.token_endpoint,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": oidc_as.basic_auth_header("svc-admin", "nope")},
        verify=server.ca_file,
        timeout=10,
    )
    introspect(server, t1)
    introspect(server, t1, client_id="svc-basic")
    s = server.stats()
    assert s["token"] == {"svc-admin": 3, "svc-private-jwt-es256": 1, "_all": 5}
    assert s["introspection"] == {"svc-post": 1, "svc-basic": 1, "_all": 2}
    server.reset_stats()
    assert server.stats() == {"token": {}, "introspection": {}}


# ---------------------------------------------------- separate instances
def test_token_ttl_and_delay_options(pki):
    with start_as(pki, token_ttl=2, delay_ms=400) as s:
        r = token_response(s, "svc-post")
        assert r.json()["expires_in"] == 2
        token = r.json()["access_token"]
        t0 = time.monotonic()
        assert introspect(s, token)["active"] is True
        assert time.monotonic() - t0 >= 0.4
        time.sleep(3)
        assert introspect(s, token) == {"active": False}
    assert not s.alive()


def test_stop_kills_process(pki):
    s = start_as(pki)
    assert s.alive()
    s.stop()
    assert not s.alive()
