"""Self-check of the test authorization server and its Python driver.

Starts tests/as/server.mjs (oidc-provider) and checks every client, the
identity claims, certificate binding, revocation and the stats hooks, the
RFC 9068 JWT access tokens and signing-key control, and tests/support/jwt_tools.py.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
import jwt_tools
import oidc_as
from oidc_as import (
    CLIENTS,
    ensure_pki,
    expected_extra_claims,
    introspect,
    make_signing_keys,
    obtain_token,
    revoke,
    signing_key,
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


# ------------------------------------------------ JWT access tokens (RFC 9068)
def _jwks(server):
    r = requests.get(server.jwks_uri, verify=server.ca_file, timeout=10)
    r.raise_for_status()
    return r.json()


def _verify_at(server, token, alg="RS256"):
    """Check the at+jwt header and signature against the AS's JWKS; return (header, claims)."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt" and header["alg"] == alg, header
    jwks = jwt.PyJWKSet.from_dict(_jwks(server))
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims = jwt.decode(token, key.key, algorithms=[alg], audience=server.jwt_resource, issuer=server.issuer)
    return header, claims


def test_ready_jwt_info(server):
    assert server.jwt_resource == "urn:tokenward:api"
    assert server.jwks_uri == server.issuer + "/jwks"
    assert (server.info["jwt_alg"], server.info["jwt_kid"]) == ("RS256", "as-rs256")
    jwks = _jwks(server)
    assert [(k["kid"], k["kty"], k["alg"]) for k in jwks["keys"]] == [("as-rs256", "RSA", "RS256")]
    assert "d" not in jwks["keys"][0]


@pytest.mark.parametrize("client_id", sorted(CLIENTS))
def test_jwt_access_token(server, client_id):
    r = token_response(server, client_id, resource=server.jwt_resource)
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] == 600
    header, claims = _verify_at(server, r.json()["access_token"])
    assert header["kid"] == "as-rs256"
    assert claims["client_id"] == claims["sub"] == client_id
    assert claims["aud"] == server.jwt_resource
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"]
    assert "scope" not in claims
    for k, v in expected_extra_claims(client_id).items():
        assert claims[k] == v, (k, claims)
    if CLIENTS[client_id]["bound"]:
        assert claims["cnf"] == {"x5t#S256": thumbprints(server)["client-a"]}
    else:
        assert "cnf" not in claims


def test_jwt_scope_and_bound_cert(server):
    token = obtain_token(server, "svc-post", scope="api:read api:write", resource=server.jwt_resource)
    assert _verify_at(server, token)[1]["scope"] == "api:read api:write"
    assert introspect(server, token) == {"active": False}  # 8.x: JWTs are not introspectable
    token = obtain_token(server, "svc-bound", cert=("client-b.pem", "client-b.key"), resource=server.jwt_resource)
    assert _verify_at(server, token)[1]["cnf"] == {"x5t#S256": thumbprints(server)["client-b"]}


@pytest.mark.parametrize("resource", ["urn:tokenward:other", "https://elsewhere.example/api", "not a uri"])
def test_other_resource_refused(server, resource):
    r = token_response(server, "svc-post", scope="api", resource=resource)
    assert r.status_code == 400 and r.json()["error"] == "invalid_target", r.text


def test_signing_keys_rotation_same_port(pki, tmp_path):
    old_keys = make_signing_keys(tmp_path / "old.json", [("rs-old", "RS256"), ("es", "ES256")])
    assert oct(old_keys.stat().st_mode & 0o777) == "0o600"
    with start_as(pki, signing_keys=old_keys) as s1:
        assert [k["kid"] for k in _jwks(s1)["keys"]] == ["rs-old", "es"]
        assert all("d" not in k for k in _jwks(s1)["keys"])
        old_token = obtain_token(s1, "svc-admin", resource=s1.jwt_resource)
        assert _verify_at(s1, old_token)[0]["kid"] == "rs-old"
        # a token minted with the AS's own key verifies against its JWKS too
        now = int(time.time())
        claims = {"iss": s1.issuer, "aud": s1.jwt_resource, "sub": "x", "iat": now, "exp": now + 60}
        minted = jwt_tools.mint(
            {"alg": "RS256", "typ": "at+jwt", "kid": "rs-old"}, claims, signing_key(old_keys, "rs-old")
        )
        assert _verify_at(s1, minted)[1] == claims
    new_keys = make_signing_keys(tmp_path / "new.json", [("rs-new", "RS256")])
    with start_as(pki, port=s1.port, signing_keys=new_keys) as s2:
        assert (s2.issuer, s2.jwks_uri) == (s1.issuer, s1.jwks_uri)
        assert [k["kid"] for k in _jwks(s2)["keys"]] == ["rs-new"]
        assert _verify_at(s2, obtain_token(s2, "svc-admin", resource=s2.jwt_resource))[0]["kid"] == "rs-new"
        new_key = jwt.PyJWK(_jwks(s2)["keys"][0]).key
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(old_token, new_key, algorithms=["RS256"], audience=s2.jwt_resource)


