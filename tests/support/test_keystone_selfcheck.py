"""Self-check of the Keystone harness (keystone_wsgi.py, keystone_server.py).

Proves the harness is real: the mod_ssl DN strings against OpenSSL's own renderer, the wrapper's
environ over real TLS in gunicorn, the seeded Keystone's tokens and X.509 tokenless
authorization as Keystone itself answers them, and the reference middleware,
keystonemiddleware.auth_token, validating tokens against it with each service auth type.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import webob
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))

import keystone_server
import keystone_wsgi
from keystone_server import ACCESS_RULES, KeystoneServer, keystonemiddleware_filter

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------- DN strings
def _self_signed(tmp_path: Path, name: x509.Name, file: str) -> tuple[Path, Path, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cpath, kpath = tmp_path / f"{file}.pem", tmp_path / f"{file}.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cpath, kpath, cert


def _openssl_mod_ssl_form(cert: Path) -> str:
    """OpenSSL's own rendering with mod_ssl's flags (XN_FLAG_RFC2253 less ESC_MSB)."""
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-subject", "-nameopt", "RFC2253,-esc_msb"],
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8")
    assert out.startswith("subject=")
    return out[len("subject=") :].rstrip("\n")


A = x509.NameAttribute
NAMES = {
    "test-ca": x509.Name([A(NameOID.ORGANIZATION_NAME, "tokenward-test"), A(NameOID.COMMON_NAME, "tokenward test CA")]),
    "guide": x509.Name(
        [
            A(NameOID.COUNTRY_NAME, "US"),
            A(NameOID.STATE_OR_PROVINCE_NAME, "California"),
            A(NameOID.LOCALITY_NAME, "San Jose"),
            A(NameOID.ORGANIZATION_NAME, "openstack"),
            A(NameOID.ORGANIZATIONAL_UNIT_NAME, "keystone"),
            A(NameOID.COMMON_NAME, "john"),
            A(NameOID.EMAIL_ADDRESS, "john@openstack.com"),
        ]
    ),
    "escapes": x509.Name(
        [
            A(NameOID.DOMAIN_COMPONENT, "com"),
            A(NameOID.DOMAIN_COMPONENT, "example"),
            A(NameOID.ORGANIZATION_NAME, "M\u00fcller, Schmidt & Co"),
            A(NameOID.ORGANIZATIONAL_UNIT_NAME, "a+b;c"),
            A(NameOID.ORGANIZATIONAL_UNIT_NAME, '<q>"x"\\'),
            A(NameOID.COMMON_NAME, "#lead and trail "),
        ]
    ),
    "multi-valued": x509.Name(
        [
            x509.RelativeDistinguishedName([A(NameOID.ORGANIZATION_NAME, "tokenward-test")]),
            x509.RelativeDistinguishedName([A(NameOID.COMMON_NAME, "svc"), A(NameOID.USER_ID, "u-1")]),
        ]
    ),
    "control": x509.Name([A(NameOID.COMMON_NAME, "bell\x07tab\tdel\x7f")]),
    "other-oids": x509.Name(
        [
            A(NameOID.SERIAL_NUMBER, "42"),
            A(NameOID.SURNAME, "Doe"),
            A(NameOID.GIVEN_NAME, "Jane"),
            A(NameOID.TITLE, "Dr"),
            A(NameOID.STREET_ADDRESS, "Main St 1"),
            A(NameOID.POSTAL_CODE, "12345"),
            A(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), "private"),
        ]
    ),
}


@pytest.mark.parametrize("label", sorted(NAMES))
def test_mod_ssl_dn_matches_openssl(tmp_path, label):
    cert_path, _, cert = _self_signed(tmp_path, NAMES[label], label)
    assert keystone_wsgi.mod_ssl_dn(cert.subject) == _openssl_mod_ssl_form(cert_path)


def test_mod_ssl_dn_known_strings():
    # The exact strings of Keystone's tokenless guide: no spaces after commas, most specific first.
    assert (
        keystone_wsgi.mod_ssl_dn(NAMES["guide"])
        == "emailAddress=john@openstack.com,CN=john,OU=keystone,O=openstack,L=San Jose,ST=California,C=US"
    )
    assert keystone_wsgi.mod_ssl_dn(NAMES["test-ca"]) == "CN=tokenward test CA,O=tokenward-test"
    dn = "CN=tokenward test CA,O=tokenward-test"
    assert keystone_wsgi.issuer_idp_id(dn) == hashlib.sha256(dn.encode()).hexdigest()


def test_mod_ssl_dn_components():
    env = keystone_wsgi.mod_ssl_dn_components(NAMES["escapes"], "SSL_CLIENT_S_DN_")
    # values unescaped (control characters aside); a repeated attribute: _1, _2 in cert order
    assert env == {
        "SSL_CLIENT_S_DN_O": "M\u00fcller, Schmidt & Co",
        "SSL_CLIENT_S_DN_OU": "a+b;c",
        "SSL_CLIENT_S_DN_OU_1": '<q>"x"\\',
        "SSL_CLIENT_S_DN_CN": "#lead and trail ",
    }
    env = keystone_wsgi.mod_ssl_dn_components(NAMES["guide"], "SSL_CLIENT_I_DN_")
    assert env["SSL_CLIENT_I_DN_Email"] == "john@openstack.com"
    assert env["SSL_CLIENT_I_DN_ST"] == "California"
    assert keystone_wsgi.mod_ssl_dn_components(NAMES["control"], "X_")["X_CN"] == "bell\\07tab\\09del\\7F"


# ------------------------------------------------- wrapper over real TLS
@pytest.fixture(scope="module")
def pki() -> Path:
    return keystone_server.ensure_pki(ROOT / "tests" / ".work" / "pki")


@pytest.fixture(scope="module")
def echo(pki, tmp_path_factory):
    with keystone_server.start_echo(pki, tmp_path_factory.mktemp("echo")) as server:
        yield server


def _echo(echo, pki, cert=None, headers=None) -> dict[str, str]:
    r = requests.get(echo.url + "/", cert=cert, headers=headers, verify=str(pki / "ca.pem"), timeout=30)
    r.raise_for_status()
    return r.json()


def test_wrapper_without_certificate(echo, pki):
    env = _echo(echo, pki)
    assert env["HTTPS"] == "on"
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert not any(k.startswith(("SSL_CLIENT_I_", "SSL_CLIENT_S_")) for k in env)


def test_wrapper_verified_certificate(echo, pki):
    env = _echo(echo, pki, cert=(str(pki / "keystone-service.pem"), str(pki / "keystone-service.key")))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_I_DN"] == "CN=tokenward test CA,O=tokenward-test"
    assert env["SSL_CLIENT_S_DN"] == "CN=tw-keystone-service,O=tokenward-test"
    assert env["SSL_CLIENT_S_DN_CN"] == "tw-keystone-service"
    assert env["SSL_CLIENT_S_DN_O"] == "tokenward-test"
    assert env["SSL_CLIENT_I_DN_CN"] == "tokenward test CA"
    cert = x509.load_pem_x509_certificate((pki / "keystone-service.pem").read_bytes())
    assert env["SSL_CLIENT_M_SERIAL"] == f"{cert.serial_number:X}"
    assert x509.load_pem_x509_certificate(env["SSL_CLIENT_CERT"].encode()) == cert
    assert env["SSL_PROTOCOL"].startswith("TLS")


def test_wrapper_other_issuer(echo, pki):
    env = _echo(echo, pki, cert=(str(pki / "untrusted-client.pem"), str(pki / "untrusted-client.key")))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_I_DN"] == "CN=untrusted test CA,OU=elsewhere,O=tokenward-test"
    assert env["SSL_CLIENT_S_DN"] == "CN=tw-keystone-service,O=tokenward-test"


def test_wrapper_client_cannot_pose_as_tls(echo, pki):
    spoof = {"SSL-Client-I-DN": "CN=tokenward test CA,O=tokenward-test", "SSL_CLIENT_VERIFY": "SUCCESS"}
    env = _echo(echo, pki, headers=spoof)
    assert env["SSL_CLIENT_VERIFY"] == "NONE"
    assert "SSL_CLIENT_I_DN" not in env


def test_wrapper_unknown_ca_fails_the_handshake(echo, pki, tmp_path):
    name = x509.Name([A(NameOID.ORGANIZATION_NAME, "tokenward-test"), A(NameOID.COMMON_NAME, "tokenward test CA")])
    cert, key, _ = _self_signed(tmp_path, name, "stranger")  # same DN as the trusted CA, other key
    with pytest.raises(requests.exceptions.RequestException):
        _echo(echo, pki, cert=(str(cert), str(key)))


# ------------------------------------------------------------- Keystone
def test_catalog_has_public_and_internal_identity(keystone: KeystoneServer):
    _, body = keystone.authenticate("alice")
    (identity,) = [s for s in body["catalog"] if s["type"] == "identity"]
    urls = {e["interface"]: e["url"] for e in identity["endpoints"]}
    assert urls == {"public": keystone.url, "internal": keystone.url, "admin": keystone.url}
    assert {e["region_id"] for e in identity["endpoints"]} == {"RegionOne"}


def test_scoped_tokens(keystone: KeystoneServer):
    ks = keystone
    tok = ks.validate(ks.token("alice"))
    assert tok["user"]["id"] == ks.users["alice"].id
    assert tok["project"]["id"] == ks.projects["demo"].id
    assert tok["project"]["domain"]["name"] == "tw-domain"
    assert {r["name"] for r in tok["roles"]} == {"member", "reader"}
    assert tok["is_admin_project"] is False

    tok = ks.validate(ks.token("alice", scope="domain"))
    assert tok["domain"] == {"id": ks.domains["tw"].id, "name": "tw-domain"}
    assert "project" not in tok

    tok = ks.validate(ks.token("alice", scope="system"))
    assert tok["system"] == {"all": True}
    assert {r["name"] for r in tok["roles"]} == {"reader"}

    tok = ks.validate(ks.token("alice", scope="unscoped"))
    assert not {"project", "domain", "system", "roles"} & tok.keys()

    tok = ks.validate(ks.token("bob"))
    assert tok["user"]["domain"]["id"] == ks.domains["tw"].id

    tok = ks.validate(ks.admin_token)
    assert tok["is_admin_project"] is True


def test_service_users(keystone: KeystoneServer):
    for who in ("nova", "svc", "x509"):
        tok = keystone.validate(keystone.token(who))
        assert tok["project"]["id"] == keystone.projects["service"].id
        assert "service" in {r["name"] for r in tok["roles"]}
    assert keystone.users["x509"].domain.name == "tokenward-test"


def test_application_credentials(keystone: KeystoneServer):
    ks = keystone
    ac = ks.app_creds["alice"]
    tok = ks.validate(ks.token(ac))
    assert tok["application_credential"]["id"] == ac.id
    assert tok["methods"] == ["application_credential"]
    assert {r["name"] for r in tok["roles"]} == {"member", "reader"}  # reader: implied by member

    rules_ac = ks.app_creds["alice-rules"]
    rules_token = ks.token(rules_ac)
    tok = ks.validate(rules_token)
    got = [{k: r[k] for k in ("service", "method", "path")} for r in tok["application_credential"]["access_rules"]]
    assert sorted(got, key=json.dumps) == sorted(ACCESS_RULES, key=json.dumps)
    # Keystone hides such a token from a validator that does not say it enforces access rules.
    assert ks.validate(rules_token, access_rules=False, allow_missing=True) is None
    assert ks.app_creds["svc"].roles == ("service",)


def test_trust_token(keystone: KeystoneServer):
    trust_id = keystone.create_trust("alice", "nova", "demo")
    tok = keystone.validate(keystone.token("nova", scope="trust", trust_id=trust_id))
    assert tok["OS-TRUST:trust"]["id"] == trust_id
    assert tok["OS-TRUST:trust"]["trustor_user"]["id"] == keystone.users["alice"].id
    assert tok["project"]["id"] == keystone.projects["demo"].id


def test_revoke(keystone: KeystoneServer):
    tok = keystone.token("alice")
    assert keystone.validate(tok) is not None
    keystone.revoke(tok)
    assert keystone.validate(tok, allow_missing=True) is None


def _tokenless(ks: KeystoneServer, token: str, cert: tuple[str, str] | None, method: str = "GET", **scope: str):
    headers = {"X-Subject-Token": token, **scope}
    return ks.request(method, "/v3/auth/tokens", headers=headers, cert=cert)


def test_tokenless_validation_by_certificate(keystone: KeystoneServer):
    ks = keystone
    cert = (ks.x509.cert, ks.x509.key)
    user_token = ks.token("alice")
    assert ks.x509.issuer_dn == ks.trusted_issuer == "CN=tokenward test CA,O=tokenward-test"
    assert ks.x509.idp_id == hashlib.sha256(ks.trusted_issuer.encode()).hexdigest()
    for scope in (
        {"X-Project-Name": "service", "X-Project-Domain-Name": "Default"},
        {"X-Project-Name": "service", "X-Project-Domain-Id": "default"},
        {"X-Project-Id": ks.projects["service"].id},
    ):
        r = _tokenless(ks, user_token, cert, **scope)
        assert r.status_code == 200, (scope, r.text)
        assert r.json()["token"]["user"]["id"] == ks.users["alice"].id
    # A scope where the mapped user has no role is not authorized.
    r = _tokenless(ks, user_token, cert, **{"X-Project-Id": ks.projects["demo"].id})
    assert r.status_code in (401, 403), r.text
    # Keystone's default policy: HEAD (check_token) is not for the service role; GET is.
    r = _tokenless(ks, user_token, cert, "HEAD", **{"X-Project-Id": ks.projects["service"].id})
    assert r.status_code == 403


def test_tokenless_refuses_untrusted_issuer_and_unmapped_subject(keystone: KeystoneServer, pki):
    ks = keystone
    user_token = ks.token("alice")
    scope = {"X-Project-Name": "service", "X-Project-Domain-Name": "Default"}
    assert _tokenless(ks, user_token, ks.untrusted_cert, **scope).status_code == 401
    assert _tokenless(ks, user_token, None, **scope).status_code == 401
    # Trusted issuer, but the subject maps to a user that does not exist (CN=client-a).
    other = (str(pki / "client-a.pem"), str(pki / "client-a.key"))
    assert _tokenless(ks, user_token, other, **scope).status_code in (401, 404)
    assert ks.untrusted_issuer in ks.log_tail(200)  # Keystone logged the issuer it refused


# ------------------------------------------- the reference middleware on it
def _echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    seen = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def _km(ks: KeystoneServer, tmp_path: Path, auth_type: str, **overrides: str) -> Any:
    opts = ks.middleware_options(auth_type, **overrides)
    return keystonemiddleware_filter(_echo_app, opts, tmp_path / f"km-{auth_type}.conf")


def _call(app: Any, **headers: str) -> webob.Response:
    return webob.Request.blank("/allowed/x", headers=headers).get_response(app)


@pytest.mark.parametrize("auth_type", ["v3tokenlessauth", "password", "v3applicationcredential"])
def test_keystonemiddleware_project_token(keystone: KeystoneServer, tmp_path, auth_type):
    ks = keystone
    app = _km(ks, tmp_path, auth_type)
    r = _call(app, **{"X-Auth-Token": ks.token("alice")})
    assert r.status_int == 200, r.text
    h = r.json
    assert h["X-Identity-Status"] == "Confirmed"
    assert h["X-User-Id"] == ks.users["alice"].id
    assert h["X-User-Name"] == "alice"
    assert h["X-User-Domain-Id"] == "default"
    assert h["X-Project-Id"] == ks.projects["demo"].id
    assert h["X-Project-Name"] == "demo"
    assert h["X-Project-Domain-Id"] == ks.domains["tw"].id
    assert h["X-Project-Domain-Name"] == "tw-domain"
    assert set(h["X-Roles"].split(",")) == {"member", "reader"}
    assert h["X-Is-Admin-Project"] == "False"
    catalog = json.loads(h["X-Service-Catalog"])
    assert any(s["type"] == "identity" for s in catalog)


def test_keystonemiddleware_other_scopes(keystone: KeystoneServer, tmp_path):
    ks = keystone
    app = _km(ks, tmp_path, "v3tokenlessauth")
    h = _call(app, **{"X-Auth-Token": ks.token("alice", scope="domain")}).json
    assert h["X-Domain-Id"] == ks.domains["tw"].id and h["X-Domain-Name"] == "tw-domain"
    assert h.get("X-Project-Id") is None  # the reference sets unset identity headers to None
    h = _call(app, **{"X-Auth-Token": ks.token("alice", scope="system")}).json
    assert h["Openstack-System-Scope"] == "all"
    assert h["X-Roles"] == "reader"
    h = _call(app, **{"X-Auth-Token": ks.token("alice", scope="unscoped")}).json
    assert h["X-Identity-Status"] == "Confirmed"
    assert h["X-User-Id"] == ks.users["alice"].id
    assert h.get("X-Project-Id") is None and h.get("X-Domain-Id") is None
    assert h["X-Roles"] == ""
    h = _call(app, **{"X-Auth-Token": ks.token(ks.app_creds["alice-rules"])})
    assert h.status_int == 401  # no service_type configured: access rules cannot match
    app = _km(ks, tmp_path, "v3tokenlessauth", service_type=keystone_server.SERVICE_TYPE)
    rules_token = ks.token(ks.app_creds["alice-rules"])
    r = _call(app, **{"X-Auth-Token": rules_token})
    assert r.status_int == 200 and r.json["X-Project-Id"] == ks.projects["demo"].id
    r = webob.Request.blank("/allowed/x", method="POST", headers={"X-Auth-Token": rules_token}).get_response(app)
    assert r.status_int == 401  # no rule allows POST there
    r = webob.Request.blank("/allowed/items", method="POST", headers={"X-Auth-Token": rules_token}).get_response(app)
    assert r.status_int == 200


def test_keystonemiddleware_service_token(keystone: KeystoneServer, tmp_path):
    ks = keystone
    app = _km(ks, tmp_path, "v3tokenlessauth")
    h = _call(app, **{"X-Auth-Token": ks.token("alice"), "X-Service-Token": ks.token("nova")}).json
    assert h["X-Service-Identity-Status"] == "Confirmed"
    assert h["X-Service-User-Id"] == ks.users["nova"].id
    assert h["X-Service-Project-Id"] == ks.projects["service"].id
    assert "service" in h["X-Service-Roles"].split(",")


def test_keystonemiddleware_refuses_bad_and_revoked_tokens(keystone: KeystoneServer, tmp_path):
    ks = keystone
    app = _km(ks, tmp_path, "v3tokenlessauth")
    r = _call(app, **{"X-Auth-Token": "not-a-token"})
    assert r.status_int == 401
    assert r.headers["WWW-Authenticate"] == f'Keystone uri="{ks.url}"'
    tok = ks.token("alice")
    ks.revoke(tok)
    assert _call(app, **{"X-Auth-Token": tok}).status_int == 401


def test_keystonemiddleware_untrusted_issuer_is_a_503(keystone: KeystoneServer, tmp_path):
    ks = keystone
    cert, key = ks.untrusted_cert
    app = _km(ks, tmp_path, "v3tokenlessauth", certfile=cert, keyfile=key)
    r = _call(app, **{"X-Auth-Token": ks.token("alice")})
    assert r.status_int == 503  # the service's own credentials were refused, not the user's token


def test_keystonemiddleware_from_paste(keystone: KeystoneServer, tmp_path):
    """keystonemiddleware's paste entry point, oslo.config file named in the paste ini."""
    from paste.deploy import loadapp

    conf = keystone_server.write_oslo_config(tmp_path / "svc.conf", keystone.middleware_options("v3tokenlessauth"))
    ini = tmp_path / "api-paste.ini"
    ini.write_text(
        "[pipeline:main]\npipeline = authtoken echo\n\n"
        "[filter:authtoken]\npaste.filter_factory = keystonemiddleware.auth_token:filter_factory\n"
        f"oslo_config_project = tw-selfcheck\noslo_config_file = {conf}\n\n"
        "[app:echo]\npaste.app_factory = test_keystone_selfcheck:_echo_app_factory\n"
    )
    app = loadapp(f"config:{ini}")
    r = _call(app, **{"X-Auth-Token": keystone.token("bob")})
    assert r.status_int == 200, r.text
    assert r.json["X-User-Domain-Name"] == "tw-domain"


