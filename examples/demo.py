"""The tokenward demo: a real OAuth 2.0 authorization server (oidc-provider) on loopback, a
protected WSGI app behind the tokenward filter loaded through PasteDeploy, and a service that
obtains tokens with each of the five client-authentication methods and calls the app.

Run it with ``bash scripts/demo.sh`` (which installs what it needs)."""

from __future__ import annotations

import json
import sys
import tempfile
import textwrap
import threading
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import requests
from paste.deploy import loadapp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import oidc_as  # noqa: E402
from tokenward.client_credentials import ClientCredentials  # noqa: E402

METHODS = {
    "client_secret_basic": "svc-basic",
    "client_secret_post": "svc-post",
    "client_secret_jwt": "svc-secret-jwt",
    "private_key_jwt": "svc-private-jwt",
    "tls_client_auth": "svc-tls",
}

MAPPING = """\
mapping_project_id = project.id
mapping_project_name = project.name
mapping_project_domain_id = project.domain.id
mapping_project_domain_name = project.domain.name
mapping_user_domain_id = user_domain.id
mapping_user_domain_name = user_domain.name
mapping_roles = roles
"""


class Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def client_options(server: oidc_as.AuthServer, client_id: str) -> dict[str, str]:
    """The [ext_oauth2_auth] options a service would have for ``client_id``."""
    c = oidc_as.CLIENTS[client_id]
    pki = server.pki
    opts = {"client_id": client_id, "auth_method": c["auth"], "audience": server.issuer, "cafile": str(pki / "ca.pem")}
    if "secret" in c:
        opts["client_secret"] = c["secret"]
    if "alg" in c:
        opts["jwt_algorithm"] = c["alg"]
        opts["jwt_bearer_time_out"] = "60"
    if "key" in c:
        opts["jwt_key_file"] = str(pki / c["key"])
    if "cert" in c:
        opts["certfile"], opts["keyfile"] = (str(pki / p) for p in c["cert"])
    return opts


def paste_ini(server: oidc_as.AuthServer, introspector: str, directory: Path) -> Path:
    """An api-paste.ini as Tacker has it, with only the filter line swapped for tokenward."""
    opts = client_options(server, introspector)
    lines = "\n".join(f"{k} = {v.replace('%', '%%')}" for k, v in opts.items())
    ini = directory / f"api-paste-{introspector}.ini"
    ini.write_text(
        textwrap.dedent(
            f"""\
            [pipeline:main]
            pipeline = external_oauth2_token app

            [filter:external_oauth2_token]
            paste.filter_factory = tokenward.external_oauth2_token:filter_factory
            introspect_endpoint = {server.introspection_endpoint}
            {{lines}}
            {{mapping}}
            [app:app]
            paste.app_factory = demo_app:app_factory
            """
        ).format(lines=lines, mapping=MAPPING)
    )
    return ini


def serve(app: Any) -> str:
    httpd = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}/vnflcm/v2/vnf_instances"


def main() -> int:
    # The test PKI holds private keys: the folder goes when the demo ends.
    with tempfile.TemporaryDirectory(prefix="tokenward-demo-") as work:
        return run(Path(work))


def run(work: Path) -> int:
    pki = oidc_as.ensure_pki(work / "pki")
    print(f"== starting the authorization server (oidc-provider) with a test CA in {pki}")
    failures = 0
    with oidc_as.start_as(pki) as server:
        print(f"   issuer {server.issuer}\n")
        print(f"{'method':<22} {'filter introspects as':<20} {'token from':<16} status  X-User-Id / X-Project-Id")
        for method, client_id in METHODS.items():
            # The protected app: PasteDeploy pipeline, filter introspecting with `method`.
            url = serve(loadapp(f"config:{paste_ini(server, client_id, work)}"))
            # The calling service: tokenward's Client Credentials client with the same method.
            creds = ClientCredentials(token_endpoint=server.token_endpoint, **client_options(server, client_id))
            session = creds.create_session()
            r = session.get(url, raise_exc=False)
            ok = r.status_code == 200
            failures += not ok
            who = r.json() if ok else {}
            print(
                f"{method:<22} {client_id:<20} {client_id:<16} {r.status_code}     "
                f"{who.get('user_id')} / {who.get('project_id')}"
            )
            bad = requests.get(url, headers={"Authorization": "Bearer not-a-valid-token"}, timeout=10)
            failures += bad.status_code != 401
            if method == "client_secret_basic":
                spoof = requests.get(
                    url,
                    timeout=10,
                    headers={
                        "Authorization": f"Bearer {creds.get_token()}",
                        "X-Roles": "admin",
                        "OpenStack-System-Scope": "all",
                    },
                )
                spoof_ok = spoof.json()["roles"] == "member,reader" and spoof.json()["system_scope"] is None
                failures += not spoof_ok
        print(f"\na bad token:  {bad.status_code} {bad.headers.get('WWW-Authenticate')}")
        print(f"              {json.dumps(bad.json())}")
        print(
            f"spoofed X-Roles: admin / OpenStack-System-Scope: all with a member token: "
            f"{'stripped' if spoof_ok else 'LEAKED'}"
        )
    # scripts/demo.sh prints the one final OK line after the C door.
    print("\nPython door:", "all checks passed" if failures == 0 else f"{failures} checks FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