@pytest.mark.parametrize("alg", ["PS256", "ES256", "EdDSA"])
def test_jwt_alg_option(pki, tmp_path, alg):
    keys = make_signing_keys(tmp_path / "keys.json", [("rs", "RS256"), (f"k-{alg}", alg), ("k2", alg)])
    with start_as(pki, signing_keys=keys, jwt_alg=alg) as s:
        assert s.info["jwt_kid"] == f"k-{alg}"
        header, claims = _verify_at(s, obtain_token(s, "svc-array", resource=s.jwt_resource), alg=alg)
        assert header["kid"] == f"k-{alg}" and claims["roles"] == ["member", "reader"]
        # no resource: still an opaque, introspectable token
        assert introspect(s, obtain_token(s, "svc-array"))["active"] is True


def test_jwt_alg_without_key_fails(pki):
    with pytest.raises(RuntimeError, match="no ES256 key"):
        start_as(pki, jwt_alg="ES256")


# ------------------------------------------------------------ DPoP (RFC 9449)
@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_dpop_bound_token(server, alg):
    key = oidc_as.new_private_key(alg)
    r = token_response(server, "svc-post", scope="api", dpop_key=key, dpop_alg=alg)
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "DPoP"
    info = introspect(server, r.json()["access_token"])
    assert info["active"] is True and info["token_type"] == "DPoP"
    assert info["cnf"] == {"jkt": jwt_tools.jwk_thumbprint(jwt_tools.public_jwk(key))}
    # The same client without a proof still gets a bearer token.
    assert introspect(server, obtain_token(server, "svc-post"))["token_type"] == "Bearer"


def test_dpop_jwt_access_token_and_not_both_bindings(server):
    key = oidc_as.new_private_key("ES256")
    jkt = jwt_tools.jwk_thumbprint(jwt_tools.public_jwk(key))
    token = obtain_token(server, "svc-admin", resource=server.jwt_resource, dpop_key=key)
    assert _verify_at(server, token)[1]["cnf"] == {"jkt": jkt}
    # 8.x refuses a proof for a client with certificate-bound tokens.
    r = token_response(server, "svc-bound", dpop_key=key)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", r.text


def test_dpop_proofs_the_as_refuses(server):
    key = oidc_as.new_private_key("ES256")
    secret = CLIENTS["svc-post"]["secret"]

    def post(proof):
        return requests.post(
            server.token_endpoint,
            data={"grant_type": "client_credentials", "client_id": "svc-post", "client_secret": secret},
            headers={"DPoP": proof},
            verify=server.ca_file,
            timeout=10,
        )

    endpoint = server.token_endpoint
    for proof in [
        jwt_tools.dpop_proof(key, "POST", server.issuer + "/elsewhere"),
        jwt_tools.dpop_proof(key, "GET", endpoint),
        jwt_tools.dpop_proof(key, "POST", endpoint, header={"typ": "JWT"}),
        jwt_tools.dpop_proof(key, "POST", endpoint, alg="HS256", signing_key=b"k" * 32),
        jwt_tools.dpop_proof(key, "POST", endpoint, signing_key=oidc_as.new_private_key("ES256")),
        jwt_tools.dpop_proof(key, "POST", endpoint, iat=time.time() - 3600),
    ]:
        r = post(proof)
        assert r.status_code == 400 and r.json()["error"] in ("invalid_dpop_proof", "use_dpop_nonce"), r.text
    proof = jwt_tools.dpop_proof(key, "POST", endpoint)
    assert post(proof).status_code == 200
    r = post(proof)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text  # replayed jti


