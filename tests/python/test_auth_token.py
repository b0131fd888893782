"""The auth_token door without a Keystone: where options come from (paste, oslo.config,
auth_section), what is refused at start-up, and what a request decided without asking
Keystone looks like (spoofed headers stripped, 401 challenge, delay_auth_decision). The
validations themselves run against a real Keystone in test_keystone.py."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from tokenward import auth_token
from tokenward.exceptions import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
CERT = str(ROOT / "tests" / "data" / "client-v3.pem")
KEY = str(ROOT / "tests" / "data" / "client.key")
PASSWORD = "svc-pa55word-never-logged"

TOKENLESS = {
    "auth_url": "https://keystone.invalid:5000/v3",
    "auth_type": "v3tokenlessauth",
    "certfile": CERT,
    "keyfile": KEY,
    "project_name": "service",
    "project_domain_name": "Default",
    "www_authenticate_uri": "https://keystone.invalid:5000/",
}

SPOOFED = {
    "HTTP_X_IDENTITY_STATUS": "Confirmed",
    "HTTP_X_ROLES": "admin",
    "HTTP_X_ROLE": "admin",
    "HTTP_X_USER_ID": "root",
    "HTTP_X_PROJECT_ID": "p-admin",
    "HTTP_X_TENANT_ID": "p-admin",
    "HTTP_X_TENANT": "admin",
    "HTTP_X_IS_ADMIN_PROJECT": "True",
    "HTTP_OPENSTACK_SYSTEM_SCOPE": "all",
    "HTTP_X_SERVICE_CATALOG": "[]",
    "HTTP_X_SERVICE_ROLES": "service",
    "HTTP_X_SERVICE_IDENTITY_STATUS": "Confirmed",
    "HTTP_X_SERVICE_USER_ID": "nova",
    "HTTP_X_DOMAIN_ID": "default",
}


class App:
    def __init__(self) -> None:
        self.environ: dict | None = None

    def __call__(self, environ, start_response):
        self.environ = dict(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def call(filt, environ_extra: dict) -> tuple[str, dict, bytes]:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/v2.1/servers", "SCRIPT_NAME": "", **environ_extra}
    got: dict = {}

    def start_response(status, headers, exc_info=None):
        got["status"], got["headers"] = status, dict(headers)

    body = b"".join(filt(environ, start_response))
    return got["status"], got["headers"], body


def make(conf: dict, app=None):
    return auth_token.filter_factory({}, **conf)(app or App())


def test_no_token_is_401_with_the_keystone_challenge_and_no_keystone_call() -> None:
    app = App()
    filt = make(TOKENLESS, app)
    status, headers, body = call(filt, dict(SPOOFED))
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"] == 'Keystone uri="https://keystone.invalid:5000/"'
    assert json.loads(body)["error"]["code"] == 401
    assert app.environ is None
    assert filt.authenticator.metrics()["introspections"] == 0


def test_delay_auth_decision_strips_every_spoofed_header_system_scope_included() -> None:
    app = App()
    filt = make({**TOKENLESS, "delay_auth_decision": "true"}, app)
    status, _, _ = call(filt, dict(SPOOFED))
    assert status == "200 OK"
    seen = app.environ
    assert seen is not None
    assert seen["HTTP_X_IDENTITY_STATUS"] == "Invalid"
    for key in SPOOFED:
        if key != "HTTP_X_IDENTITY_STATUS":
            assert key not in seen, key
    assert "keystone.token_info" not in seen
    assert not seen["keystone.token_auth"].has_user_token


def test_an_application_401_gets_the_challenge_once() -> None:
    def refusing(environ, start_response):
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"no"]

    filt = make({**TOKENLESS, "delay_auth_decision": "true"}, refusing)
    status, headers, _ = call(filt, {})
    assert status.startswith("401")
    assert headers["WWW-Authenticate"].startswith("Keystone uri=")


def test_plugin_options_are_known_unknown_ones_warned_and_oauth_ones_flagged(caplog) -> None:
    caplog.set_level(logging.WARNING)
    make({**TOKENLESS, "bogus_option": "1", "mapping_roles": "roles", "service_type": "compute"})
    text = caplog.text
    assert '"bogus_option" is not known' in text
    assert '"mapping_roles" is not used with validation = keystone' in text
    for known in ("project_name", "project_domain_name", "auth_url", "service_type", "certfile"):
        assert f'"{known}"' not in text, known


@pytest.mark.parametrize(
    ("extra", "option"),
    [
        ({"enforce_token_bind": "required"}, "enforce_token_bind"),
        ({"enforce_token_bind": "kerberos"}, "enforce_token_bind"),
        ({"memcache_tls_enabled": "true"}, "memcache_tls_enabled"),
        ({"auth_type": "token"}, "auth_type"),
        ({"project_name": ""}, "project_id"),
        ({"certfile": ""}, "certfile"),
        ({"validation": "introspection"}, "validation"),
        ({"auth_type": "password", "username": "svc", "password": PASSWORD}, "user_domain_name"),
    ],
)
def test_what_cannot_work_or_be_honoured_is_a_start_up_error_naming_the_option(extra, option) -> None:
    with pytest.raises(ConfigurationError) as e:
        make({**TOKENLESS, **extra})
    assert e.value.option == option, str(e.value)
    assert PASSWORD not in str(e.value)


def write_conf(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_oslo_config_keystone_authtoken_and_auth_section(tmp_path) -> None:
    pytest.importorskip("oslo_config")
    # The plugin options in another group, named by auth_section, as keystonemiddleware reads them.
    conf = write_conf(
        tmp_path / "svc.conf",
        f"""
