"""Serve a real Keystone over HTTPS with gunicorn, as mod_ssl would present it to Keystone.

Two pieces, used by tests/support/keystone_server.py:

* :class:`ModSSLEnviron`, a WSGI wrapper that derives from the TLS peer certificate the
  environ variables mod_ssl's ``SSLOptions +StdEnvVars`` sets and Keystone's X.509 tokenless
  authorization reads: ``SSL_CLIENT_I_DN`` / ``SSL_CLIENT_S_DN`` in mod_ssl's RFC 2253 form
  (:func:`mod_ssl_dn`: most specific RDN first, ``,`` without spaces, OpenSSL short names, raw
  UTF-8), the per-attribute ``SSL_CLIENT_S_DN_CN``, ``_O``, ``_OU``, … (a repeated attribute's
  later values as ``_OU_1``, ``_OU_2``), ``SSL_CLIENT_VERIFY`` (``SUCCESS`` or ``NONE``),
  ``SSL_CLIENT_M_SERIAL``, ``SSL_CLIENT_CERT`` and ``HTTPS``. gunicorn's sync worker puts the
  connection's ``ssl.SSLSocket`` in the environ as ``gunicorn.socket``; with ``cert_reqs =
  CERT_OPTIONAL`` Python's TLS layer has already verified any certificate the client sent
  against ``ca_certs`` (a bad one fails the handshake, like ``SSLVerifyClient optional``), so a
  certificate seen here is a verified one. Any ``SSL_*`` key already in the environ is dropped
  first, so nothing a client sends can pose as one.

* ``python keystone_wsgi.py serve …``: the launcher. It imports Keystone once, binds the
  listening socket (port 0: the kernel picks it, no race), runs ``keystone-manage db_sync``,
  ``fernet_setup``, ``credential_setup`` and ``bootstrap`` (public, internal and admin identity
  endpoints at the bound port) each in a forked child of that process (the import is paid once),
  then runs gunicorn in-process on the bound socket: sync workers (Keystone is not thread-safe
  within a process), TLS with optional client certificates. The worker loads Keystone with an
  empty argv for oslo.config (it would otherwise parse the launcher's arguments) and prints
  ``READY {"port": …, "url": …, "pid": …}`` on stdout when it can answer. The launcher exits
  when its stdin closes, so a test run that dies leaves no Keystone behind.

Only the standard library, ``cryptography``, gunicorn and keystone are used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
from typing import Any, Callable, Iterable

from cryptography import x509
from cryptography.x509.oid import NameOID

# OpenSSL's short names (OBJ_nid2sn) for the attributes a certificate name usually holds; an
# attribute not listed here is printed as OpenSSL prints one it has no name for: the dotted OID
# and the value's DER in hex (XN_FLAG_DUMP_UNKNOWN_FIELDS).
_SHORT_NAMES = {
    NameOID.COMMON_NAME: "CN",
    NameOID.COUNTRY_NAME: "C",
    NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.STREET_ADDRESS: "street",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.SURNAME: "SN",
    NameOID.GIVEN_NAME: "GN",
    NameOID.TITLE: "title",
    NameOID.INITIALS: "initials",
    NameOID.GENERATION_QUALIFIER: "generationQualifier",
    NameOID.X500_UNIQUE_IDENTIFIER: "x500UniqueIdentifier",
    NameOID.DN_QUALIFIER: "dnQualifier",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.USER_ID: "UID",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.JURISDICTION_LOCALITY_NAME: "jurisdictionL",
    NameOID.JURISDICTION_STATE_OR_PROVINCE_NAME: "jurisdictionST",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.POSTAL_ADDRESS: "postalAddress",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    x509.ObjectIdentifier("2.5.4.13"): "description",
    x509.ObjectIdentifier("2.5.4.41"): "name",
}

# mod_ssl's per-attribute variables (SSL_CLIENT_S_DN_<tag>): its table of tags, in its order.
_MOD_SSL_TAGS = {
    NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.LOCALITY_NAME: "L",
    NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.COMMON_NAME: "CN",
    NameOID.TITLE: "T",
    NameOID.INITIALS: "I",
    NameOID.GIVEN_NAME: "G",
    NameOID.SURNAME: "S",
    x509.ObjectIdentifier("2.5.4.13"): "D",
    NameOID.USER_ID: "UID",
    NameOID.EMAIL_ADDRESS: "Email",
}

_RFC2253_SPECIALS = set(',+"\\<>;')

# gunicorn's access log, one request a line: method, path, status, seconds, "user agent"
ACCESS_LOG_FORMAT = '%(m)s %(U)s %(s)s %(L)s "%(a)s"'


def _escape_ctrl(ch: str) -> str:
    """OpenSSL's ASN1_STRFLGS_ESC_CTRL: a control character as ``\\XX``."""
    return f"\\{ord(ch):02X}" if ord(ch) < 0x20 or ord(ch) == 0x7F else ch


