"""Proof of possession behind a real TLS-terminating proxy: nginx checks the client certificate
against the test CA and forwards it (``$ssl_client_escaped_cert``) to gunicorn, whose filter
believes it only from nginx's address (``proxy_bind 127.0.0.2``); DPoP behind the same nginx,
which rewrites scheme and Host, with ``dpop_public_url``."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import jwt_tools
import oidc_as
import pytest
import requests
from cache_servers import free_port
from conftest import introspection_options
from test_servers import ENV, wait_port
from tls_proxy import Nginx

PROXY_SOURCE = "127.0.0.2"  # nginx connects to gunicorn from here; the tests from 127.0.0.1


class Stack:
    def __init__(self, nginx: Nginx, nginx_port: int, app_port: int, app_log: Path, pki: Path) -> None:
        self.nginx, self.nginx_port, self.app_port, self.app_log, self.pki = nginx, nginx_port, app_port, app_log, pki
        self.public = f"https://localhost:{nginx_port}"

    def via_nginx(
        self, path: str, headers: dict[str, str], cert: str | None = None, method: str = "GET"
    ) -> tuple[int, dict[str, str], Any]:
        pair = (str(self.pki / f"{cert}.pem"), str(self.pki / f"{cert}.key")) if cert else None
        r = requests.request(
            method, self.public + path, headers=headers, cert=pair, verify=str(self.pki / "ca.pem"), timeout=30
        )
        return r.status_code, dict(r.headers), _json(r.content)

    def direct(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """Straight to gunicorn, from 127.0.0.1 (not a trusted proxy)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.app_port, timeout=30)
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        out = resp.status, dict(resp.getheaders()), _json(resp.read())
        conn.close()
        return out


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _filter_section(name: str, options: dict[str, str]) -> str:
    lines = "\n".join(f"{k} = {v.replace('%', '%%')}" for k, v in options.items())
    return f"[filter:{name}]\npaste.filter_factory = tokenward.external_oauth2_token:filter_factory\n{lines}\n\n"


@pytest.fixture(scope="module")
def stack(auth_server: oidc_as.AuthServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("nginx")
    pki = auth_server.pki
    nginx_port, app_port = free_port(), free_port()
    base = introspection_options(auth_server, "svc-post")
    mtls = {
        **base,
        "log_name": "tokenward.mtls",
        "thumbprint_verify": "true",
        "client_cert_header": "X-SSL-Client-Cert",
        "client_cert_header_format": "url_encoded_pem",
        "trusted_proxies": PROXY_SOURCE,
    }
    dpop = {
        **base,
        "log_name": "tokenward.dpop",
        "dpop": "required",
        "dpop_public_url": f"https://localhost:{nginx_port}",
    }
    ini = tmp / "api-paste.ini"
    ini.write_text(
        textwrap.dedent(
            """\
            [composite:main]
            paste.composite_factory = wsgi_apps:prefix_map_factory
            /mtls = mtls
            /dpop = dpop

            [pipeline:mtls]
            pipeline = mtls_auth echo

            [pipeline:dpop]
            pipeline = dpop_auth echo

            [app:echo]
            paste.app_factory = wsgi_apps:echo_app_factory

            """
        )
        + _filter_section("mtls_auth", mtls)
        + _filter_section("dpop_auth", dpop)
    )
    app_log = tmp / "gunicorn.log"
    with app_log.open("w") as log:
        app = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "--no-control-socket", "--workers", "1", "--threads", "4"),
                *("--bind", f"127.0.0.1:{app_port}", "--paste", str(ini)),
            ],
            env=ENV,
            stdout=log,
            stderr=log,
            text=True,
        )
    server = f"""\
    server {{
        listen 127.0.0.1:{nginx_port} ssl;
        server_name localhost;
        ssl_certificate {pki}/server.pem;
        ssl_certificate_key {pki}/server.key;
        ssl_client_certificate {pki}/ca.pem;
        ssl_verify_client optional;
        location / {{
            proxy_pass http://127.0.0.1:{app_port};
            proxy_bind {PROXY_SOURCE};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        }}
    }}
"""
    try:
        wait_port(app, app_port)
        with Nginx(tmp / "nginx", server, [nginx_port]) as nginx:
            yield Stack(nginx, nginx_port, app_port, app_log, pki)
            assert "[emerg]" not in nginx.error_log() and "[crit]" not in nginx.error_log()
    finally:
        app.send_signal(signal.SIGTERM)
        app.wait(timeout=30)


def escaped_pem(pki: Path, name: str) -> str:
    """What nginx's $ssl_client_escaped_cert holds for this certificate."""
    return urllib.parse.quote((pki / f"{name}.pem").read_text(), safe="")