[keystone_authtoken]
www_authenticate_uri = https://public.invalid:5000/
auth_section = service_auth
delay_auth_decision = true
cafile =
memcache_security_strategy = None

[service_auth]
auth_type = password
auth_url = https://keystone.invalid:5000
username = svc
password = {PASSWORD}
user_domain_name = Default
project_name = service
project_domain_name = Default
""",
    )
    app = App()
    filt = make({"oslo_config_project": "svc", "oslo_config_file": conf}, app)
    assert filt.authenticator.challenge == 'Keystone uri="https://public.invalid:5000/"'
    status, _, _ = call(filt, {})
    assert status == "200 OK", "delay_auth_decision read from [keystone_authtoken]"
    # Without the password in the auth section, the core says which option is missing.
    bad = write_conf(tmp_path / "bad.conf", Path(conf).read_text().replace(f"password = {PASSWORD}\n", ""))
    with pytest.raises(ConfigurationError) as e:
        make({"oslo_config_project": "svc", "oslo_config_file": bad})
    assert e.value.option == "password"
    # Paste beats oslo.config.
    filt = make(
        {"oslo_config_project": "svc", "oslo_config_file": conf, "www_authenticate_uri": "https://paste.invalid/"}
    )
    assert filt.authenticator.challenge == 'Keystone uri="https://paste.invalid/"'


def test_the_paste_entry_point_loads_the_filter(tmp_path) -> None:
    loadwsgi = pytest.importorskip("paste.deploy.loadwsgi")
    ini = tmp_path / "api-paste.ini"
    settings = "\n".join(f"{k} = {v}" for k, v in TOKENLESS.items())
    ini.write_text(
        f"""
[pipeline:main]
pipeline = authtoken app

[filter:authtoken]
use = egg:tokenward#auth_token
{settings}

[app:app]
paste.app_factory = test_auth_token:app_factory
"""
    )
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    wsgi = loadwsgi.loadapp(f"config:{ini}")
    status, headers, _ = call(wsgi, {})
    assert status.startswith("401") and "Keystone uri=" in headers["WWW-Authenticate"]


def app_factory(global_conf, **local_conf):
    return App()
