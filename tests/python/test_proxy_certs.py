"""Certificates forwarded by a TLS-terminating proxy, through the Python door: the header is
believed only from trusted_proxies and never reaches the application."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

from conftest import MAPPING, call
from fake_as import FakeAS, active_claims
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app

DATA = Path(__file__).resolve().parents[1] / "data"
PEM = (DATA / "x5t-vector.pem").read_text()
DER = ssl.PEM_cert_to_DER_cert(PEM)
X5T = base64.urlsafe_b64encode(hashlib.sha256(DER).digest()).rstrip(b"=").decode()

FORMS = {
    "pem": PEM.replace("\n", " "),
    "url_encoded_pem": urllib.parse.quote(PEM, safe=""),
    "der_base64": base64.b64encode(DER).decode(),
    "rfc9440": ":" + base64.b64encode(DER).decode() + ":",
    "xfcc": "By=spiffe://mesh/api;Hash=" + hashlib.sha256(DER).hexdigest() + ';Subject="CN=x,O=y"',
}


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