def test_a_certificate_bound_token_is_accepted_through_nginx(stack: Stack, auth_server: oidc_as.AuthServer) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-tls")  # bound to client-a
    assert oidc_as.introspect(auth_server, token)["cnf"] == {"x5t#S256": oidc_as.thumbprints(auth_server)["client-a"]}
    for _ in range(2):  # an AS answer, then the cache
        status, _, body = stack.via_nginx("/mtls/v1/vnf", {"Authorization": f"Bearer {token}"}, cert="client-a")
        assert status == 200, body
        assert body["environ"]["HTTP_X_USER_ID"] == "svc-tls"
        assert body["remote_addr"] == PROXY_SOURCE
        assert "HTTP_X_SSL_CLIENT_CERT" not in body["environ"], "the forwarded certificate never reaches the app"


def test_through_nginx_only_the_verified_connection_certificate_counts(
    stack: Stack, auth_server: oidc_as.AuthServer
) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-tls")
    bearer = {"Authorization": f"Bearer {token}"}
    forged = {**bearer, "X-SSL-Client-Cert": escaped_pem(stack.pki, "client-a")}
    # Another client's certificate; none at all; and a forged header, which nginx replaces or
    # drops: all refused.
    for headers, cert in [(bearer, "client-b"), (bearer, None), (forged, None), (forged, "client-b")]:
        status, hdrs, body = stack.via_nginx("/mtls/v1/vnf", headers, cert=cert)
        assert status == 401, (cert, body)
        assert body["error"]["code"] == 401 and "environ" not in body
        assert hdrs["WWW-Authenticate"] == f'Authorization OAuth 2.0 uri="{auth_server.issuer}"'
    # thumbprint_verify = true: an unbound token is refused even with a good certificate.
    unbound = oidc_as.obtain_token(auth_server, "svc-post")
    status, _, _ = stack.via_nginx("/mtls/v1/vnf", {"Authorization": f"Bearer {unbound}"}, cert="client-a")
    assert status == 401


def test_the_header_sent_straight_to_gunicorn_from_an_untrusted_address_is_refused(
    stack: Stack, auth_server: oidc_as.AuthServer
) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-tls")
    headers = {"Authorization": f"Bearer {token}", "X-SSL-Client-Cert": escaped_pem(stack.pki, "client-a")}
    for _ in range(2):
        status, _, body = stack.direct("/mtls/v1/vnf", headers)
        assert status == 401, body
        assert "environ" not in body, "the application was never called"
    # The same token and certificate through nginx (from 127.0.0.2) are fine.
    assert stack.via_nginx("/mtls/v1/vnf", {"Authorization": f"Bearer {token}"}, cert="client-a")[0] == 200
    log = stack.app_log.read_text()
    warned = [line for line in log.splitlines() if "127.0.0.1" in line and "X-SSL-Client-Cert" in line]
    assert len(warned) == 1, log[-3000:]  # once per peer
    assert PROXY_SOURCE not in "\n".join(warned)


def test_dpop_behind_nginx_rewriting_scheme_and_host(stack: Stack, auth_server: oidc_as.AuthServer) -> None:
    key = oidc_as.new_private_key("ES256")
    token = oidc_as.obtain_token(auth_server, "svc-post", dpop_key=key)
    path = "/dpop/vnflcm/v2/vnf_instances"
    public = stack.public + path
    for method in ("GET", "POST", "DELETE"):
        proof = jwt_tools.dpop_proof(key, method, public, token=token)
        status, _, body = stack.via_nginx(
            path + "?limit=5", {"Authorization": f"DPoP {token}", "DPoP": proof}, method=method
        )
        assert status == 200, (method, body)
        # What the application got: nginx's Host, not the public one.
        assert body["environ"]["HTTP_HOST"] == f"127.0.0.1:{stack.app_port}"
    # A proof for the internal URL (what the WSGI environ alone would give) is refused.
    internal = f"http://127.0.0.1:{stack.app_port}{path}"
    for htu in (internal, stack.public + "/mtls/vnflcm/v2/vnf_instances"):
        proof = jwt_tools.dpop_proof(key, "GET", htu, token=token)
        status, hdrs, body = stack.via_nginx(path, {"Authorization": f"DPoP {token}", "DPoP": proof})
        assert status == 401 and hdrs["WWW-Authenticate"].startswith('DPoP error="invalid_dpop_proof"'), (htu, body)
    # Straight to gunicorn the internal URL is not it either: the public URL is configured.
    proof = jwt_tools.dpop_proof(key, "GET", internal, token=token)
    status, _, _ = stack.direct(path, {"Authorization": f"DPoP {token}", "DPoP": proof})
    assert status == 401
