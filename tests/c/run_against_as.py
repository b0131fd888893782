#!/usr/bin/env python3
"""Start the real test authorization server (tests/as, oidc-provider), obtain tokens, and run
a command with everything the C tests need in its environment:

    TW_ENDPOINT     introspection endpoint (https)
    TW_TOKEN_ENDPOINT  token endpoint (https; svc-post, svc-tls, ... for the token client)
    TW_ISSUER       issuer (used as `audience`)
    TW_CAFILE       CA bundle that verifies the AS
    TW_TOKEN        opaque access token of svc-post (not bound)
    TW_JWT          RFC 9068 JWT access token of svc-post for TW_JWT_RESOURCE
    TW_JWT_RESOURCE the resource (`aud`) of TW_JWT
    TW_BOUND_TOKEN  access token of svc-bound, bound to client-a's certificate
    TW_CERT_A       client-a.pem (the bound certificate)
    TW_CERT_B       client-b.pem (another certificate from the same CA)
    TW_KEY_A        client-a.key (the key of client-a.pem; svc-tls's tls_client_auth)
    TW_PKI          the PKI directory

Usage: python3 tests/c/run_against_as.py [--pki DIR] -- COMMAND [ARGS...]
Exits with COMMAND's status. The AS is stopped afterwards in every case.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

from oidc_as import ensure_pki, obtain_token, start_as


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pki", help="PKI directory (made if missing; default: a temporary one)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    with tempfile.TemporaryDirectory(prefix="tw-c-pki-") as tmp:
        pki = ensure_pki(args.pki or tmp)
        with start_as(pki, http_port=0) as server:
            env = dict(os.environ)
            env.update(
                TW_ENDPOINT=server.info["introspection_endpoint"],
                TW_TOKEN_ENDPOINT=server.info["token_endpoint"],
                TW_ISSUER=server.info["issuer"],
                TW_CAFILE=str(Path(pki) / "ca.pem"),
                TW_TOKEN=obtain_token(server, "svc-post"),
                TW_JWT=obtain_token(server, "svc-post", resource=server.jwt_resource),
                TW_JWT_RESOURCE=server.jwt_resource,
                TW_BOUND_TOKEN=obtain_token(server, "svc-bound", cert=("client-a.pem", "client-a.key")),
                TW_CERT_A=str(Path(pki) / "client-a.pem"),
                TW_CERT_B=str(Path(pki) / "client-b.pem"),
                TW_KEY_A=str(Path(pki) / "client-a.key"),
                TW_PKI=str(pki),
            )
            return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