def _echo_app_factory(global_conf: dict[str, Any], **local_conf: Any) -> Any:
    return _echo_app


def test_no_secret_in_logs_or_reprs(keystone: KeystoneServer):
    ks = keystone
    ks.validate(ks.token("svc"))  # at least one password check and validation since the start
    secrets = [u.password for u in ks.users.values()] + [ac.secret for ac in ks.app_creds.values()]
    secrets.append(ks._admin_pw)
    logs = "".join(
        (ks.workdir / name).read_text(errors="replace")
        for name in ("keystone.log", "launcher.log", "gunicorn.log", "access.log")
    )
    for secret in secrets:
        assert secret not in logs
        assert secret not in repr(ks.users) + repr(ks.app_creds)


def test_access_log_counts_calls(keystone: KeystoneServer):
    ks = keystone
    tok = ks.token("alice")
    mark = len(ks.access_log())
    ks.validate(tok)
    ks.request("GET", "/v3/auth/tokens", headers={"X-Subject-Token": tok, "X-Project-Id": ks.projects["service"].id},
               cert=(ks.x509.cert, ks.x509.key))  # fmt: skip
    new = ks.access_log()[mark:]
    assert [(r.method, r.path, r.status) for r in new] == [("GET", "/v3/auth/tokens", 200)] * 2
    assert ks.validations(since=mark) == 2
    assert tok not in (ks.workdir / "access.log").read_text()


def test_created_user_and_disabling(keystone: KeystoneServer):
    ks = keystone
    carol = ks.create_user("carol")
    tok = ks.token("carol")
    assert ks.validate(tok)["user"]["id"] == carol.id
    ks.set_enabled("user", "carol", False)
    assert ks.validate(tok, allow_missing=True) is None  # a disabled user's tokens stop working
    with pytest.raises(keystone_server.KeystoneError):
        ks.token("carol")  # nor can they authenticate
    ks.set_enabled("user", "carol", True)
    ks.token("carol")  # (its validation would 404 within the second of the disabling: see set_enabled)
