"""Drive the test OAuth 2.0 authorization server (tests/as/server.mjs).

The AS is `oidc-provider` (Node). This module generates the test PKI, starts
and stops the AS, and contains an independent Python implementation of the
client-credentials grant for every client authentication method the AS
registers, plus introspection and revocation helpers.

Only the standard library, ``requests``, ``cryptography`` and ``PyJWT`` are
used.

    sys.path.insert(0, "tests/support")   # or run pytest from tests/support
    from oidc_as import ensure_pki, start_as, obtain_token, introspect

    pki = ensure_pki("/tmp/tw-pki")
    with start_as(pki, http_port=0) as server:
        tok = obtain_token(server, "svc-basic", scope="api")
        assert introspect(server, tok)["active"]

Run ``python tests/support/oidc_as.py --pki DIR`` to start an AS by hand; it
prints the READY information and runs until interrupted.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import jwt_tools
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
AS_DIR = REPO_ROOT / "tests" / "as"
MAKE_PKI = REPO_ROOT / "tests" / "pki" / "make-pki.sh"

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Every client registered in tests/as/server.mjs. Keep the two in sync.
#   auth:   token endpoint auth method
#   secret: client secret (basic/post/client_secret_jwt)
#   key:    private key file in the PKI dir (private_key_jwt)
#   alg:    JWS alg of the client assertion
#   cert:   (cert, key) file names in the PKI dir presented over mTLS
#   bound:  issued access tokens are certificate-bound (cnf x5t#S256)
#   roles:  value of the "roles" extra claim in introspection
_DEFAULT_ROLES = "member,reader"
CLIENTS: dict[str, dict[str, Any]] = {
    "svc-basic": {
        "id": "svc-basic",
        "auth": "client_secret_basic",
        # contains ": + % & = space" and non-ASCII on purpose
        "secret": "b4sic-S3cret: +%&= \u00fcn\u00ef",
    },
    "svc-post": {
        "id": "svc-post",
        "auth": "client_secret_post",
        "secret": "p0st-secret-0123456789abcdefghijkl",
    },
    "svc-secret-jwt": {
        "id": "svc-secret-jwt",
        "auth": "client_secret_jwt",
        "secret": "jwt-hmac-secret-0123456789abcdefghijklmnop",
        "alg": "HS256",
    },
    "svc-private-jwt": {
        "id": "svc-private-jwt",
        "auth": "private_key_jwt",
        "key": "rsa-pkcs1.key",
        "alg": "RS256",
    },
    "svc-private-jwt-ps256": {
        "id": "svc-private-jwt-ps256",
        "auth": "private_key_jwt",
        "key": "rsa-pkcs8.key",
        "alg": "PS256",
    },
    "svc-private-jwt-es256": {
        "id": "svc-private-jwt-es256",
        "auth": "private_key_jwt",
        "key": "ec256-sec1.key",
        "alg": "ES256",
    },
    "svc-private-jwt-es384": {
        "id": "svc-private-jwt-es384",
        "auth": "private_key_jwt",
        "key": "ec384.key",
        "alg": "ES384",
    },
    "svc-private-jwt-es512": {
        "id": "svc-private-jwt-es512",
        "auth": "private_key_jwt",
        "key": "ec521.key",
        "alg": "ES512",
    },
    "svc-private-jwt-eddsa": {
        "id": "svc-private-jwt-eddsa",
        "auth": "private_key_jwt",
        "key": "ed25519.key",
        "alg": "EdDSA",
    },
    "svc-tls": {
        "id": "svc-tls",
        "auth": "tls_client_auth",
        "cert": ("client-a.pem", "client-a.key"),
        "subject_dn": "CN=client-a,O=tokenward-test",
        "bound": True,
    },
    "svc-bound": {
        "id": "svc-bound",
        "auth": "client_secret_basic",
        "secret": "bound-secret-0123456789",
        "cert": ("client-a.pem", "client-a.key"),
        "bound": True,
    },
    "svc-admin": {
        "id": "svc-admin",
        "auth": "client_secret_basic",
        "secret": "admin-secret-0123456789",
        "roles": "admin,member",
    },
    "svc-array": {
        "id": "svc-array",
        "auth": "client_secret_basic",
        "secret": "array-secret-0123456789",
        "roles": ["member", "reader"],
    },
}
for _c in CLIENTS.values():
    _c.setdefault("roles", _DEFAULT_ROLES)
    _c.setdefault("bound", False)
    _c.setdefault("scope", "api api:read api:write")

ALL_SCOPES = ("api", "api:read", "api:write")


def expected_extra_claims(client_id: str) -> dict[str, Any]:
    """The extra claims the AS puts in the introspection response."""
    return {
        "username": client_id,
        "user_domain": {"id": "default", "name": "Default"},
        "project": {
            "id": f"prj-{client_id}",
            "name": "demo",
            "domain": {"id": "default", "name": "Default"},
        },
        "roles": CLIENTS[client_id]["roles"],
    }


# --------------------------------------------------------------------- PKI
def ensure_pki(directory: str | os.PathLike[str]) -> Path:
    """Create (once) the test PKI in ``directory`` and return it as a Path."""
    out = Path(directory).resolve()
    subprocess.run(["bash", str(MAKE_PKI), str(out)], check=True)
    return out


def ensure_node_deps() -> None:
    """Install tests/as/node_modules with ``npm ci`` if it is missing."""
    if (AS_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm not found; install Node.js 20+ and run: npm ci --prefix tests/as")
    subprocess.run([npm, "ci", "--prefix", str(AS_DIR), "--no-audit", "--no-fund"], check=True)


# ------------------------------------------------------------------ server
@dataclass
class AuthServer:
    process: subprocess.Popen
    pki: Path
    info: dict[str, Any]
    issuer: str = field(init=False)
    token_endpoint: str = field(init=False)
    introspection_endpoint: str = field(init=False)
    revocation_endpoint: str = field(init=False)
    http_base: str | None = field(init=False)
    jwks_uri: str = field(init=False)
    jwt_resource: str = field(init=False)
    ca_file: str = field(init=False)

    def __post_init__(self) -> None:
        self.issuer = self.info["issuer"]
        self.token_endpoint = self.info["token_endpoint"]
        self.introspection_endpoint = self.info["introspection_endpoint"]
        self.revocation_endpoint = self.info["revocation_endpoint"]
        self.http_base = self.info.get("http_base")
        self.jwks_uri = self.info["jwks_uri"]
        self.jwt_resource = self.info["jwt_resource"]
        self.ca_file = str(self.pki / "ca.pem")

    @property
    def port(self) -> int:
        return int(self.info["port"])

    def url(self, path: str) -> str:
        return self.issuer + path

    def stats(self) -> dict[str, dict[str, int]]:
        r = requests.get(self.url("/_stats"), verify=self.ca_file, timeout=10)
        r.raise_for_status()
        return r.json()

    def reset_stats(self) -> None:
        r = requests.post(self.url("/_reset"), verify=self.ca_file, timeout=10)
        r.raise_for_status()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        p = self.process
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for stream in (p.stdin, p.stdout, p.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass

    def __enter__(self) -> AuthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort; never leave a node behind
        try:
            self.stop()
        except Exception:
            pass


def start_as(
    pki_dir: str | os.PathLike[str],
    port: int = 0,
    http_port: int | None = None,
    token_ttl: int = 600,
    delay_ms: int = 0,
    *,
    signing_keys: str | os.PathLike[str] | None = None,
    jwt_alg: str = "RS256",
    dpop_nonce: bool = False,
    store: str | os.PathLike[str] | None = None,
    verbose: bool = False,
    timeout: float = 30.0,
) -> AuthServer:
    """Start tests/as/server.mjs and wait for its READY line.

    ``port=0`` (and ``http_port=0``) lets the server bind a free port itself
    (no pick-then-bind race); the chosen ports are in the returned object.
    ``http_port=None`` means no plain-HTTP listener. ``signing_keys`` is a
    file from :func:`make_signing_keys` (default: one fresh RSA key, kid
    ``as-rs256``); JWT access tokens are signed with its first ``jwt_alg`` key.
    ``dpop_nonce`` makes the token endpoint require a DPoP nonce with every proof.
    ``store`` is a journal file that keeps issued and revoked tokens across a
    restart (``start_as(pki, port=old.port, store=same_file)``); without it
    a restarted AS knows none of the old tokens.
    """
    pki = Path(pki_dir).resolve()
    if not (pki / "done").exists():
        ensure_pki(pki)
    ensure_node_deps()
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node not found on PATH")
    cmd = [
        node,
        str(AS_DIR / "server.mjs"),
        "--pki",
        str(pki),
        "--port",
        str(port),
        "--token-ttl",
        str(token_ttl),
        "--delay-ms",
        str(delay_ms),
        "--exit-on-stdin-eof",
        "--jwt-alg",
        jwt_alg,
    ]
    if signing_keys is not None:
        cmd += ["--signing-keys", str(Path(signing_keys).resolve())]
    if store is not None:
        cmd += ["--store", str(Path(store).resolve())]
    if http_port is not None:
        cmd += ["--http-port", str(http_port)]
    if dpop_nonce:
        cmd.append("--dpop-nonce")
    if verbose:
        cmd.append("--verbose")

    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,  # node exits when this closes (we die or stop())
        stdout=subprocess.PIPE,
        stderr=None if verbose else subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )

    ready: dict[str, Any] = {}
    got = threading.Event()
    stderr_tail: list[str] = []

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not got.is_set() and line.startswith("READY "):
                ready.update(json.loads(line[len("READY ") :]))
                got.set()
        got.set()  # EOF: process ended

    def read_stderr() -> None:
        if proc.stderr is None:
            return
        for line in proc.stderr:
            stderr_tail.append(line)
            del stderr_tail[:-50]

    threading.Thread(target=read_stdout, daemon=True).start()
    err_reader = threading.Thread(target=read_stderr, daemon=True)
    err_reader.start()

    if not got.wait(timeout) or not ready:
        proc.kill()
        proc.wait(timeout=5)
        err_reader.join(timeout=5)  # collect the whole error message
        raise RuntimeError(
            f"authorization server did not become ready within {timeout}s (exit={proc.poll()}):\n{''.join(stderr_tail)}"
        )
    return AuthServer(process=proc, pki=pki, info=ready)


# ------------------------------------------------------------------ client
def form_urlencode(value: str) -> str:
    """application/x-www-form-urlencoded encoding of one value (UTF-8)."""
    return urllib.parse.quote_plus(value, safe="", encoding="utf-8")


def basic_auth_header(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: form-urlencode id and secret, then HTTP Basic."""
    raw = f"{form_urlencode(client_id)}:{form_urlencode(secret)}"
    return "Basic " + base64.b64encode(raw.encode("ascii")).decode("ascii")