def _escape_rfc2253(value: str) -> str:
    """A value as OpenSSL prints it with XN_FLAG_RFC2253 less ASN1_STRFLGS_ESC_MSB (mod_ssl)."""
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        if ch in _RFC2253_SPECIALS or (i == 0 and ch in "# ") or (i == last and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(_escape_ctrl(ch))
    return "".join(out)


def _attr_value(attr: x509.NameAttribute) -> str:
    v = attr.value
    return v if isinstance(v, str) else v.decode("utf-8", "replace")


def _der_hex(attr: x509.NameAttribute) -> str:
    """``#`` and the hex DER of the value: OpenSSL's dump of an attribute type it does not know."""
    tag = attr._type.value  # the ASN.1 string type the value was encoded with
    raw = attr.value if isinstance(attr.value, bytes) else attr.value.encode(_STRING_CODECS.get(tag, "utf-8"))
    n = len(raw)
    size = (n.bit_length() + 7) // 8
    length = bytes([n]) if n < 0x80 else bytes([0x80 | size]) + n.to_bytes(size, "big")
    return "#" + (bytes([tag]) + length + raw).hex().upper()


_STRING_CODECS = {30: "utf-16-be", 28: "utf-32-be"}  # BMPString, UniversalString


def mod_ssl_dn(name: x509.Name) -> str:
    """The DN string mod_ssl (≥ 2.3.11, default options) puts in ``SSL_CLIENT_I_DN``/``_S_DN``.

    RDNs most specific first, separated by ``,`` with no spaces; the attributes of a multi-valued
    RDN joined by ``+`` (in reverse order too, as OpenSSL walks the entries backwards); OpenSSL
    short names (``emailAddress``, never ``E``; an unknown type as ``OID=#hexDER``); RFC 2253 escaping of ``,+"\\<>;``, of a leading
    ``#`` or space and a trailing space, control characters as ``\\XX``; non-ASCII left as UTF-8.
    """
    rdns = []
    for rdn in reversed(list(name.rdns)):
        parts = []
        for a in reversed(list(rdn)):
            short = _SHORT_NAMES.get(a.oid)
            if short is None:
                parts.append(f"{a.oid.dotted_string}={_der_hex(a)}")
            else:
                parts.append(f"{short}={_escape_rfc2253(_attr_value(a))}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def mod_ssl_dn_components(name: x509.Name, prefix: str) -> dict[str, str]:
    """mod_ssl's ``<prefix><tag>`` variables: the first value of each attribute as ``<tag>``, a
    later one as ``<tag>_1``, ``<tag>_2``, … (certificate order), control characters escaped."""
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    for attr in name:  # forward (least specific first), as mod_ssl walks X509_NAME
        tag = _MOD_SSL_TAGS.get(attr.oid)
        if tag is None:
            continue
        n = seen.get(tag)
        key = prefix + tag if n is None else f"{prefix}{tag}_{n + 1}"
        seen[tag] = 0 if n is None else n + 1
        out[key] = "".join(_escape_ctrl(c) for c in _attr_value(attr))
    return out


def issuer_idp_id(issuer_dn: str) -> str:
    """Keystone's identity provider id for a trusted issuer: SHA-256 hex of the exact string."""
    return hashlib.sha256(issuer_dn.encode("utf-8")).hexdigest()


def mod_ssl_variables(cert_der: bytes | None) -> dict[str, str]:
    """The ``SSL_CLIENT_*`` variables for a verified peer certificate (``None``: none sent)."""
    if cert_der is None:
        return {"SSL_CLIENT_VERIFY": "NONE"}
    cert = x509.load_der_x509_certificate(cert_der)
    env = {
        "SSL_CLIENT_VERIFY": "SUCCESS",
        "SSL_CLIENT_S_DN": mod_ssl_dn(cert.subject),
        "SSL_CLIENT_I_DN": mod_ssl_dn(cert.issuer),
        "SSL_CLIENT_M_SERIAL": f"{cert.serial_number:X}",
        "SSL_CLIENT_M_VERSION": str(cert.version.value + 1),
        "SSL_CLIENT_CERT": ssl.DER_cert_to_PEM_cert(cert_der),
    }
    env.update(mod_ssl_dn_components(cert.subject, "SSL_CLIENT_S_DN_"))
    env.update(mod_ssl_dn_components(cert.issuer, "SSL_CLIENT_I_DN_"))
    return env


class ModSSLEnviron:
    """WSGI wrapper: mod_ssl-style ``SSL_*`` variables from gunicorn's TLS connection."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        for key in [k for k in environ if k.startswith("SSL_")]:
            del environ[key]
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, ssl.SSLSocket):
            environ["HTTPS"] = "on"
            environ["SSL_PROTOCOL"] = sock.version() or ""
            cipher = sock.cipher()
            if cipher:
                environ["SSL_CIPHER"] = cipher[0]
            environ.update(mod_ssl_variables(sock.getpeercert(binary_form=True)))
        return self.app(environ, start_response)


def load_keystone(config_file: str) -> ModSSLEnviron:
    """Keystone's WSGI application (configured from ``config_file``), wrapped."""
    os.environ["OS_KEYSTONE_CONFIG_FILES"] = config_file
    os.environ.pop("OS_KEYSTONE_CONFIG_DIR", None)
    # oslo.config parses sys.argv[1:] when Keystone configures itself: give it an empty one.
    saved, sys.argv[1:] = sys.argv[1:], []
    try:
        from keystone.server import wsgi

        app = wsgi.initialize_public_application()
    finally:
        sys.argv[1:] = saved
    return ModSSLEnviron(app)


# ------------------------------------------------------------------ launcher
def _manage(config_file: str, *args: str) -> None:
    """``keystone-manage --config-file F ARGS`` in a forked child (Keystone already imported)."""
    sys.stdout.flush()
    sys.stderr.flush()
    t0, c0 = time.monotonic(), os.times()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            from keystone.cmd import cli

            cli.main(argv=["keystone-manage", "--config-file", config_file, *args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    c1 = os.times()
    cpu = c1.children_user + c1.children_system - c0.children_user - c0.children_system
    print(f"keystone-manage {args[0]}: {time.monotonic() - t0:.2f} s ({cpu:.2f} s CPU)", file=sys.stderr, flush=True)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"keystone-manage {args[0]} failed (exit {os.waitstatus_to_exitcode(status)})")


def _exit_on_stdin_eof() -> None:
    def watch() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGINT)  # gunicorn's quick shutdown: workers stop at once

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


def _bind(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(128)
    return listener


def _run_gunicorn(
    a: argparse.Namespace, listener: socket.socket, load: Callable[[], Any], ready: dict[str, Any], t0: float
) -> None:
    """gunicorn (sync workers, TLS, optional client certificates) on ``listener``, in-process."""
    import gunicorn.app.base

    def post_worker_init(worker: Any) -> None:
        cpu = time.process_time()
        print(f"worker ready {time.monotonic() - t0:.2f} s after start ({cpu:.2f} s CPU)", file=sys.stderr, flush=True)
        print("READY " + json.dumps({**ready, "pid": os.getpid()}), flush=True)

    def worker_exit(server: Any, worker: Any) -> None:
        # In the worker (gunicorn calls this in the arbiter too): leave at once. Keystone's
        # interpreter shutdown can wait on threads until the arbiter's SIGKILL, seconds later.
        if os.getpid() == worker.pid:
            import logging

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    class Server(gunicorn.app.base.BaseApplication):
        def load_config(self) -> None:
            settings = {
                "bind": [f"fd://{listener.fileno()}"],
                "workers": a.workers,
                "worker_class": "sync",
                "certfile": a.certfile,
                "keyfile": a.keyfile,
                "ca_certs": a.ca_certs,
                "cert_reqs": ssl.CERT_OPTIONAL if a.ca_certs else ssl.CERT_NONE,
                "timeout": 120,
                "graceful_timeout": 3,
                "post_worker_init": post_worker_init,
                "worker_exit": worker_exit,
                "errorlog": a.gunicorn_log,
                "accesslog": a.access_log,
                "access_log_format": ACCESS_LOG_FORMAT,
                "loglevel": "info",
                "proc_name": "tw-keystone",
                "control_socket_disable": True,  # gunicorn >= 24 would share ~/.gunicorn/gunicorn.ctl
            }
            for k, v in settings.items():
                if v is not None:
                    self.cfg.set(k, v)

        def load(self) -> Any:
            return load()

    _exit_on_stdin_eof()
    Server().run()


def serve(a: argparse.Namespace) -> int:
    """Set Keystone up (keystone-manage) and serve it."""
    import grp
    import pwd

    t0 = time.monotonic()
    import keystone.cmd.cli  # noqa: F401  (imported once; the forked children share it)

    print(f"import keystone: {time.monotonic() - t0:.2f} s", file=sys.stderr, flush=True)
    listener = _bind(a.host, a.port)
    port = listener.getsockname()[1]
    url = f"https://{a.host}:{port}"

    who = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name if a.group is None else a.group
    _manage(a.config_file, "db_sync")
    _manage(a.config_file, "fernet_setup", "--keystone-user", who, "--keystone-group", group)
    _manage(a.config_file, "credential_setup", "--keystone-user", who, "--keystone-group", group)
    # The admin password comes in OS_BOOTSTRAP_PASSWORD (environment), never on a command line.
    # Public, internal (keystonemiddleware's default interface) and admin endpoints: all `url`.
    bootstrap = ["bootstrap", "--bootstrap-username", "admin", "--bootstrap-project-name", "admin"]
    bootstrap += ["--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone"]
    bootstrap += ["--bootstrap-region-id", a.region]
    for interface in ("admin", "public", "internal"):
        bootstrap += [f"--bootstrap-{interface}-url", url]
    _manage(a.config_file, *bootstrap)
    os.environ.pop("OS_BOOTSTRAP_PASSWORD", None)

    config_file = a.config_file
    _run_gunicorn(a, listener, lambda: load_keystone(config_file), {"port": port, "url": url}, t0)
    return 0


def echo_ssl_environ(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answers with the ``SSL_*``, ``HTTPS`` and ``HTTP_*`` keys of the environ, as JSON."""
    seen = {k: v for k, v in environ.items() if isinstance(v, str) and k.startswith(("SSL_", "HTTPS", "HTTP_"))}
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def echo(a: argparse.Namespace) -> int:
    """Serve :func:`echo_ssl_environ` behind :class:`ModSSLEnviron` (the wrapper's self-check)."""
    t0 = time.monotonic()
    listener = _bind(a.host, a.port)
    port = listener.getsockname()[1]
    ready = {"port": port, "url": f"https://{a.host}:{port}"}
    _run_gunicorn(a, listener, lambda: ModSSLEnviron(echo_ssl_environ), ready, t0)
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="serve a real Keystone over HTTPS (tokenward tests)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_text in (
        ("serve", "keystone-manage setup, then Keystone in gunicorn on a bound socket"),
        ("echo", "the SSL_* environ the wrapper makes, as JSON, in gunicorn"),
    ):
        s = sub.add_parser(name, help=help_text)
        if name == "serve":
            s.add_argument("--config-file", required=True)
            s.add_argument("--region", default="RegionOne")
            s.add_argument("--group", help="group owning the key repositories (default: the process's group)")
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--port", type=int, default=0)
        s.add_argument("--certfile", required=True)
        s.add_argument("--keyfile", required=True)
        s.add_argument("--ca-certs", help="client CAs; with it, client certificates are optional and verified")
        s.add_argument("--workers", type=int, default=1)
        s.add_argument("--gunicorn-log")
        s.add_argument("--access-log")
    a = ap.parse_args(argv)
    return serve(a) if a.cmd == "serve" else echo(a)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
