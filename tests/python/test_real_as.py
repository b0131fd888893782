"""The filter against the real authorization server (oidc-provider over HTTPS with a test CA),
built through PasteDeploy as an operator would."""

from __future__ import annotations

import logging
import sys
import textwrap
import time
import types
from pathlib import Path
from typing import Any

import oidc_as
import pytest
from conftest import MAPPING, call, introspection_options
from paste.deploy import loadapp

INTROSPECTING_CLIENTS = [
    "svc-basic",
    "svc-post",
    "svc-secret-jwt",
    "svc-private-jwt",
    "svc-tls",
]
TOKEN_CLIENTS = [
    "svc-basic",
    "svc-post",
    "svc-secret-jwt",
    "svc-private-jwt",
    "svc-tls",
]
KEY_FORMATS = [
    "svc-private-jwt-ps256",
    "svc-private-jwt-es256",
    "svc-private-jwt-es384",
    "svc-private-jwt-es512",
    "svc-private-jwt-eddsa",
]


def paste_app(tmp_path: Path, options: dict[str, str]) -> Any:
    """Writes an api-paste.ini the way Tacker's looks and loads it with PasteDeploy."""
    lines = "\n".join(f"{k} = {v.replace('%', '%%')}" for k, v in options.items())
    ini = tmp_path / "api-paste.ini"
    ini.write_text(
        textwrap.dedent(
            """\
            [DEFAULT]
            debug = false

            [pipeline:main]
            pipeline = external_oauth2_token echo

            [filter:external_oauth2_token]
            paste.filter_factory = tokenward.external_oauth2_token:filter_factory
            """
        )
        + lines
        + "\n\n[app:echo]\npaste.app_factory = wsgi_apps:echo_app_factory\n"
    )
    return loadapp(f"config:{ini}")


@pytest.fixture(scope="module")
def tokens(auth_server: oidc_as.AuthServer) -> dict[str, str]:
    return {c: oidc_as.obtain_token(auth_server, c) for c in [*TOKEN_CLIENTS, "svc-admin", "svc-array"]}


@pytest.mark.parametrize("introspector", INTROSPECTING_CLIENTS + KEY_FORMATS)
def test_each_method_accepts_tokens_of_each_method(
    tmp_path: Path, auth_server: oidc_as.AuthServer, tokens: dict[str, str], introspector: str
) -> None:
    app = paste_app(tmp_path, introspection_options(auth_server, introspector))
    for client in TOKEN_CLIENTS:
        status, _, body = call(app, {"Authorization": f"Bearer {tokens[client]}"})
        assert status == "200 OK", (introspector, client, body)
        env = body["environ"]
        assert env["HTTP_X_USER_ID"] == client
        assert env["HTTP_X_USER_NAME"] == client
        assert env["HTTP_X_PROJECT_ID"] == f"prj-{client}"
        assert env["HTTP_X_TENANT"] == f"prj-{client}"
        assert env["HTTP_X_PROJECT_DOMAIN_ID"] == "default"
        assert env["HTTP_X_ROLES"] == "member,reader"
        assert env["HTTP_X_IS_ADMIN_PROJECT"] == "false"
        assert env["HTTP_X_IDENTITY_STATUS"] == "Confirmed"
        info = body["token_info"]
        assert info["origin_token_metadata"]["active"] is True
        assert info["origin_token_metadata"]["client_id"] == client
        assert info["user_id"] == client and info["project_name"] == "demo"
    status, headers, body = call(app, {"Authorization": "Bearer not-a-real-token"})
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"] == f'Authorization OAuth 2.0 uri="{auth_server.issuer}"'
    assert body["error"]["code"] == 401


def test_admin_roles_and_json_array_roles(
    tmp_path: Path, auth_server: oidc_as.AuthServer, tokens: dict[str, str]
) -> None:
    app = paste_app(tmp_path, introspection_options(auth_server, "svc-post"))
    _, _, body = call(app, {"Authorization": f"Bearer {tokens['svc-admin']}"})
    assert body["environ"]["HTTP_X_IS_ADMIN_PROJECT"] == "true"
    assert body["environ"]["HTTP_X_ROLES"] == "admin,member"
    _, _, body = call(app, {"Authorization": f"Bearer {tokens['svc-array']}"})
    assert body["environ"]["HTTP_X_ROLES"] == "member,reader"


def test_options_from_an_oslo_config_file_as_tacker_has_them(
    tmp_path: Path, auth_server: oidc_as.AuthServer, tokens: dict[str, str]
) -> None:
    options = introspection_options(auth_server, "svc-basic")
    conf = tmp_path / "tacker.conf"
    body = "\n".join(f"{k} = {v}" for k, v in options.items())
    conf.write_text(f"[DEFAULT]\ndebug = False\n\n[ext_oauth2_auth]\nuse_ext_oauth2_auth = True\n{body}\n")
    app = paste_app(tmp_path, {"oslo_config_project": "tacker", "oslo_config_file": str(conf)})
    status, _, body = call(app, {"Authorization": f"Bearer {tokens['svc-post']}"})
    assert status == "200 OK", body
    assert body["environ"]["HTTP_X_USER_ID"] == "svc-post"