def client_assertion(server: AuthServer, client_id: str, lifetime: int = 60) -> str:
    """A client_secret_jwt / private_key_jwt assertion for ``client_id``."""
    c = CLIENTS[client_id]
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": server.issuer,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
    }
    if c["auth"] == "client_secret_jwt":
        key: Any = c["secret"].encode("utf-8")
    elif c["auth"] == "private_key_jwt":
        key = (server.pki / c["key"]).read_bytes()
    else:
        raise ValueError(f"{client_id} does not use a JWT client assertion")
    return jwt.encode(claims, key, algorithm=c["alg"])


def _cert_paths(server: AuthServer, cert: tuple[str, str] | None) -> tuple[str, str] | None:
    if cert is None:
        return None
    return tuple(str(p if Path(p).is_absolute() else server.pki / p) for p in cert)  # type: ignore[return-value]


def client_auth(server: AuthServer, client_id: str) -> tuple[dict[str, str], dict[str, str], tuple[str, str] | None]:
    """(headers, form fields, client cert) authenticating ``client_id``."""
    c = CLIENTS[client_id]
    auth = c["auth"]
    if auth == "client_secret_basic":
        return {"Authorization": basic_auth_header(client_id, c["secret"])}, {}, None
    if auth == "client_secret_post":
        return {}, {"client_id": client_id, "client_secret": c["secret"]}, None
    if auth in ("client_secret_jwt", "private_key_jwt"):
        return (
            {},
            {
                "client_id": client_id,
                "client_assertion_type": JWT_BEARER,
                "client_assertion": client_assertion(server, client_id),
            },
            None,
        )
    if auth == "tls_client_auth":
        return {}, {"client_id": client_id}, _cert_paths(server, c["cert"])
    raise ValueError(f"unknown auth method {auth}")


