"""Test helpers for offline JWT access-token validation (RFC 9068).

* :class:`JwksServer`: a local HTTP server with a settable JWKS at ``/jwks``
  and discovery document, request counters, Cache-Control and failure modes.
* :class:`RecordingServer`: records whether anything fetched from it (for
  ``jku`` / ``x5u`` header attacks).
* :func:`mint`: a compact JWS signed with a ``cryptography`` key, plus
  :func:`alg_none`, :func:`hs256` and :func:`compact` for attack tokens.
* :func:`keycloak_claims`: a Keycloak-shaped access-token payload.
* :func:`public_jwk`, :func:`jwk_thumbprint` (RFC 7638) and :func:`dpop_proof`
  (RFC 9449 proofs for token and resource requests, any member overridable).

Only the standard library and ``cryptography`` are used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

# ------------------------------------------------------------ HTTP servers


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._handle(self)

            def do_POST(self) -> None:
                owner._handle(self)

            def log_message(self, *args: object) -> None:
                pass

        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base_url + path

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def close(self) -> None:
        self._closed.set()  # releases hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JwksServer(_Server):
    """Serves ``jwks`` at ``/jwks`` and, if ``issuer`` is set, a discovery
    document (``issuer``, ``jwks_uri``) at ``/.well-known/openid-configuration``.

    Settable at any time: ``jwks`` (dict), ``issuer`` (str or None: 404),
    ``cache_control`` (header value or None), ``failure`` (None; an int HTTP
    status; ``"hang"``: no answer until ``failure`` changes or :meth:`close`
    (then the connection is dropped); ``"garbage"``: 200
    with a body that is not JSON). ``counts[path]`` counts requests per path
    (any outcome), ``reset_counts()`` zeroes them.
    """

    JWKS_PATH = "/jwks"
    DISCOVERY_PATH = "/.well-known/openid-configuration"

    def __init__(self, jwks: dict[str, Any] | None = None, issuer: str | None = None) -> None:
        self.jwks: dict[str, Any] = jwks if jwks is not None else {"keys": []}
        self.issuer = issuer
        self.cache_control: str | None = None
        self.failure: int | str | None = None
        self.counts: Counter[str] = Counter()
        super().__init__()
        self.jwks_uri = self.url(self.JWKS_PATH)

    def count(self, path: str = JWKS_PATH) -> int:
        with self._lock:
            return self.counts[path]

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?", 1)[0]
        with self._lock:
            self.counts[path] += 1
        failure = self.failure
        headers = {"Content-Type": "application/json"}
        if self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        if failure == "hang":
            while self.failure == "hang" and not self._closed.wait(0.05):
                pass
            return
        if isinstance(failure, int):
            return self._send(req, failure, b'{"error":"failure mode"}', headers)
        if path == self.JWKS_PATH:
            doc: Any = self.jwks
        elif path == self.DISCOVERY_PATH and self.issuer is not None:
            doc = {"issuer": self.issuer, "jwks_uri": self.jwks_uri}
        else:
            return self._send(req, 404, b'{"error":"not_found"}', headers)
        body = b"<html>not json{" if failure == "garbage" else json.dumps(doc).encode()
        self._send(req, 200, body, headers)


class RecordingServer(_Server):
    """Answers every request with ``body`` (default: an empty JWKS) and
    records ``(method, path)`` in ``requests``; ``hit`` tells if any came."""

    def __init__(self, body: bytes = b'{"keys":[]}') -> None:
        self.body = body
        self.requests: list[tuple[str, str]] = []
        super().__init__()

    @property
    def hit(self) -> bool:
        with self._lock:
            return bool(self.requests)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((req.command, req.path))
        self._send(req, 200, self.body, {"Content-Type": "application/json"})


# ------------------------------------------------------------------- JWS


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def compact(header: bytes, payload: bytes, signature: bytes) -> str:
    """Raw compact serialization: each part base64url-encoded as given."""
    return ".".join(b64url(p) for p in (header, payload, signature))


_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def sign(alg: str, signing_input: bytes, key: Any) -> bytes:
    """JWS signature of ``signing_input`` (ECDSA as raw r||s)."""
    if alg.startswith("HS"):
        return hmac.new(key, signing_input, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg == "EdDSA":
        if not isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
            raise TypeError("EdDSA needs an Ed25519/Ed448 private key")
        return key.sign(signing_input)
    digest = _HASHES[alg[2:]]()
    if alg.startswith("RS") and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(signing_input, padding.PKCS1v15(), digest)
    if alg.startswith("PS") and isinstance(key, rsa.RSAPrivateKey):
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
        return key.sign(signing_input, pss, digest)
    if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    raise ValueError(f"cannot sign {alg} with {type(key).__name__}")


def mint(header: dict[str, Any], claims: dict[str, Any], key: Any) -> str:
    """A compact JWS: ``header`` (must hold ``alg``) and ``claims`` as given,
    signed with ``key`` (a ``cryptography`` private key; bytes for HS*)."""
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}".encode("ascii")
    return signing_input.decode("ascii") + "." + b64url(sign(header["alg"], signing_input, key))


def _with_alg(alg: str, header: dict[str, Any] | None) -> dict[str, Any]:
    out = {"alg": alg, **(header or {})}
    out["alg"] = alg  # first member, whatever the caller passed
    return out


def alg_none(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """Unsigned token ``{"alg": "none", ...header}.claims.`` (empty signature)."""
    return compact(_json(_with_alg("none", header)), _json(claims), b"")


def hs256(claims: dict[str, Any], secret: bytes, header: dict[str, Any] | None = None) -> str:
    """HS256 token keyed with ``secret`` (e.g. the victim's public key PEM)."""
    return mint(_with_alg("HS256", header), claims, secret)


# ------------------------------------------------------------------ DPoP


def _uint(n: int, size: int | None = None) -> str:
    return b64url(n.to_bytes(size or max(1, (n.bit_length() + 7) // 8), "big"))


def public_jwk(key: Any) -> dict[str, str]:
    """The public JWK (required members only) of a ``cryptography`` RSA, EC or Ed25519 key."""
    if hasattr(key, "public_key"):
        key = key.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        n = key.public_numbers()
        return {"kty": "RSA", "n": _uint(n.n), "e": _uint(n.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        n = key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _uint(n.x, size), "y": _uint(n.y, size)}
    if isinstance(key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives import serialization

        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    raise TypeError(f"unsupported key type {type(key).__name__}")


_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint (what ``cnf.jkt`` holds)."""
    members = {m: jwk[m] for m in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    return b64url(hashlib.sha256(_json(members)).digest())


def token_hash(token: str) -> str:
    """``ath``: base64url SHA-256 of the access token."""
    return b64url(hashlib.sha256(token.encode("ascii")).digest())


def dpop_proof(
    key: Any,
    htm: str,
    htu: str,
    *,
    token: str | None = None,
    alg: str | None = None,
    nonce: str | None = None,
    iat: float | None = None,
    jti: str | None = None,
    header: dict[str, Any] | None = None,
    claims: dict[str, Any] | None = None,
    signing_key: Any = None,
) -> str:
    """A DPoP proof JWT by ``key`` for ``htm`` ``htu`` (``ath`` when ``token`` is given).

    ``alg`` defaults to ES256 for EC keys, RS256 for RSA, EdDSA for Ed25519. ``header``
    and ``claims`` override or add members (a value of None removes one);
    ``signing_key`` signs with another key than the one in ``jwk`` (HS*: bytes).
    """
    if alg is None:
        alg = {"EC": "ES256", "RSA": "RS256", "OKP": "EdDSA"}[public_jwk(key)["kty"]]
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": alg, "jwk": public_jwk(key)}
    body: dict[str, Any] = {
        "htm": htm,
        "htu": htu,
        "iat": int(time.time()) if iat is None else iat,
        "jti": jti or str(uuid.uuid4()),
    }
    if token is not None:
        body["ath"] = token_hash(token)
    if nonce is not None:
        body["nonce"] = nonce
    for base, edits in ((head, header), (body, claims)):
        for k, v in (edits or {}).items():
            if v is None:
                base.pop(k, None)
            else:
                base[k] = v
    if head.get("alg") == "none":
        return compact(_json(head), _json(body), b"")
    return mint(head, body, key if signing_key is None else signing_key)


# ---------------------------------------------------------------- claims


def keycloak_claims(
    issuer: str,
    *,
    sub: str = "f3b1c2d4-0000-4000-8000-00000000a11c",
    azp: str = "tokenward",
    aud: str | list[str] = "account",
    username: str = "alice",
    roles: list[str] | tuple[str, ...] = ("member", "reader"),
    project: dict[str, Any] | None = None,
    user_domain: dict[str, Any] | None = None,
    lifetime: int = 300,
    now: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A Keycloak-shaped access-token payload (the header is the caller's).

    ``project`` and ``user_domain`` default to the shapes the test AS uses,
    so the same ``mapping_*`` paths apply (roles: ``realm_access.roles``,
    user name: ``preferred_username``). ``extra`` overrides or adds claims.
    """
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "exp": now + lifetime,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "aud": aud,
        "sub": sub,
        "typ": "Bearer",
        "azp": azp,
        "acr": "1",
        "realm_access": {"roles": list(roles)},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        "scope": "openid profile",
        "email_verified": False,
        "preferred_username": username,
        "project": project
        if project is not None
        else {"id": "prj-keycloak", "name": "demo", "domain": {"id": "default", "name": "Default"}},
        "user_domain": user_domain if user_domain is not None else {"id": "default", "name": "Default"},
    }
    claims.update(extra)
    return claims