def test_options_the_service_registered_first_do_not_clash(
    auth_server: oidc_as.AuthServer, tokens: dict[str, str]
) -> None:
    from oslo_config import cfg
    from tokenward.external_oauth2_token import ExternalAuth2Protocol

    conf = cfg.ConfigOpts()
    # What Tacker registers in the same group, with its own help texts.
    conf.register_opts(
        [
            cfg.BoolOpt("use_ext_oauth2_auth", default=False, help="Tacker's"),
            cfg.StrOpt("token_endpoint", help="Tacker's"),
            cfg.StrOpt("scope", help="Tacker's"),
            cfg.StrOpt("client_id", help="Tacker's own help"),
        ],
        group="ext_oauth2_auth",
    )
    conf([])
    from tokenward._config import register

    register(conf)  # what the filter does; must not raise DuplicateOptError
    assert conf._get_opt_info("client_id", "ext_oauth2_auth")["opt"].help == "Tacker's own help"
    for k, v in introspection_options(auth_server, "svc-post").items():
        conf.set_override(k, v, group="ext_oauth2_auth")
    from wsgi_apps import echo_app

    app = ExternalAuth2Protocol(echo_app, {"oslo_config_config": conf})
    status, _, _ = call(app, {"Authorization": f"Bearer {tokens['svc-basic']}"})
    assert status == "200 OK"


def test_paste_values_win_over_oslo_values(
    tmp_path: Path, auth_server: oidc_as.AuthServer, tokens: dict[str, str]
) -> None:
    options = introspection_options(auth_server, "svc-post")
    conf = tmp_path / "svc.conf"
    wrong = {**options, "client_secret": "wrong-secret"}
    conf.write_text("[ext_oauth2_auth]\n" + "\n".join(f"{k} = {v}" for k, v in wrong.items()) + "\n")
    app = paste_app(
        tmp_path,
        {"oslo_config_project": "svc", "oslo_config_file": str(conf), "client_secret": options["client_secret"]},
    )
    status, _, _ = call(app, {"Authorization": f"Bearer {tokens['svc-post']}"})
    assert status == "200 OK"


def test_certificate_bound_token(tmp_path: Path, auth_server: oidc_as.AuthServer) -> None:
    pki = auth_server.pki
    token = oidc_as.obtain_token(auth_server, "svc-bound", cert=("client-a.pem", "client-a.key"))
    app = paste_app(tmp_path, {**introspection_options(auth_server, "svc-post"), "thumbprint_verify": "true"})
    auth = {"Authorization": f"Bearer {token}"}
    right = (pki / "client-a.pem").read_text()
    wrong = (pki / "client-b.pem").read_text()
    status, _, body = call(app, auth, SSL_CLIENT_CERT=right)
    assert status == "200 OK", body
    assert body["token_info"]["origin_token_metadata"]["cnf"]["x5t#S256"] == oidc_as.thumbprints(pki)["client-a"]
    assert call(app, auth, SSL_CLIENT_CERT=wrong)[0] == "401 Unauthorized"
    assert call(app, auth)[0] == "401 Unauthorized"
    # From the TLS socket (eventlet.wsgi): DER via wsgi.input.get_socket().getpeercert(True).
    import ssl

    der = ssl.PEM_cert_to_DER_cert(right)

    class Sock:
        def getpeercert(self, binary_form: bool = False) -> bytes:
            assert binary_form
            return der

    class Input:
        def get_socket(self) -> Sock:
            return Sock()

    assert call(app, auth, **{"wsgi.input": Input()})[0] == "200 OK"
    # An unbound token is refused when binding is required.
    plain = oidc_as.obtain_token(auth_server, "svc-post")
    assert call(app, {"Authorization": f"Bearer {plain}"}, SSL_CLIENT_CERT=right)[0] == "401 Unauthorized"


def test_revoked_token_refused_once_its_cache_entry_is_gone(tmp_path: Path, auth_server: oidc_as.AuthServer) -> None:
    token = oidc_as.obtain_token(auth_server, "svc-post")
    app = paste_app(tmp_path, {**introspection_options(auth_server, "svc-post"), "token_cache_time": "1"})
    auth = {"Authorization": f"Bearer {token}"}
    assert call(app, auth)[0] == "200 OK"
    oidc_as.revoke(auth_server, token)
    assert oidc_as.introspect(auth_server, token)["active"] is False
    assert call(app, auth)[0] == "200 OK", "still cached, as documented"
    time.sleep(1.3)
    status, headers, _ = call(app, auth)
    assert status == "401 Unauthorized"
    assert "WWW-Authenticate" in headers