def token_response(
    server: AuthServer,
    client_id: str,
    scope: str | None = None,
    cert: tuple[str, str] | None = None,
    resource: str | None = None,
    dpop_key: Any = None,
    dpop_alg: str | None = None,
) -> requests.Response:
    """POST a client_credentials request; return the raw response.

    ``dpop_key`` (a ``cryptography`` private key) sends a DPoP proof by that key, for a
    DPoP-bound token; when the AS asks for a nonce (400 ``use_dpop_nonce`` with a
    ``DPoP-Nonce`` header) the request is sent once more with a fresh proof carrying it.
    """
    if cert is None and CLIENTS[client_id]["auth"] != "tls_client_auth" and CLIENTS[client_id]["bound"]:
        cert = CLIENTS[client_id].get("cert")
    nonce = None
    for _ in range(2):
        # Client assertions are single-use: authenticate afresh on the retry.
        headers, data, auth_cert = client_auth(server, client_id)
        data = {"grant_type": "client_credentials", **data}
        if scope is not None:
            data["scope"] = scope
        if resource is not None:
            data["resource"] = resource
        if dpop_key is not None:
            headers["DPoP"] = jwt_tools.dpop_proof(dpop_key, "POST", server.token_endpoint, alg=dpop_alg, nonce=nonce)
        r = requests.post(
            server.token_endpoint,
            data=data,
            headers=headers,
            cert=_cert_paths(server, cert) or auth_cert,
            verify=server.ca_file,
            timeout=30,
        )
        asked = r.status_code == 400 and r.headers.get("DPoP-Nonce") and _error(r) == "use_dpop_nonce"
        if dpop_key is None or nonce is not None or not asked:
            return r
        nonce = r.headers["DPoP-Nonce"]
    return r


