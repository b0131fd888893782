#!/usr/bin/env python3
"""Start a real Keystone (tests/support/keystone_server.py), issue tokens, and run a command
with what tests/c/test_keystone.c needs in its environment:

    TW_KS_AUTH_URL              the versioned identity endpoint (https)
    TW_KS_CAFILE                CA bundle that verifies Keystone
    TW_KS_CERTFILE, TW_KS_KEYFILE   the service certificate Keystone maps (X.509 tokenless)
    TW_KS_PROJECT_NAME, TW_KS_PROJECT_DOMAIN_NAME   the tokenless scope
    TW_KS_USER_TOKEN            alice's project-scoped token
    TW_KS_USER_NAME             alice
    TW_KS_SERVICE_TOKEN         nova's token (role service)

Usage: python3 tests/c/run_against_keystone.py [--pki DIR] -- COMMAND [ARGS...]
Exits with COMMAND's status. Keystone is stopped afterwards in every case.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

import keystone_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pki", help="PKI directory (made if missing; default: tests/.work/pki)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    root = Path(__file__).resolve().parents[2]
    pki = keystone_server.ensure_pki(args.pki or root / "tests" / ".work" / "pki")
    with tempfile.TemporaryDirectory(prefix="tw-c-keystone-") as work:
        with keystone_server.start_keystone(pki, work) as ks:
            opts = ks.middleware_options("v3tokenlessauth")
            env = dict(os.environ)
            env.update(
                TW_KS_AUTH_URL=opts["auth_url"],
                TW_KS_CAFILE=opts["cafile"],
                TW_KS_CERTFILE=opts["certfile"],
                TW_KS_KEYFILE=opts["keyfile"],
                TW_KS_PROJECT_NAME=opts["project_name"],
                TW_KS_PROJECT_DOMAIN_NAME=opts["project_domain_name"],
                TW_KS_USER_TOKEN=ks.token("alice"),
                TW_KS_USER_NAME="alice",
                TW_KS_SERVICE_TOKEN=ks.token("nova"),
            )
            return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