def test_cache_hits_do_not_reach_the_as(
    tmp_path: Path, auth_server: oidc_as.AuthServer, tokens: dict[str, str]
) -> None:
    app = paste_app(tmp_path, introspection_options(auth_server, "svc-post"))
    auth = {"Authorization": f"Bearer {tokens['svc-basic']}"}
    assert call(app, auth)[0] == "200 OK"
    before = auth_server.stats()["introspection"].get("svc-post", 0)
    for _ in range(50):
        assert call(app, auth)[0] == "200 OK"
    assert auth_server.stats()["introspection"].get("svc-post", 0) == before


def test_mapping_names_from_keystonemiddleware_docs_still_map(
    tmp_path: Path, auth_server: oidc_as.AuthServer, tokens: dict[str, str]
) -> None:
    opts = introspection_options(auth_server, "svc-post")
    opts["mapping_user_id"] = "client_id"
    opts["mapping_user_name"] = "username"
    assert set(MAPPING) <= set(opts)
    app = paste_app(tmp_path, opts)
    assert call(app, {"Authorization": f"Bearer {tokens['svc-tls']}"})[2]["environ"]["HTTP_X_USER_ID"] == "svc-tls"


def test_keystonemiddleware_can_be_imported_after_tokenward_in_one_process(
    auth_server: oidc_as.AuthServer, tmp_path: Path
) -> None:
    """A half-migrated service may load both filters; the global CONF must accept both."""
    import json
    import subprocess
    import sys

    pytest.importorskip("keystonemiddleware")
    script = tmp_path / "both.py"
    script.write_text(
        "import json, sys\n"
        "from tokenward.external_oauth2_token import filter_factory\n"
        "filter_factory({}, **json.loads(sys.argv[1]))(lambda e, s: [])\n"
        "import keystonemiddleware.external_oauth2_token as k\n"
        "from oslo_config import cfg\n"
        "print(cfg.CONF.ext_oauth2_auth.auth_method)\n"
    )
    opts = introspection_options(auth_server, "svc-post")
    out = subprocess.run([sys.executable, str(script), json.dumps(opts)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "client_secret_basic"


def test_paste_entry_point_name(tmp_path: Path, auth_server: oidc_as.AuthServer, tokens: dict[str, str]) -> None:
    """`use = egg:tokenward#external_oauth2_token`, the entry point named as the reference's."""
    options = introspection_options(auth_server, "svc-post")
    lines = "\n".join(f"{k} = {v.replace('%', '%%')}" for k, v in options.items())
    ini = tmp_path / "egg.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = authtoken echo\n\n[filter:authtoken]\nuse = egg:tokenward#external_oauth2_token\n"
        + lines
        + "\n\n[app:echo]\npaste.app_factory = wsgi_apps:echo_app_factory\n"
    )
    app = loadapp(f"config:{ini}")
    assert call(app, {"Authorization": f"Bearer {tokens['svc-tls']}"})[0] == "200 OK"


def test_a_miss_is_settled_natively_unless_eventlet_is_loaded(
    tmp_path: Path,
    auth_server: oidc_as.AuthServer,
    tokens: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without eventlet in the process the native WSGI call settles a miss itself; with it
    loaded (here loaded and not patched) the miss goes through ``_miss``, which would pick
    eventlet's thread pool. Both give the same answers and hand the same log lines to
    ``logging``."""
    from tokenward.external_oauth2_token import ExternalAuth2Protocol

    through_miss: list[str] = []
    original = ExternalAuth2Protocol._miss

    def spy(self: Any, environ: dict[str, Any], start_response: Any, pending: Any) -> Any:
        through_miss.append(environ["HTTP_AUTHORIZATION"])
        return original(self, environ, start_response, pending)

    monkeypatch.setattr(ExternalAuth2Protocol, "_miss", spy)
    monkeypatch.delitem(sys.modules, "eventlet", raising=False)
    caplog.set_level(logging.INFO)
    app = paste_app(tmp_path, introspection_options(auth_server, "svc-post"))

    def outcomes(good: str, bad: str) -> tuple[str, str, str]:
        status, _, body = call(app, {"Authorization": f"Bearer {tokens[good]}"})
        assert status == "200 OK" and body["environ"]["HTTP_X_USER_ID"] == good
        caplog.clear()
        refused, _, _ = call(app, {"Authorization": f"Bearer {bad}"})
        return status, refused, caplog.text

    native = outcomes("svc-admin", "not-a-token-1")
    assert through_miss == [], "settled natively"
    monkeypatch.setitem(sys.modules, "eventlet", types.ModuleType("eventlet"))
    python = outcomes("svc-array", "not-a-token-2")
    assert through_miss == [f"Bearer {tokens['svc-array']}", "Bearer not-a-token-2"]
    assert native[:2] == python[:2] == ("200 OK", "401 Unauthorized")
    assert "inactive" in native[2] and "inactive" in python[2], (native[2], python[2])