def _error(r: requests.Response) -> str | None:
    try:
        return r.json().get("error")
    except ValueError:
        return None


def obtain_token(
    server: AuthServer,
    client_id: str,
    scope: str | None = None,
    cert: tuple[str, str] | None = None,
    resource: str | None = None,
    dpop_key: Any = None,
    dpop_alg: str | None = None,
) -> str:
    """Client-credentials grant for ``client_id``; returns the access token.

    ``cert`` = (cert, key) file names (relative to the PKI dir, or absolute)
    presents a client certificate on the token request (e.g. for svc-bound;
    certificate-bound clients default to their CLIENTS["cert"]).
    ``resource=server.jwt_resource`` gets an RFC 9068 JWT instead of an
    opaque token. ``dpop_key`` gets a DPoP-bound token (see :func:`token_response`).
    """
    r = token_response(
        server, client_id, scope=scope, cert=cert, resource=resource, dpop_key=dpop_key, dpop_alg=dpop_alg
    )
    if r.status_code != 200:
        raise RuntimeError(f"token request for {client_id} failed: {r.status_code} {r.text}")
    body = r.json()
    if body["token_type"] != ("DPoP" if dpop_key is not None else "Bearer"):
        raise RuntimeError(f"token request for {client_id}: unexpected token_type {body['token_type']}")
    return body["access_token"]


