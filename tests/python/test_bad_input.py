"""Bad input gets a clear answer: start-up errors name the option; bad tokens are 401; an AS
that cannot answer is 503 with Retry-After; nothing escapes as an exception; no secret or token
reaches the logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import MAPPING, call
from fake_as import FakeAS, active_claims, closed_port_url
from tokenward import ConfigurationError
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app

SECRET = "s3cr3t-that-must-never-be-logged"
TOKEN = "tok-that-must-never-be-logged-0123456789"


def options(url: str, **extra: str) -> dict[str, str]:
    return {
        "introspect_endpoint": url,
        "audience": "https://as.example",
        "client_id": "rs",
        "client_secret": SECRET,
        "http_connect_timeout": "2",
        **MAPPING,
        "mapping_user_id": "client_id",
        "mapping_user_name": "username",
        **extra,
    }


def reply(status: int, body: Any) -> Any:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda form, headers: (status, payload)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- start-up


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"introspect_endpoint": ""}, "introspect_endpoint"),
        ({"introspect_endpoint": "not a url"}, "introspect_endpoint"),
        ({"audience": ""}, "audience"),
        ({"client_id": ""}, "client_id"),
        ({"client_secret": ""}, "client_secret"),
        ({"mapping_roles": ""}, "mapping_roles"),
        ({"mapping_user_domain_name": ""}, "mapping_user_domain_name"),
        ({"mapping_project_name": ""}, "mapping_project_name"),
        ({"mapping_roles": "a..b"}, "mapping_roles"),
        ({"mapping_project_id": ".x"}, "mapping_project_id"),
        ({"auth_method": "magic"}, "auth_method"),
        ({"auth_method": "client_secret_jwt"}, "jwt_algorithm"),
        ({"auth_method": "client_secret_jwt", "jwt_algorithm": "RS256"}, "jwt_algorithm"),
        ({"auth_method": "client_secret_jwt", "jwt_algorithm": "none"}, "jwt_algorithm"),
        ({"auth_method": "private_key_jwt", "jwt_algorithm": "RS256"}, "jwt_key_file"),
        (
            {"auth_method": "private_key_jwt", "jwt_algorithm": "RS256", "jwt_key_file": "/nonexistent.pem"},
            "jwt_key_file",
        ),
        ({"auth_method": "tls_client_auth"}, "certfile"),
        ({"token_cache_time": "five"}, "token_cache_time"),
        ({"thumbprint_verify": "maybe"}, "thumbprint_verify"),
        ({"cafile": "/nonexistent/ca.pem"}, "cafile"),
        ({"memcache_security_strategy": "encrypt"}, "memcache_secret_key"),
    ],
)
def test_start_up_errors_name_the_option(change: dict[str, str], option: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        ExternalAuth2Protocol(echo_app, options("http://127.0.0.1:9/introspect", **change))
    assert err.value.option == option
    assert option in str(err.value)
    assert SECRET not in str(err.value)


def test_key_and_certificate_problems_name_the_option(pki: Path, tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/introspect"
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    cases = [
        (
            {"auth_method": "private_key_jwt", "jwt_algorithm": "RS256", "jwt_key_file": str(empty)},
            "jwt_key_file",
            "empty",
        ),
        (
            {"auth_method": "private_key_jwt", "jwt_algorithm": "ES256", "jwt_key_file": str(pki / "rsa-pkcs8.key")},
            "jwt_algorithm",
            "does not fit",
        ),
        (
            {"auth_method": "private_key_jwt", "jwt_algorithm": "ES384", "jwt_key_file": str(pki / "ec256-sec1.key")},
            "jwt_algorithm",
            "curve",
        ),
        (
            {"auth_method": "private_key_jwt", "jwt_algorithm": "RS256", "jwt_key_file": str(pki / "ca.pem")},
            "jwt_key_file",
            "no PEM private key",
        ),
        ({"certfile": str(pki / "client-v1.pem"), "keyfile": str(pki / "client-v1.key")}, "certfile", "v1"),
        ({"certfile": str(pki / "client-a.pem")}, "certfile", "private key"),
        ({"certfile": str(pki / "client-a.pem"), "keyfile": str(pki / "client-b.key")}, "certfile", "TLS"),
    ]
    for change, option, words in cases:
        with pytest.raises(ConfigurationError) as err:
            ExternalAuth2Protocol(echo_app, options(url, **change))
        assert err.value.option == option, (change, str(err.value))
        assert words in str(err.value), str(err.value)


def test_key_formats_keystonemiddleware_accepts_load(pki: Path) -> None:
    url = "http://127.0.0.1:9/introspect"
    for alg, key in [
        ("RS256", "rsa-pkcs1.key"),
        ("RS512", "rsa-pkcs8.key"),
        ("PS384", "rsa-pkcs1.key"),
        ("ES256", "ec256-sec1.key"),
        ("ES384", "ec384.key"),
        ("ES512", "ec521.key"),
        ("EdDSA", "ed25519.key"),
    ]:
        ExternalAuth2Protocol(
            echo_app, options(url, auth_method="private_key_jwt", jwt_algorithm=alg, jwt_key_file=str(pki / key))
        )
    ExternalAuth2Protocol(echo_app, options(url, certfile=str(pki / "client-a-combined.pem")))


def test_unknown_options_are_a_warning_naming_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    ExternalAuth2Protocol(
        echo_app, {**options("http://127.0.0.1:9/x"), "here": "/etc", "__file__": "a.ini", "debug": "true"}
    )
    text = caplog.text
    assert 'The option "debug" is not known' in text
    assert '"here"' not in text and "__file__" not in text


# --------------------------------------------------------------------------- per request


def test_malformed_authorization_headers_are_401() -> None:
    with FakeAS() as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url))
        for value in [
            None,
            "",
            "Bearer",
            "Bearer ",
            "Basic dXNlcjpwYXNz",
            "Bearer a b",
            "Bearer t\u00f6k",
            "Token x",
            "Bearer " + "x" * 20000,
        ]:
            headers = {} if value is None else {"Authorization": value}
            status, hdrs, body = call(app, headers)
            assert status == "401 Unauthorized", value
            assert hdrs["WWW-Authenticate"] == 'Authorization OAuth 2.0 uri="https://as.example"'
            assert body["error"]["message"].endswith("because the token is invalid.")
        assert fake.requests == [], "malformed headers never reach the AS"


def test_bearer_scheme_is_case_insensitive() -> None:
    with FakeAS() as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url))
        assert call(app, {"Authorization": f"bearer {TOKEN}"})[0] == "200 OK"


@pytest.mark.parametrize(
    ("responder", "what"),
    [
        (reply(200, b"<html>not json</html>"), "non-JSON"),
        (reply(200, [1, 2]), "non-object"),
        (reply(200, b'"active"'), "JSON string"),
        (reply(500, {"error": "server_error"}), "AS 500"),
        (reply(401, {"error": "invalid_client"}), "our credentials rejected"),
        (reply(400, {"error": "invalid_client"}), "our credentials rejected (400)"),
        (reply(302, b""), "redirect"),
    ],
)
def test_as_that_cannot_answer_is_503_with_retry_after(responder: Any, what: str) -> None:
    with FakeAS(responder) as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url, retry_after="7"))
        status, headers, body = call(app, bearer())
        assert status == "503 Service Unavailable", what
        assert headers["Retry-After"] == "7"
        assert body["error"]["code"] == 503
        # A failure is not cached: the next request asks again.
        call(app, bearer())
        assert len(fake.requests) == 2


def test_as_down_and_as_too_slow_are_503() -> None:
    app = ExternalAuth2Protocol(echo_app, options(closed_port_url()))
    status, headers, _ = call(app, bearer())
    assert status == "503 Service Unavailable" and headers["Retry-After"] == "5"
    with FakeAS(delay=3) as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url, http_connect_timeout="1"))
        assert call(app, bearer())[0] == "503 Service Unavailable"


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"active": "true"}, "401 Unauthorized"),
        ({"active": 1}, "401 Unauthorized"),
        ({"active": False}, "401 Unauthorized"),
        ({"exp": 1000}, "401 Unauthorized"),
        ({"exp": "soon"}, "401 Unauthorized"),
        ({"nbf": 4102444800}, "401 Unauthorized"),
        ({"cnf": "not-an-object"}, "401 Unauthorized"),
        ({"cnf": None}, "401 Unauthorized"),
        ({"cnf": {"x5t#S256": 5}}, "401 Unauthorized"),
        ({"roles": 7}, "403 Forbidden"),
        ({"roles": ["member", 3]}, "403 Forbidden"),
        ({"username": "evil\r\nX-Roles: admin"}, "403 Forbidden"),
        ({"project": {"id": "p1"}}, "403 Forbidden"),
        ({"user_domain": "flat"}, "403 Forbidden"),
    ],
)
def test_bad_claims_get_the_documented_status(pki: Path, claims: dict[str, Any], status: str) -> None:
    body = active_claims(**claims)
    with FakeAS(reply(200, body)) as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url, thumbprint_verify="true"))
        cert = (pki / "client-a.pem").read_text()
        got, headers, _ = call(app, bearer(), SSL_CLIENT_CERT=cert)
        assert got == status, claims
        if status.startswith("401"):
            assert "WWW-Authenticate" in headers


def test_float_exp_accepted_on_fresh_answers_and_hits() -> None:
    import time

    with FakeAS(reply(200, active_claims(exp=time.time() + 600.5))) as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url, mapping_expires_at="exp"))
        assert call(app, bearer())[0] == "200 OK"
        assert call(app, bearer())[0] == "200 OK"
        assert len(fake.requests) == 1


def test_inactive_tokens_are_cached_briefly_and_failures_not_at_all() -> None:
    with FakeAS(reply(200, {"active": False})) as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url))
        for _ in range(3):
            assert call(app, bearer())[0] == "401 Unauthorized"
        assert len(fake.requests) == 1
        assert app.authenticator.metrics()["cache_negative_hits"] == 2


def test_app_401_gets_one_challenge() -> None:
    def deny(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"no"]

    def deny_own(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
        return [b"no"]

    with FakeAS() as fake:
        filt = ExternalAuth2Protocol(deny, options(fake.url))
        for _ in range(2):  # a miss, then a cache hit (answered without a Python frame)
            _, headers, _ = call(filt, bearer())
            assert headers["WWW-Authenticate"] == 'Authorization OAuth 2.0 uri="https://as.example"'
        assert len(fake.requests) == 1
        app = ExternalAuth2Protocol(deny_own, options(fake.url))
        captured: list[Any] = []
        env = {"REQUEST_METHOD": "GET", "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
        app(env, lambda s, h, e=None: captured.append(h))
        assert [k for k, _ in captured[0]].count("WWW-Authenticate") == 1


def test_a_dropped_filter_is_freed() -> None:
    """The native WSGI base holds the application and the authenticator, never a bound
    method of the filter: no reference cycle the garbage collector cannot see."""
    import gc
    import weakref

    with FakeAS() as fake:
        filt = ExternalAuth2Protocol(echo_app, options(fake.url))
        assert call(filt, bearer())[0] == "200 OK"
        gone = weakref.ref(filt)
        del filt
        gc.collect()
        assert gone() is None


def test_no_secret_or_token_in_logs_at_debug(caplog: pytest.LogCaptureFixture, pki: Path) -> None:
    caplog.set_level(logging.DEBUG)
    responders = [
        reply(200, active_claims()),
        reply(200, {"active": False}),
        reply(401, {"error": "invalid_client"}),
        reply(200, b"garbage"),
        reply(200, active_claims(roles=5)),
    ]
    for responder in responders:
        with FakeAS(responder) as fake:
            for method, extra in [
                ("client_secret_basic", {}),
                ("client_secret_post", {}),
                ("client_secret_jwt", {"jwt_algorithm": "HS256"}),
            ]:
                app = ExternalAuth2Protocol(echo_app, options(fake.url, auth_method=method, **extra))
                call(app, bearer())
                call(app, bearer())
                for form, headers in fake.requests:
                    for secretish in [*form.get("client_assertion", []), headers.get("authorization", "")]:
                        if secretish:
                            assert secretish not in caplog.text
    app = ExternalAuth2Protocol(echo_app, options(closed_port_url()))
    call(app, bearer())
    assert caplog.records, "something was logged"
    assert SECRET not in caplog.text
    assert TOKEN not in caplog.text
    assert "fp:" in caplog.text, "refusals carry a token fingerprint"


def test_readme_lists_every_option() -> None:
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_options.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
