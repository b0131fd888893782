"""A real Keystone for the tests: started once, seeded, with helpers for tokens.

``start_keystone(pki, workdir)`` starts the ``keystone`` package from PyPI (SQLite, fernet
tokens, its in-process cache) over HTTPS, served by gunicorn through tests/support/keystone_wsgi.py
(sync worker, optional and verified client certificates, mod_ssl-style ``SSL_CLIENT_*``
variables), configured for X.509 tokenless authorization, and seeds it through its REST API.
The session fixture ``keystone`` (tests/conftest.py) is one of these for the whole test run.

    ks = start_keystone(pki, workdir)        # or the `keystone` fixture
    tok = ks.token("alice")                  # project-scoped (demo), fernet
    ks.token("alice", scope="domain")        # tw-domain
    ks.token("alice", scope="system")        # system all (reader)
    ks.token("alice", scope="unscoped")
    ks.token("nova")                         # service token (role service on project service)
    ks.token(ks.app_creds["alice"])          # application-credential token
    ks.validate(tok)                         # Keystone's own answer (admin GET /v3/auth/tokens)
    ks.revoke(tok)                           # DELETE /v3/auth/tokens
    opts = ks.middleware_options("v3tokenlessauth")   # [keystone_authtoken] for the middleware
    mark = len(ks.access_log()); ...; ks.validations(since=mark)   # calls Keystone answered
    ks.create_user("carol"); ks.set_enabled("user", "carol", False)  # without touching seeds
    ks.admin("GET", "/v3/projects")          # any other call, as admin

What is seeded (names are fixed, ids are Keystone's, passwords and secrets random per run):

======================  =====================================================================
domains                 ``default`` (Default), ``tw`` (tw-domain), ``x509`` (tokenward-test:
                        named after the certificate subject's O, as the tokenless guide maps it)
projects                ``admin`` (Default; the admin project: ``is_admin_project`` true),
                        ``service`` (Default), ``demo`` (tw-domain)
users (password)        ``admin``: admin on project admin and on the system (bootstrap);
                        ``alice`` (Default): member on demo, member on tw-domain, reader on the
                        system; ``bob`` (tw-domain): member on demo; ``nova`` (Default): service
                        on project service (send its token as X-Service-Token); ``svc``
                        (Default): service on project service (the middleware's own password
                        auth); ``x509`` = tw-keystone-service (tokenward-test): service on
                        project service, the user the service certificate maps to
application credentials ``alice``: alice's on demo, role member; ``alice-rules``: the same with
                        access rules :data:`ACCESS_RULES` (service type ``tw-test``, in the
                        catalog with a public and an internal endpoint that is never called);
                        ``svc``: svc's on project service, role service (the middleware's own
                        v3applicationcredential auth)
X.509 tokenless         ``[tokenless_auth] trusted_issuer`` = the test CA's DN in mod_ssl form
                        (:attr:`KeystoneServer.trusted_issuer`), protocol ``x509``, identity
                        provider ``sha256(trusted_issuer)``, mapping: ``SSL_CLIENT_S_DN_CN`` →
                        local user name, ``SSL_CLIENT_S_DN_O`` → its domain name; the service
                        certificate is pki/keystone-service.pem; pki/untrusted-client.pem has
                        the same subject from other-ca, which TLS accepts and Keystone does not
                        trust
======================  =====================================================================

Implied roles come from bootstrap (admin → manager → member → reader), so alice's project token
carries member and reader. The catalog has the identity service (public, internal and admin
endpoints, all ``url``) in RegionOne.

Run ``python tests/support/keystone_server.py --pki DIR --workdir DIR`` to start one by hand.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Union

import requests
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent))

import keystone_wsgi

SUPPORT = Path(__file__).resolve().parent
LAUNCHER = SUPPORT / "keystone_wsgi.py"

# The service type of the service under test (in the catalog; the middleware's service_type) and
# the access rules of the "alice-rules" application credential for it.
SERVICE_TYPE = "tw-test"
ACCESS_RULES = [
    {"service": SERVICE_TYPE, "method": "GET", "path": "/allowed/**"},
    {"service": SERVICE_TYPE, "method": "POST", "path": "/allowed/items"},
]
MAPPING_ID = "tw-x509-mapping"
SYNC_PATH = "/tw-access-log-sync"  # answered 404 by Keystone; see KeystoneServer.access_log
PROTOCOL = "x509"
REGION = "RegionOne"


@dataclass(frozen=True)
class Domain:
    id: str
    name: str


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    domain: Domain


@dataclass(frozen=True)
class User:
    key: str
    id: str
    name: str
    password: str = field(repr=False)
    domain: Domain
    default_project: str | None  # key in KeystoneServer.projects for scope="project"
    default_domain: str | None = None  # key in KeystoneServer.domains for scope="domain"


@dataclass(frozen=True)
class AppCred:
    key: str
    id: str
    name: str
    secret: str = field(repr=False)
    user: User
    project: Project
    roles: tuple[str, ...]
    access_rules: tuple[dict[str, str], ...] | None = None


@dataclass(frozen=True)
class X509Identity:
    """The service's certificate for tokenless auth and what Keystone makes of it."""

    cert: str
    key: str
    user: User
    project: Project  # the scope the service asks for (its user has role service there)
    issuer_dn: str  # SSL_CLIENT_I_DN as the wrapper sets it (== trusted_issuer)
    idp_id: str  # sha256(issuer_dn)


