"""DPoP (RFC 9449) through the paste filter, with DPoP-bound tokens from the real AS
(oidc-provider) checked by introspection: the proof must be by the token's key, for the method
and the URL the filter computes from the WSGI environ, fresh, unreplayed and bound to the token."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

import jwt_tools
import oidc_as
import pytest
from conftest import call, introspection_options
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app

# A request as a TLS-terminating server hands it to the application.
ENVIRON = {
    "REQUEST_METHOD": "POST",
    "SCRIPT_NAME": "/v1",
    "PATH_INFO": "/vnflcm/v2/vnf_instances",
    "QUERY_STRING": "limit=5",
    "HTTP_HOST": "api.example:9890",
    "wsgi.url_scheme": "https",
    "REMOTE_ADDR": "192.0.2.7",
}
URL = "https://api.example:9890/v1/vnflcm/v2/vnf_instances"


def dpop_filter(server: oidc_as.AuthServer, mode: str = "required", **extra: str) -> ExternalAuth2Protocol:
    return ExternalAuth2Protocol(echo_app, {**introspection_options(server, "svc-post"), "dpop": mode, **extra})


def send(app: Any, scheme: str, token: str, proof: str | None, **environ: Any) -> tuple[str, dict[str, str], Any]:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return call(app, headers, **{**ENVIRON, **environ})


def refused(outcome: tuple[str, dict[str, str], Any], error: str) -> None:
    status, headers, body = outcome
    assert status == "401 Unauthorized", (status, body)
    assert headers["WWW-Authenticate"].startswith(f'DPoP error="{error}"'), headers["WWW-Authenticate"]
    assert isinstance(body, dict) and body["error"]["code"] == 401 and "environ" not in body, body


@pytest.fixture(scope="module")
def es_key() -> Any:
    return oidc_as.new_private_key("ES256")


@pytest.fixture(scope="module")
def es_token(auth_server: oidc_as.AuthServer, es_key: Any) -> str:
    return oidc_as.obtain_token(auth_server, "svc-post", dpop_key=es_key)


@pytest.mark.parametrize(("client_id", "alg"), [("svc-post", "ES256"), ("svc-admin", "RS256")])
def test_a_bound_token_with_a_proof_for_this_request_is_accepted(
    auth_server: oidc_as.AuthServer, client_id: str, alg: str
) -> None:
    key = oidc_as.new_private_key(alg)
    token = oidc_as.obtain_token(auth_server, client_id, dpop_key=key)
    assert oidc_as.introspect(auth_server, token)["cnf"]["jkt"] == jwt_tools.jwk_thumbprint(jwt_tools.public_jwk(key))
    app = dpop_filter(auth_server)
    for _ in range(2):  # an AS answer, then the cache: a fresh proof each time
        status, _, body = send(app, "DPoP", token, jwt_tools.dpop_proof(key, "POST", URL, token=token))
        assert status == "200 OK", body
        assert body["environ"]["HTTP_X_USER_ID"] == client_id
        assert body["token_info"]["user_id"] == client_id


@pytest.mark.parametrize(
    ("htu", "environ"),
    [
        # RFC 9449 §4.3: the query and fragment are ignored, scheme and host compared without
        # case, the default port dropped.
        ("HTTPS://API.Example:9890/v1/vnflcm/v2/vnf_instances?limit=1#f", {}),
        ("https://api.example/v1/x", {"HTTP_HOST": "api.example:443", "SCRIPT_NAME": "", "PATH_INFO": "/v1/x"}),
        ("https://api.example:443/v1/x", {"HTTP_HOST": "api.example", "SCRIPT_NAME": "", "PATH_INFO": "/v1/x"}),
        (
            "http://10.0.0.5:8080/v2/a%20b",
            {"wsgi.url_scheme": "http", "HTTP_HOST": "10.0.0.5:8080", "SCRIPT_NAME": "/v2", "PATH_INFO": "/a b"},
        ),
        # No Host header: SERVER_NAME (as the filter documents it).
        ("https://api.internal/v1/vnflcm/v2/vnf_instances", {"HTTP_HOST": "", "SERVER_NAME": "api.internal"}),
    ],
)
def test_the_url_is_the_one_the_filter_computes_from_the_environ(
    auth_server: oidc_as.AuthServer, es_key: Any, es_token: str, htu: str, environ: dict[str, str]
) -> None:
    app = dpop_filter(auth_server)
    proof = jwt_tools.dpop_proof(es_key, "POST", htu, token=es_token)
    status, _, body = send(app, "DPoP", es_token, proof, **environ)
    assert status == "200 OK", body
    for method in ("GET", "DELETE"):
        proof = jwt_tools.dpop_proof(es_key, method, htu, token=es_token)
        assert send(app, "DPoP", es_token, proof, **environ, REQUEST_METHOD=method)[0] == "200 OK"


def test_behind_a_proxy_that_rewrites_host_the_public_url_counts(
    auth_server: oidc_as.AuthServer, es_key: Any, es_token: str
) -> None:
    # The proxy answered https://api.example:8443/v1/... and called us as http://127.0.0.1:9999.
    behind = {"HTTP_HOST": "127.0.0.1:9999", "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1"}
    public = "https://api.example:8443/v1/vnflcm/v2/vnf_instances"
    internal = "http://127.0.0.1:9999/v1/vnflcm/v2/vnf_instances"
    app = dpop_filter(auth_server, dpop_public_url="https://api.example:8443")
    status, _, body = send(
        app, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", public, token=es_token), **behind
    )
    assert status == "200 OK", body
    refused(
        send(app, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", internal, token=es_token), **behind),
        "invalid_dpop_proof",
    )
    # Without dpop_public_url the same public proof names another URL than the request's.
    plain = dpop_filter(auth_server)
    refused(
        send(plain, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", public, token=es_token), **behind),
        "invalid_dpop_proof",
    )
    assert (
        send(plain, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", internal, token=es_token), **behind)[0]
        == "200 OK"
    )


@pytest.mark.parametrize(
    "host", ["evil.example/x?", "evil.example/x#", "evil.example/x/..", "u@evil.example", "evil.example:1 x"]
)
def test_a_host_that_is_not_host_and_port_never_matches(
    auth_server: oidc_as.AuthServer, es_key: Any, es_token: str, host: str
) -> None:
    # A proof the client made for another server (evil.example/x): a Host that ends the path
    # early must not make the request's URL equal to it.
    app = dpop_filter(auth_server)
    htu = "https://" + host.split(" ")[0].split("#")[0].split("?")[0]
    for proof_url in ("https://evil.example/x", htu, f"https://{host}/v1/vnflcm/v2/vnf_instances"):
        proof = jwt_tools.dpop_proof(es_key, "POST", proof_url, token=es_token)
        refused(send(app, "DPoP", es_token, proof, HTTP_HOST=host), "invalid_dpop_proof")


def test_an_ip_literal_host_is_a_host(auth_server: oidc_as.AuthServer, es_key: Any, es_token: str) -> None:
    app = dpop_filter(auth_server)
    for host in ("[::1]:9890", "[2001:db8::7]", "192.0.2.1:8443"):
        proof = jwt_tools.dpop_proof(es_key, "POST", f"https://{host}/v1/vnflcm/v2/vnf_instances", token=es_token)
        assert send(app, "DPoP", es_token, proof, HTTP_HOST=host)[0] == "200 OK", host


Proof = Callable[[Any, str], "str | None"]


def _other_key(alg: str = "ES256") -> Any:
    return oidc_as.new_private_key(alg)


# (name, proof builder (key, token) -> DPoP header or None, expected error). Each builder
# changes one thing of a proof that is otherwise right.
BAD_PROOFS: list[tuple[str, Proof, str]] = [
    ("no proof", lambda k, t: None, "invalid_dpop_proof"),
    ("empty proof", lambda k, t: "", "invalid_dpop_proof"),
    (
        "two proofs",
        lambda k, t: ", ".join(jwt_tools.dpop_proof(k, "POST", URL, token=t) for _ in "ab"),
        "invalid_dpop_proof",
    ),
    ("another method", lambda k, t: jwt_tools.dpop_proof(k, "GET", URL, token=t), "invalid_dpop_proof"),
    ("lower-case method", lambda k, t: jwt_tools.dpop_proof(k, "post", URL, token=t), "invalid_dpop_proof"),
    ("another path", lambda k, t: jwt_tools.dpop_proof(k, "POST", URL + "/x", token=t), "invalid_dpop_proof"),
    (
        "path case",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL.replace("vnflcm", "VNFLCM"), token=t),
        "invalid_dpop_proof",
    ),
    (
        "another host",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL.replace("api.example", "evil.example"), token=t),
        "invalid_dpop_proof",
    ),
    (
        "another port",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL.replace(":9890", ":9891"), token=t),
        "invalid_dpop_proof",
    ),
    (
        "another scheme",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL.replace("https:", "http:"), token=t),
        "invalid_dpop_proof",
    ),
    (
        "htu not a URL",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", "/v1/vnflcm/v2/vnf_instances", token=t),
        "invalid_dpop_proof",
    ),
    (
        "old iat",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, iat=time.time() - 120),
        "invalid_dpop_proof",
    ),
    (
        "future iat",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, iat=time.time() + 60),
        "invalid_dpop_proof",
    ),
    (
        "iat as text",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, claims={"iat": str(int(time.time()))}),
        "invalid_dpop_proof",
    ),
    ("no jti", lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, claims={"jti": None}), "invalid_dpop_proof"),
    ("wrong ath", lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t + "x"), "invalid_dpop_proof"),
    ("no ath", lambda k, t: jwt_tools.dpop_proof(k, "POST", URL), "invalid_dpop_proof"),
    (
        "typ JWT",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, header={"typ": "JWT"}),
        "invalid_dpop_proof",
    ),
    ("no typ", lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, header={"typ": None}), "invalid_dpop_proof"),
    (
        "alg none",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, header={"alg": "none"}),
        "invalid_dpop_proof",
    ),
    (
        "HS256 keyed with the public jwk",
        lambda k, t: jwt_tools.dpop_proof(
            k, "POST", URL, token=t, alg="HS256", signing_key=jwt_tools._json(jwt_tools.public_jwk(k))
        ),
        "invalid_dpop_proof",
    ),
    (
        "alg not the key's",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, alg="ES384"),
        "invalid_dpop_proof",
    ),
    (
        "jwk with private members",
        lambda k, t: jwt_tools.dpop_proof(
            k,
            "POST",
            URL,
            token=t,
            header={"jwk": {**jwt_tools.public_jwk(k), "d": oidc_as.private_jwk(k, "k", "ES256")["d"]}},
        ),
        "invalid_dpop_proof",
    ),
    (
        "symmetric jwk",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, header={"jwk": {"kty": "oct", "k": "c2VjcmV0"}}),
        "invalid_dpop_proof",
    ),
    ("no jwk", lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, header={"jwk": None}), "invalid_dpop_proof"),
    (
        "jwk as text",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, header={"jwk": "x"}),
        "invalid_dpop_proof",
    ),
    (
        "jwk of another key",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, header={"jwk": jwt_tools.public_jwk(_other_key())}),
        "invalid_dpop_proof",
    ),
    (
        "signed by another key",
        lambda k, t: jwt_tools.dpop_proof(k, "POST", URL, token=t, signing_key=_other_key()),
        "invalid_dpop_proof",
    ),
    (
        "a good proof by another key",
        lambda k, t: jwt_tools.dpop_proof(_other_key(), "POST", URL, token=t),
        "invalid_token",
    ),
    (
        "an RS256 proof by another key",
        lambda k, t: jwt_tools.dpop_proof(_other_key("RS256"), "POST", URL, token=t),
        "invalid_token",
    ),
    ("garbage", lambda k, t: "not.a.jwt", "invalid_dpop_proof"),
    ("not ASCII", lambda k, t: "\u00e9\u00e9.\u00e9.\u00e9", "invalid_dpop_proof"),
    ("huge", lambda k, t: "A" * 20000, "invalid_dpop_proof"),
]


@pytest.mark.parametrize(("name", "build", "error"), BAD_PROOFS, ids=[b[0] for b in BAD_PROOFS])
def test_a_wrong_proof_is_refused_on_a_miss_and_on_a_cache_hit(
    auth_server: oidc_as.AuthServer, es_key: Any, es_token: str, name: str, build: Proof, error: str
) -> None:
    fresh = dpop_filter(auth_server)
    warm = dpop_filter(auth_server)
    assert send(warm, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token))[0] == "200 OK"
    for app in (fresh, warm):
        refused(send(app, "DPoP", es_token, build(es_key, es_token)), error)
    # The right proof still works afterwards: nothing was cached as refused.
    assert send(fresh, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token))[0] == "200 OK"


def test_a_replayed_proof_is_refused(auth_server: oidc_as.AuthServer, es_key: Any, es_token: str) -> None:
    app = dpop_filter(auth_server)
    jti = str(uuid.uuid4())
    proof = jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token, jti=jti)
    assert send(app, "DPoP", es_token, proof)[0] == "200 OK"
    refused(send(app, "DPoP", es_token, proof), "invalid_dpop_proof")
    # The same jti in a new proof (another iat) is a replay too; a new jti is not.
    again = jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token, jti=jti, iat=int(time.time()) - 1)
    refused(send(app, "DPoP", es_token, again), "invalid_dpop_proof")
    assert send(app, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token))[0] == "200 OK"


@pytest.mark.parametrize("mode", ["off", "allowed", "required"])
def test_a_bound_token_is_never_a_bearer_token(
    auth_server: oidc_as.AuthServer, es_key: Any, es_token: str, mode: str
) -> None:
    app = dpop_filter(auth_server, mode)
    proof = jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token)
    refused(send(app, "Bearer", es_token, proof), "invalid_token")
    refused(send(app, "Bearer", es_token, None), "invalid_token")


def test_modes_decide_what_an_unbound_token_gets(auth_server: oidc_as.AuthServer, es_key: Any, es_token: str) -> None:
    bearer = oidc_as.obtain_token(auth_server, "svc-post")
    allowed, required, off = (dpop_filter(auth_server, m) for m in ("allowed", "required", "off"))
    # allowed: Bearer and DPoP side by side.
    assert send(allowed, "Bearer", bearer, None)[0] == "200 OK"
    assert send(allowed, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token))[0] == "200 OK"
    # required: a bearer token is refused with the DPoP challenge.
    refused(send(required, "Bearer", bearer, None), "invalid_token")
    # An unbound token sent with the DPoP scheme has no key to match.
    for app in (allowed, required):
        refused(send(app, "DPoP", bearer, jwt_tools.dpop_proof(es_key, "POST", URL, token=bearer)), "invalid_token")
    # off: the DPoP scheme is not known (the keystonemiddleware challenge), Bearer works.
    status, headers, _ = send(off, "DPoP", es_token, jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token))
    assert status == "401 Unauthorized" and not headers["WWW-Authenticate"].startswith("DPoP"), headers
    assert send(off, "Bearer", bearer, None)[0] == "200 OK"
    # An inactive token with a right proof: invalid_token.
    oidc_as.revoke(auth_server, bearer)
    refused(send(required, "DPoP", bearer, jwt_tools.dpop_proof(es_key, "POST", URL, token=bearer)), "invalid_token")


def test_a_dpop_bound_jwt_access_token_offline(auth_server: oidc_as.AuthServer, es_key: Any) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-admin", resource=auth_server.jwt_resource, dpop_key=es_key)
    options = {
        k: v
        for k, v in introspection_options(auth_server, "svc-post").items()
        if not k.startswith(("introspect", "client_", "auth_method"))
    }
    app = ExternalAuth2Protocol(
        echo_app,
        {
            **options,
            "validation": "jwt",
            "token_issuer": auth_server.issuer,
            "jwks_uri": auth_server.jwks_uri,
            "token_audience": auth_server.jwt_resource,
            "dpop": "required",
        },
    )
    status, _, body = send(app, "DPoP", token, jwt_tools.dpop_proof(es_key, "POST", URL, token=token))
    assert status == "200 OK", body
    assert body["environ"]["HTTP_X_USER_ID"] == "svc-admin"
    refused(send(app, "DPoP", token, jwt_tools.dpop_proof(_other_key(), "POST", URL, token=token)), "invalid_token")
    refused(send(app, "Bearer", token, None), "invalid_token")


# ------------------------------------------------------------------ replay across hosts


@pytest.mark.parametrize("store", ["memcached", "redis"])
def test_a_proof_used_on_one_host_is_a_replay_on_another(
    auth_server: oidc_as.AuthServer, es_key: Any, es_token: str, store: str
) -> None:
    """Two filters (two hosts) sharing a real memcached or Redis: the proof that one accepted
    is refused by the other, and each proof is recorded once in the store."""
    import cache_servers

    start = cache_servers.start_memcached if store == "memcached" else cache_servers.start_redis
    with start() as server:
        option = (
            {"memcached_servers": f"127.0.0.1:{server.port}"}
            if store == "memcached"
            else {"redis_url": f"redis://127.0.0.1:{server.port}/0"}
        )
        shared = {**option, "memcache_security_strategy": "MAC", "memcache_secret_key": "k" * 32}
        host_a, host_b = dpop_filter(auth_server, **shared), dpop_filter(auth_server, **shared)
        proof = jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token)
        assert send(host_a, "DPoP", es_token, proof)[0] == "200 OK"
        refused(send(host_b, "DPoP", es_token, proof), "invalid_dpop_proof")
        # A fresh proof is fine on either host.
        fresh = jwt_tools.dpop_proof(es_key, "POST", URL, token=es_token)
        assert send(host_b, "DPoP", es_token, fresh)[0] == "200 OK"
        keys = (
            cache_servers.memcached_keys(server.port) if store == "memcached" else cache_servers.redis_keys(server.port)
        )
        assert sum(1 for k in keys if k.startswith("tokenward/v1/")) >= 2, keys