def introspect(server: AuthServer, token: str, client_id: str = "svc-post") -> dict[str, Any]:
    """RFC 7662 introspection (authenticating as svc-post by default)."""
    headers, data, cert = client_auth(server, client_id)
    r = requests.post(
        server.introspection_endpoint,
        data={"token": token, **data},
        headers={"Accept": "application/json", **headers},
        cert=cert,
        verify=server.ca_file,
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def revoke(server: AuthServer, token: str, client_id: str | None = None) -> None:
    """RFC 7009 revocation.

    oidc-provider 8.x only lets the client a token was issued to revoke it,
    so by default the owner is looked up by introspection (as svc-post) and
    the revocation request is authenticated as that client. An unknown or
    already inactive token is a no-op, as in RFC 7009.
    """
    if client_id is None:
        info = introspect(server, token)
        if not info.get("active"):
            return
        client_id = info["client_id"]
    headers, data, cert = client_auth(server, client_id)
    r = requests.post(
        server.revocation_endpoint,
        data={"token": token, "token_type_hint": "access_token", **data},
        headers=headers,
        cert=cert,
        verify=server.ca_file,
        timeout=30,
    )
    r.raise_for_status()


# ------------------------------------------------------------ signing keys
def _b64url_uint(n: int, size: int | None = None) -> str:
    raw = n.to_bytes(size or max(1, (n.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_EC_CURVES = {"ES256": ("P-256", "SECP256R1"), "ES384": ("P-384", "SECP384R1"), "ES512": ("P-521", "SECP521R1")}


def private_jwk(key: Any, kid: str, alg: str) -> dict[str, str]:
    """A private ``cryptography`` RSA, EC or Ed25519 key as a JWK."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        n = key.private_numbers()
        pub = n.public_numbers
        fields = {
            "kty": "RSA",
            "n": pub.n,
            "e": pub.e,
            "d": n.d,
            "p": n.p,
            "q": n.q,
            "dp": n.dmp1,
            "dq": n.dmq1,
            "qi": n.iqmp,
        }
        jwk = {k: v if isinstance(v, str) else _b64url_uint(v) for k, v in fields.items()}
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        n = key.private_numbers()
        crv = {c[1]: c[0] for c in _EC_CURVES.values()}[key.curve.name.upper()]
        jwk = {
            "kty": "EC",
            "crv": crv,
            "x": _b64url_uint(n.public_numbers.x, size),
            "y": _b64url_uint(n.public_numbers.y, size),
            "d": _b64url_uint(n.private_value, size),
        }
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        raw = serialization.Encoding.Raw
        d = key.private_bytes(raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        x = key.public_key().public_bytes(raw, serialization.PublicFormat.Raw)
        b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")  # noqa: E731
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(x), "d": b64(d)}
    else:
        raise TypeError(f"unsupported key type {type(key).__name__}")
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def new_private_key(alg: str) -> Any:
    """A fresh ``cryptography`` private key for JWS ``alg``."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if alg[:2] in ("RS", "PS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg in _EC_CURVES:
        return ec.generate_private_key(getattr(ec, _EC_CURVES[alg][1])())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported alg {alg}")


def make_signing_keys(path: str | os.PathLike[str], specs: list[tuple[str, str]]) -> Path:
    """Write ``{"keys": [private JWK, ...]}`` for ``[(kid, alg), ...]`` to ``path``.

    The file is for ``start_as(signing_keys=path)``; it holds private keys,
    so it is created mode 0600. Returns the path.
    """
    out = Path(path)
    keys = [private_jwk(new_private_key(alg), kid, alg) for kid, alg in specs]
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"keys": keys}, f)
    return out


def signing_key(path: str | os.PathLike[str], kid: str) -> Any:
    """The ``cryptography`` private key with ``kid`` from a signing-keys file."""
    for jwk in json.loads(Path(path).read_text())["keys"]:
        if jwk["kid"] == kid:
            return jwt.PyJWK(jwk).key
    raise KeyError(kid)


def thumbprints(server_or_pki: AuthServer | str | os.PathLike[str]) -> dict[str, str]:
    pki = server_or_pki.pki if isinstance(server_or_pki, AuthServer) else Path(server_or_pki)
    return json.loads((pki / "thumbprints.json").read_text())


def _main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="run the tokenward test AS")
    ap.add_argument("--pki", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--http-port", type=int)
    ap.add_argument("--token-ttl", type=int, default=600)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--signing-keys")
    ap.add_argument("--jwt-alg", default="RS256")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    import signal

    def _term(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    pki = ensure_pki(a.pki)
    with start_as(
        pki,
        a.port,
        a.http_port,
        a.token_ttl,
        a.delay_ms,
        signing_keys=a.signing_keys,
        jwt_alg=a.jwt_alg,
        verbose=a.verbose,
    ) as s:
        print(json.dumps(s.info, indent=2), flush=True)
        try:
            s.process.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