@dataclass(frozen=True)
class AccessRecord:
    """One line of Keystone's access log."""

    method: str
    path: str
    status: int
    seconds: float
    user_agent: str


class KeystoneError(RuntimeError):
    pass


class KeystoneServer:
    """A running, seeded Keystone (see the module docstring); stop() or use as a context."""

    def __init__(self, process: subprocess.Popen, pki: Path, workdir: Path, info: dict[str, Any], admin_pw: str):
        self.process = process
        self.pki = pki
        self.workdir = workdir
        self.info = info
        self.port: int = int(info["port"])
        self.url: str = info["url"]  # unversioned; the catalog's public = internal = admin
        self.auth_url: str = self.url + "/v3"
        self.ca_file = str(pki / "ca.pem")
        self.region = REGION
        self.log_file = workdir / "keystone.log"
        self.trusted_issuer = trusted_issuer(pki)
        self.untrusted_issuer = keystone_wsgi.mod_ssl_dn(_load_cert(pki / "other-ca.pem").subject)
        self.untrusted_cert = (str(pki / "untrusted-client.pem"), str(pki / "untrusted-client.key"))
        self.domains: dict[str, Domain] = {"default": Domain("default", "Default")}
        self.projects: dict[str, Project] = {}
        self.users: dict[str, User] = {}
        self.roles: dict[str, str] = {}  # name -> id
        self.app_creds: dict[str, AppCred] = {}
        self._admin_pw = admin_pw
        self._admin_token: str | None = None
        self._admin_expires = 0.0
        self._http = requests.Session()

    # ------------------------------------------------------------ plumbing
    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        cert: tuple[str, str] | None = None,
        expect: Union[int, tuple[int, ...], None] = None,
    ) -> requests.Response:
        """One call to Keystone (``path`` below ``url``); ``expect`` checks the status."""
        h = dict(headers or {})
        if token is not None:
            h["X-Auth-Token"] = token
        r = self._http.request(
            method,
            self.url + path,
            json=body,
            headers=h,
            cert=cert,
            verify=self.ca_file,  # per request: REQUESTS_CA_BUNDLE would beat a session's verify
            timeout=30,
            allow_redirects=False,
        )
        want = (expect,) if isinstance(expect, int) else expect
        if want is not None and r.status_code not in want:
            raise KeystoneError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r

    @property
    def admin_token(self) -> str:
        """A project-scoped (admin project) admin token, renewed when near expiry."""
        if self._admin_token is None or self._admin_expires - time.time() < 300:
            ident = {"user": {"name": "admin", "domain": {"id": "default"}, "password": self._admin_pw}}
            scope = {"project": {"name": "admin", "domain": {"id": "default"}}}
            auth = {"auth": {"identity": {"methods": ["password"], "password": ident}, "scope": scope}}
            r = self.request("POST", "/v3/auth/tokens", body=auth, expect=201)
            tok, body = r.headers["X-Subject-Token"], r.json()["token"]
            self._admin_token = tok
            self._admin_expires = _parse_time(body["expires_at"])
        return self._admin_token

    def admin(self, method: str, path: str, body: Any = None, expect: Any = (200, 201, 204)) -> Any:
        """One call as admin (project admin); the JSON answer, or None for an empty one."""
        r = self.request(method, path, self.admin_token, body=body, expect=expect)
        return r.json() if r.content else None

    # ------------------------------------------------------------- tokens
    def auth_body(
        self,
        who: Union[str, User, AppCred],
        scope: str = "project",
        project: str | None = None,
        domain: str | None = None,
        trust_id: str | None = None,
    ) -> dict[str, Any]:
        """The POST /v3/auth/tokens body for a user (key or User) or application credential.

        ``scope``: ``project`` (``project`` key, default the user's), ``domain`` (``domain`` key,
        default the user's), ``system`` (all), ``unscoped``, or ``trust`` (``trust_id``). An
        application credential's token is scoped by the credential itself.
        """
        if isinstance(who, AppCred):
            return {
                "auth": {
                    "identity": {
                        "methods": ["application_credential"],
                        "application_credential": {"id": who.id, "secret": who.secret},
                    }
                }
            }
        user = self.users[who] if isinstance(who, str) else who
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"id": user.id, "password": user.password}},
            }
        }
        if scope == "project":
            p = self.projects[project or user.default_project or ""]
            auth["scope"] = {"project": {"id": p.id}}
        elif scope == "domain":
            d = self.domains[domain or user.default_domain or ""]
            auth["scope"] = {"domain": {"id": d.id}}
        elif scope == "system":
            auth["scope"] = {"system": {"all": True}}
        elif scope == "trust":
            auth["scope"] = {"OS-TRUST:trust": {"id": trust_id}}
        elif scope != "unscoped":
            raise ValueError(f"unknown scope {scope!r}")
        return {"auth": auth}

    def authenticate(self, who: Union[str, User, AppCred], scope: str = "project", **kw: Any) -> tuple[str, dict]:
        """Issue a token; returns (token id, the ``token`` object of Keystone's answer)."""
        r = self.request("POST", "/v3/auth/tokens", body=self.auth_body(who, scope, **kw), expect=201)
        return r.headers["X-Subject-Token"], r.json()["token"]

    def token(self, who: Union[str, User, AppCred] = "alice", scope: str = "project", **kw: Any) -> str:
        """A fresh token id (see :meth:`auth_body` for ``scope`` and its keys)."""
        return self.authenticate(who, scope, **kw)[0]

    def validate(self, token: str, *, allow_missing: bool = False, access_rules: bool = True) -> dict | None:
        """Keystone's answer to GET /v3/auth/tokens (as admin): the ``token`` object.

        An invalid or revoked token raises, or gives None with ``allow_missing``. The
        ``OpenStack-Identity-Access-Rules`` header is sent (as keystonemiddleware does) unless
        ``access_rules`` is false; without it Keystone refuses tokens of credentials with rules.
        """
        headers = {"X-Subject-Token": token}
        if access_rules:
            headers["OpenStack-Identity-Access-Rules"] = "1"
        r = self.request("GET", "/v3/auth/tokens", self.admin_token, headers=headers, expect=(200, 404))
        if r.status_code == 404:
            if allow_missing:
                return None
            raise KeystoneError("token not valid (404)")
        return r.json()["token"]

    def revoke(self, token: str) -> None:
        """DELETE /v3/auth/tokens: Keystone refuses the token from now on."""
        self.request("DELETE", "/v3/auth/tokens", self.admin_token, headers={"X-Subject-Token": token}, expect=204)

    def create_trust(
        self, trustor: str = "alice", trustee: str = "nova", project: str = "demo", roles: tuple[str, ...] = ("member",)
    ) -> str:
        """A trust from ``trustor`` to ``trustee`` on ``project``; returns its id (for scope="trust")."""
        tor, tee = self.users[trustor], self.users[trustee]
        body = {
            "trust": {
                "trustor_user_id": tor.id,
                "trustee_user_id": tee.id,
                "project_id": self.projects[project].id,
                "impersonation": False,
                "roles": [{"name": r} for r in roles],
            }
        }
        r = self.request("POST", "/v3/OS-TRUST/trusts", self.token(trustor, project=project), body=body, expect=201)
        return r.json()["trust"]["id"]

    def create_user(
        self, key: str, project: str | None = "demo", roles: tuple[str, ...] = ("member",), domain: str = "default"
    ) -> User:
        """A new user (name = ``key``) in ``domain`` with ``roles`` on ``project``: for a test
        that disables, deletes or changes a user without touching the seeded ones."""
        pw = secrets.token_urlsafe(18)
        d = self.domains[domain]
        u = self.admin("POST", "/v3/users", {"user": {"name": key, "domain_id": d.id, "password": pw}})["user"]
        user = User(key, u["id"], key, pw, d, project)
        self.users[key] = user
        if project is not None:
            for role in roles:
                self.admin("PUT", f"/v3/projects/{self.projects[project].id}/users/{u['id']}/roles/{self.roles[role]}")
        return user

    def set_enabled(self, kind: str, key: str, enabled: bool) -> None:
        """Enable or disable a ``user``, ``project`` or ``domain`` (by its key here).

        Disabling records a revocation event for everything issued up to now, at Keystone's
        one-second resolution: a token issued in the same second, even after re-enabling, is
        refused too."""
        table = {"user": self.users, "project": self.projects, "domain": self.domains}[kind]
        self.admin("PATCH", f"/v3/{kind}s/{table[key].id}", {kind: {"enabled": enabled}})

    def create_app_cred(
        self,
        user: str,
        name: str,
        roles: tuple[str, ...] = ("member",),
        access_rules: list[dict[str, str]] | None = None,
        project: str | None = None,
        key: str | None = None,
    ) -> AppCred:
        """A new application credential of ``user`` (scoped to ``project``, default the user's)."""
        u = self.users[user]
        project_key = project or u.default_project or ""
        p = self.projects[project_key]
        spec: dict[str, Any] = {"name": name, "roles": [{"name": r} for r in roles]}
        if access_rules is not None:
            spec["access_rules"] = access_rules
        r = self.request(
            "POST",
            f"/v3/users/{u.id}/application_credentials",
            self.token(user, project=project_key),
            body={"application_credential": spec},
            expect=201,
        )
        ac = r.json()["application_credential"]
        cred = AppCred(
            key=key or name,
            id=ac["id"],
            name=ac["name"],
            secret=ac["secret"],
            user=u,
            project=p,
            roles=tuple(roles),
            access_rules=tuple(access_rules) if access_rules is not None else None,
        )
        self.app_creds[cred.key] = cred
        return cred

    # ------------------------------------------------- middleware options
    def middleware_options(self, auth_type: str = "v3tokenlessauth", **overrides: str) -> dict[str, str]:
        """``[keystone_authtoken]`` options (as strings) for keystonemiddleware.auth_token (or a
        drop-in) to validate tokens at this Keystone, the service authenticating itself by
        ``auth_type``: ``v3tokenlessauth`` (the service certificate, scope project service in
        Default), ``password`` (user svc) or ``v3applicationcredential`` (credential svc)."""
        opts = {
            "www_authenticate_uri": self.url,
            "auth_url": self.auth_url,  # tokenless: the identity endpoint is auth_url itself
            "auth_type": auth_type,
            "cafile": self.ca_file,
            "http_connect_timeout": "10",
            "region_name": self.region,
        }
        if auth_type == "v3tokenlessauth":
            x = self.x509
            opts.update(
                certfile=x.cert,
                keyfile=x.key,
                project_name=x.project.name,
                project_domain_name=x.project.domain.name,
            )
        elif auth_type == "password":
            u = self.users["svc"]
            opts.update(
                username=u.name,
                password=u.password,
                user_domain_name=u.domain.name,
                project_name="service",
                project_domain_name="Default",
            )
        elif auth_type == "v3applicationcredential":
            ac = self.app_creds["svc"]
            opts.update(application_credential_id=ac.id, application_credential_secret=ac.secret)
        else:
            raise ValueError(f"no options for auth_type {auth_type!r}")
        opts.update(overrides)
        return opts

    # ------------------------------------------------------------ seeding
    def _seed(self) -> None:
        roles = self.admin("GET", "/v3/roles")["roles"]
        self.roles = {r["name"]: r["id"] for r in roles}
        for want in ("admin", "member", "reader", "service"):
            if want not in self.roles:
                self.roles[want] = self.admin("POST", "/v3/roles", {"role": {"name": want}})["role"]["id"]
        admin_user = self.admin("GET", "/v3/users?name=admin&domain_id=default")["users"][0]
        admin_proj = self.admin("GET", "/v3/projects?name=admin&domain_id=default")["projects"][0]
        dflt = self.domains["default"]
        self.projects["admin"] = Project(admin_proj["id"], "admin", dflt)
        self.users["admin"] = User("admin", admin_user["id"], "admin", self._admin_pw, dflt, "admin")

        for key, name in (("tw", "tw-domain"), ("x509", "tokenward-test")):
            d = self.admin("POST", "/v3/domains", {"domain": {"name": name}})["domain"]
            self.domains[key] = Domain(d["id"], d["name"])
        for key, dom in (("service", "default"), ("demo", "tw")):
            p = self.admin("POST", "/v3/projects", {"project": {"name": key, "domain_id": self.domains[dom].id}})
            self.projects[key] = Project(p["project"]["id"], key, self.domains[dom])

        cn = _load_cert(self.pki / "keystone-service.pem").subject
        x509_name = cn.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        for key, name, dom, proj, pdom in (
            ("alice", "alice", "default", "demo", "tw"),
            ("bob", "bob", "tw", "demo", None),
            ("nova", "nova", "default", "service", None),
            ("svc", "svc", "default", "service", None),
            ("x509", x509_name, "x509", "service", None),
        ):
            pw = secrets.token_urlsafe(18)
            body = {"user": {"name": name, "domain_id": self.domains[dom].id, "password": pw}}
            u = self.admin("POST", "/v3/users", body)["user"]
            self.users[key] = User(key, u["id"], name, pw, self.domains[dom], proj, pdom)

        def grant(target: str, user: str, role: str) -> None:
            self.admin("PUT", f"{target}/users/{self.users[user].id}/roles/{self.roles[role]}")

        grant(f"/v3/projects/{self.projects['demo'].id}", "alice", "member")
        grant(f"/v3/domains/{self.domains['tw'].id}", "alice", "member")
        grant("/v3/system", "alice", "reader")
        grant(f"/v3/projects/{self.projects['demo'].id}", "bob", "member")
        for svc in ("nova", "svc", "x509"):
            grant(f"/v3/projects/{self.projects['service'].id}", svc, "service")

        # X.509 tokenless: identity provider named by the issuer DN's SHA-256, a mapping of the
        # certificate subject (CN → user name, O → domain name) to a local user, protocol x509.
        idp_id = keystone_wsgi.issuer_idp_id(self.trusted_issuer)
        self.admin(
            "PUT",
            f"/v3/OS-FEDERATION/identity_providers/{idp_id}",
            {"identity_provider": {"description": "tokenward test CA (X.509 tokenless)", "enabled": True}},
        )
        rules = [
            {
                "local": [{"user": {"name": "{0}", "domain": {"name": "{1}"}, "type": "local"}}],
                "remote": [{"type": "SSL_CLIENT_S_DN_CN"}, {"type": "SSL_CLIENT_S_DN_O"}],
            }
        ]
        self.admin("PUT", f"/v3/OS-FEDERATION/mappings/{MAPPING_ID}", {"mapping": {"rules": rules}})
        self.admin(
            "PUT",
            f"/v3/OS-FEDERATION/identity_providers/{idp_id}/protocols/{PROTOCOL}",
            {"protocol": {"mapping_id": MAPPING_ID}},
        )
        self.x509 = X509Identity(
            cert=str(self.pki / "keystone-service.pem"),
            key=str(self.pki / "keystone-service.key"),
            user=self.users["x509"],
            project=self.projects["service"],
            issuer_dn=self.trusted_issuer,
            idp_id=idp_id,
        )

        # A service of type SERVICE_TYPE in the catalog: keystonemiddleware enforces access rules
        # only for a service_type the user's catalog has.
        svc = self.admin("POST", "/v3/services", {"service": {"type": SERVICE_TYPE, "name": SERVICE_TYPE}})
        for interface in ("public", "internal"):
            endpoint = {
                "service_id": svc["service"]["id"],
                "interface": interface,
                "url": f"http://127.0.0.1:9/{SERVICE_TYPE}",  # never called
                "region_id": REGION,
            }
            self.admin("POST", "/v3/endpoints", {"endpoint": endpoint})

        self.create_app_cred("alice", "alice-ac", ("member",), key="alice")
        self.create_app_cred("alice", "alice-ac-rules", ("member",), access_rules=ACCESS_RULES, key="alice-rules")
        self.create_app_cred("svc", "svc-ac", ("service",), key="svc")

    # --------------------------------------------------------- access log
    def access_log(self) -> list[AccessRecord]:
        """Every request Keystone has answered, in order (gunicorn's access log; no headers).

        gunicorn writes a request's line after sending its response, and its one sync worker
        takes the next connection only after that: so a request to SYNC_PATH is made first, and
        when it is answered every earlier line is in the file. Those requests are not listed.
        """
        self.request("GET", SYNC_PATH)
        out = []
        for line in (self.workdir / "access.log").read_text(errors="replace").splitlines():
            head, _, agent = line.partition(' "')
            method, path, status, seconds = head.split(" ")
            if path != SYNC_PATH:
                out.append(AccessRecord(method, path, int(status), float(seconds), agent.rstrip('"')))
        return out

    def validations(self, since: int = 0, user_agent: str | None = None) -> int:
        """How many GET /v3/auth/tokens Keystone answered after the first ``since`` log records
        (``len(ks.access_log())`` taken before), optionally only from ``user_agent`` (prefix)."""
        return sum(
            1
            for r in self.access_log()[since:]
            if r.method == "GET"
            and r.path == "/v3/auth/tokens"
            and (user_agent is None or r.user_agent.startswith(user_agent))
        )

    # ---------------------------------------------------------- lifecycle
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of Keystone's log (for assertion messages)."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.process)
        self._http.close()

    def __enter__(self) -> KeystoneServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_oslo_config(path: str | os.PathLike[str], options: dict[str, str], group: str = "keystone_authtoken") -> Path:
    """An oslo.config file with ``options`` in ``[group]`` (e.g. :meth:`KeystoneServer.middleware_options`)."""
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in options.items()]
    out = Path(path)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold a password
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return out


