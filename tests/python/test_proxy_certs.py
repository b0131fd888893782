"""Certificates forwarded by a TLS-terminating proxy, through the Python door: the header is
believed only from trusted_proxies and never reaches the application; headers built from the
test PKI bind tokens of the real AS in every format."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

import forwarded_certs
import oidc_as
from conftest import MAPPING, call, introspection_options
from fake_as import FakeAS, active_claims
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app

DATA = Path(__file__).resolve().parents[1] / "data"
PEM = (DATA / "x5t-vector.pem").read_text()
DER = ssl.PEM_cert_to_DER_cert(PEM)
X5T = forwarded_certs.x5t_s256(PEM)
FORMS = forwarded_certs.forms(PEM)


def bound_as() -> FakeAS:
    body = json.dumps(active_claims(cnf={"x5t#S256": X5T})).encode()
    return FakeAS(lambda form, headers: (200, body))


def filter_for(url: str, fmt: str, header: str = "X-SSL-Client-Cert") -> ExternalAuth2Protocol:
    return ExternalAuth2Protocol(
        echo_app,
        {
            "introspect_endpoint": url,
            "audience": "https://as.example",
            "client_id": "rs",
            "client_secret": "s",
            "thumbprint_verify": "true",
            "client_cert_header": header,
            "client_cert_header_format": fmt,
            "trusted_proxies": "127.0.0.0/8, ::1",
            **MAPPING,
        },
    )


def test_every_format_from_a_trusted_proxy_binds_and_the_header_is_removed() -> None:
    with bound_as() as fake:
        for fmt, value in FORMS.items():
            app = filter_for(fake.url, fmt)
            status, _, body = call(
                app, {"Authorization": "Bearer t", "X-SSL-Client-Cert": value}, REMOTE_ADDR="127.0.0.1"
            )
            assert status == "200 OK", fmt
            assert "HTTP_X_SSL_CLIENT_CERT" not in body["environ"], "the app never sees the header"


def test_an_untrusted_peer_is_ignored_warned_once_and_the_socket_cert_does_not_count(caplog: Any) -> None:
    with bound_as() as fake:
        app = filter_for(fake.url, "pem")
        for _ in range(3):
            status, _, _ = call(
                app,
                {"Authorization": "Bearer t", "X-SSL-Client-Cert": PEM.replace("\n", " ")},
                REMOTE_ADDR="192.0.2.9",
                SSL_CLIENT_CERT=PEM,
            )
            assert status == "401 Unauthorized"
        warned = [r for r in caplog.records if "192.0.2.9" in r.getMessage()]
        assert len(warned) == 1 and warned[0].levelname == "WARNING"
        assert fake.requests == [], "refused before any AS request"
        # The header is removed even when the filter refuses nothing of it (no token at all).
        status, _, _ = call(app, {"X-SSL-Client-Cert": "x"}, REMOTE_ADDR="192.0.2.9")
        assert status == "401 Unauthorized"


# ---------------------------------------------- real client certificates, real AS (test PKI)
def _real_forms(pki: Path, name: str) -> dict[str, tuple[str, str]]:
    """(header, value) per format for the PKI's certificate ``name``, as each proxy writes it."""
    pem = (pki / f"{name}.pem").read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    b64 = base64.b64encode(der).decode()
    hexhash = hashlib.sha256(der).hexdigest()
    subject = f'Subject="CN={name},O=tokenward-test"'
    envoy = f'By=spiffe://mesh/ns/api;Hash={hexhash};Cert="{urllib.parse.quote(pem, safe="")}";{subject};URI='
    return {
        "xfcc": ("X-Forwarded-Client-Cert", envoy),
        "xfcc-hash": ("X-Forwarded-Client-Cert", f"By=spiffe://mesh/ns/api;Hash={hexhash};{subject}"),
        "rfc9440": ("Client-Cert", f":{b64}:"),
        "url_encoded_pem": ("X-SSL-Client-Cert", urllib.parse.quote(pem, safe="")),
        "der_base64": ("X-SSL-Client-Cert", b64),
        "pem": ("X-SSL-Client-Cert", pem.replace("\n", " ")),
    }


def _real_filter(server: oidc_as.AuthServer, fmt: str, header: str) -> ExternalAuth2Protocol:
    return ExternalAuth2Protocol(
        echo_app,
        {
            **introspection_options(server, "svc-post"),
            "thumbprint_verify": "true",
            "client_cert_header": header,
            "client_cert_header_format": fmt.split("-")[0],
            "trusted_proxies": "10.0.0.0/8",
        },
    )


def test_headers_built_from_the_test_pki_bind_a_token_of_the_real_as(auth_server: oidc_as.AuthServer) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-tls")  # bound to client-a
    good, other = _real_forms(auth_server.pki, "client-a"), _real_forms(auth_server.pki, "client-b")
    for fmt, (header, value) in good.items():
        app = _real_filter(auth_server, fmt, header)
        bearer = {"Authorization": f"Bearer {token}"}
        status, _, body = call(app, {**bearer, header: value}, REMOTE_ADDR="10.1.2.3")
        assert status == "200 OK", (fmt, body)
        assert body["environ"]["HTTP_X_USER_ID"] == "svc-tls"
        assert "HTTP_" + header.upper().replace("-", "_") not in body["environ"]
        # Another client's certificate, or the right one from an untrusted peer: refused.
        assert call(app, {**bearer, header: other[fmt][1]}, REMOTE_ADDR="10.1.2.3")[0] == "401 Unauthorized", fmt
        assert call(app, {**bearer, header: value}, REMOTE_ADDR="192.0.2.1")[0] == "401 Unauthorized", fmt


def test_xfcc_the_element_of_the_nearest_proxy_counts(auth_server: oidc_as.AuthServer) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-tls")
    a = _real_forms(auth_server.pki, "client-a")["xfcc"][1]
    b = _real_forms(auth_server.pki, "client-b")["xfcc"][1]
    app = _real_filter(auth_server, "xfcc", "X-Forwarded-Client-Cert")
    bearer = {"Authorization": f"Bearer {token}"}
    # Appended by the edge proxy last: "b,a" carries a (the Subject's comma is quoted).
    assert call(app, {**bearer, "X-Forwarded-Client-Cert": f"{b},{a}"}, REMOTE_ADDR="10.0.0.1")[0] == "200 OK"
    assert call(app, {**bearer, "X-Forwarded-Client-Cert": f"{a},{b}"}, REMOTE_ADDR="10.0.0.1")[0] == "401 Unauthorized"