def test_dpop_nonce_is_fetched_and_retried(pki):
    with start_as(pki, dpop_nonce=True) as s:
        assert s.info["dpop_nonce"] is True
        key = oidc_as.new_private_key("ES256")
        r = requests.post(
            s.token_endpoint,
            data={"grant_type": "client_credentials"},
            headers={
                "Authorization": oidc_as.basic_auth_header("svc-admin", CLIENTS["svc-admin"]["secret"]),
                "DPoP": jwt_tools.dpop_proof(key, "POST", s.token_endpoint),
            },
            verify=s.ca_file,
            timeout=10,
        )
        assert r.status_code == 400 and r.json()["error"] == "use_dpop_nonce" and r.headers["DPoP-Nonce"]
        # private_key_jwt: the retry needs a fresh client assertion too.
        for client_id in ("svc-admin", "svc-private-jwt"):
            token = obtain_token(s, client_id, dpop_key=key)
            assert introspect(s, token)["cnf"]["jkt"] == jwt_tools.jwk_thumbprint(jwt_tools.public_jwk(key))
        assert introspect(s, obtain_token(s, "svc-admin"))["token_type"] == "Bearer"


def test_dpop_proof_builder():
    # RFC 7638 §3.1 example key.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiF"
        "V4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c"
        "7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF"
        "44-csFCur-kEgU8awapJzKnqDKgw"
    )
    vector = {"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"}
    assert jwt_tools.jwk_thumbprint(vector) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    for alg in ("ES256", "RS256", "EdDSA"):
        key = oidc_as.new_private_key(alg)
        proof = jwt_tools.dpop_proof(key, "GET", "https://api.example/v1", token="tok", jti="j1", iat=1000)
        header = jwt.get_unverified_header(proof)
        assert header == {"typ": "dpop+jwt", "alg": alg, "jwk": jwt_tools.public_jwk(key)}
        assert not {"d", "p", "q"} & set(header["jwk"])
        claims = jwt.decode(proof, jwt.PyJWK(header["jwk"], alg).key, algorithms=[alg])
        assert claims == {
            "htm": "GET",
            "htu": "https://api.example/v1",
            "iat": 1000,
            "jti": "j1",
            "ath": jwt_tools.token_hash("tok"),
        }
    edited = jwt_tools.dpop_proof(key, "GET", "u", header={"typ": None, "x": 1}, claims={"jti": None})
    assert "typ" not in jwt.get_unverified_header(edited) and jwt.get_unverified_header(edited)["x"] == 1
    assert jwt_tools.dpop_proof(key, "GET", "u", header={"alg": "none"}).endswith(".")