def keystonemiddleware_filter(app: Any, options: dict[str, str], conf_file: str | os.PathLike[str]) -> Any:
    """The reference, keystonemiddleware.auth_token, around ``app``, configured as a service
    configures it: its own oslo.config object read from ``conf_file`` (written here from
    ``options``). Paste-only options would go to the global cfg.CONF, where two auth plugins
    in one process collide (DuplicateOptError)."""
    from keystonemiddleware import auth_token
    from oslo_config import cfg

    conf = cfg.ConfigOpts()
    conf(args=[], project="tokenward-tests", default_config_files=[str(write_oslo_config(conf_file, options))])
    return auth_token.AuthProtocol(app, {"oslo_config_config": conf})


def _load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _parse_time(s: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def trusted_issuer(pki: Path) -> str:
    """The test CA's DN as mod_ssl (and so keystone_wsgi) puts it in SSL_CLIENT_I_DN."""
    return keystone_wsgi.mod_ssl_dn(_load_cert(pki / "ca.pem").subject)


def write_config(
    workdir: Path,
    pki: Path,
    *,
    workers: int = 1,
    debug: bool = False,
    extra: dict[str, dict[str, str]] | None = None,
) -> Path:
    """keystone.conf for a test Keystone in ``workdir`` (SQLite, fernet, tokenless x509).

    ``extra`` = {section: {option: value}} adds or replaces options, e.g.
    ``{"token": {"expiration": "120"}}``.
    """
    w = workdir.resolve()
    sections: dict[str, dict[str, str]] = {
        "DEFAULT": {"log_file": str(w / "keystone.log"), "debug": str(debug).lower()},
        # sqlite_synchronous: no fsync per commit; a test database need not survive a power cut
        "database": {"connection": f"sqlite:///{w / 'keystone.db'}", "sqlite_synchronous": "false"},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": str(w / "fernet-keys")},
        "fernet_receipts": {"key_repository": str(w / "fernet-keys")},
        "credential": {"key_repository": str(w / "credential-keys")},
        # bcrypt's minimum cost: every password and application-credential check is cheap
        "identity": {"password_hash_rounds": "4", "max_password_length": "72"},
        # Keystone's in-process cache; with more workers a per-process cache would disagree
        "cache": {"enabled": "true", "backend": "oslo_cache.dict"} if workers == 1 else {"enabled": "false"},
        "tokenless_auth": {"trusted_issuer": trusted_issuer(pki), "protocol": PROTOCOL},
        "resource": {"admin_project_domain_name": "Default", "admin_project_name": "admin"},
    }
    for section, options in (extra or {}).items():
        sections.setdefault(section, {}).update(options)
    text = "".join(
        f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in options.items()) for section, options in sections.items()
    )
    path = w / "keystone.conf"
    path.write_text(text)
    return path


