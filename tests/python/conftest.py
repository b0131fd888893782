"""Fixtures: the real authorization server (oidc-provider, tests/as), the test PKI, and
builders for the tokenward filter."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import oidc_as  # noqa: E402
from fake_as import MAPPING  # noqa: E402
from wsgi_apps import echo_app, echo_app_factory  # noqa: E402,F401

WORK = ROOT / "tests" / ".work"


@pytest.fixture(scope="session")
def pki() -> Path:
    return oidc_as.ensure_pki(WORK / "pki")


@pytest.fixture(scope="session")
def auth_server(pki: Path) -> Iterator[oidc_as.AuthServer]:
    with oidc_as.start_as(pki, http_port=0) as server:
        yield server


# A request as a TLS-terminating server hands it to the application (DPoP tests), and the URL
# a proof for it names (the filter computes it from these keys).
DPOP_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "POST",
    "SCRIPT_NAME": "/v1",
    "PATH_INFO": "/vnflcm/v2/vnf_instances",
    "HTTP_HOST": "api.example:9890",
    "wsgi.url_scheme": "https",
}
DPOP_URL = "https://api.example:9890/v1/vnflcm/v2/vnf_instances"


def introspection_options(server: oidc_as.AuthServer, client_id: str) -> dict[str, str]:
    """Options that make tokenward introspect at the real AS as ``client_id``."""
    c = oidc_as.CLIENTS[client_id]
    pki = server.pki
    opts = {
        "introspect_endpoint": server.introspection_endpoint,
        "audience": server.issuer,
        "client_id": client_id,
        "auth_method": c["auth"],
        "cafile": str(pki / "ca.pem"),
        "http_connect_timeout": "10",
        **MAPPING,
    }
    if "secret" in c:
        opts["client_secret"] = c["secret"]
    if c["auth"] in ("client_secret_jwt", "private_key_jwt"):
        opts["jwt_algorithm"] = c["alg"]
        opts["jwt_bearer_time_out"] = "60"
    if "key" in c:
        opts["jwt_key_file"] = str(pki / c["key"])
    if c["auth"] == "tls_client_auth":
        opts["certfile"] = str(pki / c["cert"][0])
        opts["keyfile"] = str(pki / c["cert"][1])
    return opts


def call(
    app: Callable[..., Any], headers: dict[str, str] | None = None, **environ: Any
) -> tuple[str, dict[str, str], Any]:
    """Calls a WSGI app; returns (status, headers, parsed JSON body or raw bytes)."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    for k, v in (headers or {}).items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    env.update(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = status
        captured["headers"] = hdrs

    body = b"".join(app(env, start_response))
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body
    return captured["status"], dict(captured["headers"]), parsed