# ----------------------------------------------------------------- jwt_tools
def _cross_keys():
    return {alg: oidc_as.new_private_key(alg) for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"]}


def test_mint_matches_pyjwt():
    now = int(time.time())
    claims = {"iss": "https://iss.example", "sub": "s", "aud": "a", "iat": now, "exp": now + 60, "n": [1, "ü"]}
    for alg, key in _cross_keys().items():
        header = {"alg": alg, "kid": "k1", "typ": "at+jwt"}  # sorted, as PyJWT writes it
        token = jwt_tools.mint(header, claims, key)
        assert jwt.get_unverified_header(token) == header
        assert jwt.decode(token, key.public_key(), algorithms=[alg], audience="a") == claims
        ours_sig = base64.urlsafe_b64decode(token.split(".")[2] + "==")
        if alg.startswith("ES"):
            assert len(ours_sig) == 2 * ((key.curve.key_size + 7) // 8)  # raw r||s
        if alg in ("RS256", "EdDSA"):  # deterministic: byte-identical to PyJWT
            assert token == jwt.encode(claims, key, algorithm=alg, headers={"kid": "k1", "typ": "at+jwt"})
    secret = b"0123456789abcdef0123456789abcdef"
    assert jwt_tools.hs256(claims, secret, {"typ": "JWT"}) == jwt.encode(claims, secret, algorithm="HS256")


def test_attack_token_builders():
    claims = {"sub": "x"}
    none = jwt_tools.alg_none(claims, {"typ": "at+jwt", "kid": "k"})
    assert none.endswith(".") and none.count(".") == 2
    assert jwt.get_unverified_header(none) == {"typ": "at+jwt", "kid": "k", "alg": "none"}
    key = oidc_as.new_private_key("RS256")
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(none, key.public_key(), algorithms=["RS256"])
    assert jwt_tools.compact(b"{", b"x", b"") == "ew.eA."
    assert jwt_tools.b64url(b"\xfb\xff") == "-_8"


def test_keycloak_claims_roundtrip():
    key = oidc_as.new_private_key("ES256")
    claims = jwt_tools.keycloak_claims(
        "https://kc.example/realms/r", username="bob", roles=["admin"], now=1000, lifetime=60
    )
    assert claims["exp"] == 1060 and claims["iat"] == 1000
    assert claims["aud"] == "account" and claims["scope"] == "openid profile"
    assert claims["realm_access"] == {"roles": ["admin"]} and claims["preferred_username"] == "bob"
    assert claims["project"]["domain"] == {"id": "default", "name": "Default"} and claims["user_domain"]["id"]
    assert jwt_tools.keycloak_claims("i", azp="x", extra_claim=1)["extra_claim"] == 1
    live = jwt_tools.keycloak_claims("https://kc.example/realms/r")
    token = jwt_tools.mint({"alg": "ES256", "typ": "JWT", "kid": "kc"}, live, key)
    decoded = jwt.decode(
        token, key.public_key(), algorithms=["ES256"], audience="account", issuer="https://kc.example/realms/r"
    )
    assert decoded == live


def test_jwks_server():
    jwks = {"keys": [{"kty": "oct", "kid": "x"}]}
    with jwt_tools.JwksServer(jwks) as js:
        assert js.jwks_uri == js.base_url + "/jwks"
        r = requests.get(js.jwks_uri, timeout=5)
        assert r.json() == jwks and "Cache-Control" not in r.headers
        js.cache_control = "max-age=60"
        assert requests.get(js.jwks_uri + "?x=1", timeout=5).headers["Cache-Control"] == "max-age=60"
        disco = js.url(js.DISCOVERY_PATH)
        assert requests.get(disco, timeout=5).status_code == 404
        js.issuer = "https://iss.example"
        assert requests.get(disco, timeout=5).json() == {"issuer": "https://iss.example", "jwks_uri": js.jwks_uri}
        js.jwks = {"keys": []}
        assert requests.get(js.jwks_uri, timeout=5).json() == {"keys": []}
        js.failure = 500
        assert requests.get(js.jwks_uri, timeout=5).status_code == 500
        js.failure = "garbage"
        r = requests.get(js.jwks_uri, timeout=5)
        assert r.status_code == 200
        with pytest.raises(ValueError):
            r.json()
        js.failure = "hang"
        with pytest.raises(requests.Timeout):
            requests.get(js.jwks_uri, timeout=0.3)
        js.failure = None
        assert requests.get(js.jwks_uri, timeout=5).status_code == 200
        assert js.count() == 7 and js.count(js.DISCOVERY_PATH) == 2
        js.reset_counts()
        assert js.count() == 0
        js.failure = "hang"  # close() must release a hanging request
        with pytest.raises(requests.Timeout):
            requests.get(js.jwks_uri, timeout=0.2)


def test_recording_server():
    with jwt_tools.RecordingServer() as rs:
        assert not rs.hit
        assert requests.get(rs.url("/keys.json"), timeout=5).json() == {"keys": []}
        assert rs.hit and rs.requests == [("GET", "/keys.json")]


def test_store_keeps_tokens_across_a_kill(pki, tmp_path):
    store = tmp_path / "store.jsonl"
    s1 = start_as(pki, store=store)
    kept = obtain_token(s1, "svc-basic")
    gone = obtain_token(s1, "svc-post")
    revoke(s1, gone)
    s1.process.kill()  # no clean shutdown: the journal is all there is
    s1.stop()
    with start_as(pki, port=s1.port, store=store) as s2:
        assert s2.issuer == s1.issuer
        info = introspect(s2, kept)
        assert info["active"] and info["client_id"] == "svc-basic"
        assert not introspect(s2, gone)["active"]
    with start_as(pki) as s3:  # no store: a new AS knows nothing
        assert not introspect(s3, kept)["active"]