def ensure_pki(pki: str | os.PathLike[str]) -> Path:
    """The test PKI (tests/pki/make-pki.sh, idempotent) with the Keystone certificates."""
    import oidc_as

    return oidc_as.ensure_pki(pki)


def launch(
    args: list[str], pki: Path, work: Path, env: dict[str, str] | None = None, timeout: float = 90.0
) -> tuple[subprocess.Popen, dict[str, Any]]:
    """Run ``keystone_wsgi.py ARGS`` (TLS: pki/server.pem; client CAs: ca + other-ca) in ``work``
    and wait for its READY line; returns (process, READY info). Its stderr is work/launcher.log."""
    client_cas = work / "client-cas.pem"
    client_cas.write_bytes((pki / "ca.pem").read_bytes() + (pki / "other-ca.pem").read_bytes())
    full_env = {**os.environ, **(env or {})}
    full_env.pop("OS_KEYSTONE_CONFIG_DIR", None)
    cmd = [sys.executable, str(LAUNCHER), *args]
    cmd += ["--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key")]
    cmd += ["--ca-certs", str(client_cas), "--gunicorn-log", str(work / "gunicorn.log")]
    cmd += ["--access-log", str(work / "access.log")]
    with open(work / "launcher.log", "wb") as launcher_log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,  # the launcher exits when this closes
            stdout=subprocess.PIPE,
            stderr=launcher_log,
            env=full_env,
            cwd=str(work),
            text=True,
        )
    ready: dict[str, Any] = {}
    got = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not got.is_set() and line.startswith("READY "):
                ready.update(json.loads(line[len("READY ") :]))
                got.set()
        got.set()

    threading.Thread(target=read_stdout, daemon=True).start()
    if not got.wait(timeout) or not ready:
        proc.kill()
        proc.wait(timeout=5)
        tail = (work / "launcher.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{args[0]} did not become ready within {timeout}s (exit={proc.poll()}):\n{tail}")
    return proc, ready


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a launched server (SIGINT: gunicorn's quick shutdown; SIGKILL after 10 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def start_keystone(
    pki: str | os.PathLike[str],
    workdir: str | os.PathLike[str],
    *,
    workers: int = 1,
    debug: bool = False,
    config: dict[str, dict[str, str]] | None = None,
    timeout: float = 90.0,
) -> KeystoneServer:
    """Set up, start and seed a Keystone in ``workdir`` (empty or new); see the module doc.

    ``config`` adds keystone.conf options (:func:`write_config`'s ``extra``); ``workers`` > 1
    turns Keystone's in-process cache off.
    """
    pki = ensure_pki(pki)
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    conf = write_config(work, pki, workers=workers, debug=debug, extra=config)
    admin_pw = secrets.token_urlsafe(18)
    args = ["serve", "--config-file", str(conf), "--workers", str(workers), "--region", REGION]
    proc, ready = launch(args, pki, work, {"OS_BOOTSTRAP_PASSWORD": admin_pw}, timeout)
    server = KeystoneServer(proc, pki, work, ready, admin_pw)
    try:
        server._seed()
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class EchoServer:
    """gunicorn serving keystone_wsgi.echo_ssl_environ behind ModSSLEnviron (same TLS setup)."""

    process: subprocess.Popen
    url: str

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_echo(pki: str | os.PathLike[str], workdir: str | os.PathLike[str], timeout: float = 60.0) -> EchoServer:
    """The wrapper's environ over real TLS: GET / answers the SSL_*/HTTPS/HTTP_* keys as JSON."""
    work = Path(workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    proc, ready = launch(["echo"], ensure_pki(pki), work, timeout=timeout)
    return EchoServer(proc, ready["url"])


def keystone_session(pki: Path, workdir: Path) -> Iterator[KeystoneServer]:
    """Generator for a pytest fixture: one seeded Keystone, stopped at the end."""
    with start_keystone(pki, workdir) as server:
        yield server


def _main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="run the tokenward test Keystone")
    ap.add_argument("--pki", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args(argv)

    def _term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    t0 = time.monotonic()
    with start_keystone(a.pki, a.workdir, workers=a.workers) as ks:
        print(f"Keystone at {ks.url} ready and seeded in {time.monotonic() - t0:.1f} s", flush=True)
        print(json.dumps({"url": ks.url, "users": {k: u.id for k, u in ks.users.items()}}, indent=2), flush=True)
        try:
            ks.process.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
