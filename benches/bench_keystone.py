#!/usr/bin/env python3
"""tokenward.auth_token vs keystonemiddleware 13.0.1 auth_token on one real Keystone.

A Keystone is started once (tests/support/keystone_server.py: HTTPS, X.509 tokenless, SQLite,
its in-process cache); both filters are configured the same way (v3tokenlessauth with the
service certificate, no memcached) around a trivial WSGI app and called directly with a
realistic environ. Interleaved rounds, the implementation that goes first alternating:

  hit    the same project-scoped token, already cached
  miss   a new token on each call (one validation at Keystone each)
  bare   the floor for miss: GET /v3/auth/tokens on a keep-alive TLS connection with the same
         certificate, scope headers and X-Subject-Token (http.client), body read and parsed

With ``--c-bench PATH`` (tests/c/bench_keystone.c built against the release library, as
scripts/bench-keystone.sh does) the C door's hit is measured on the same Keystone too.
Targets (issue 14): hit >= 30x faster than keystonemiddleware, miss within 1.2x of bare.

    python benches/bench_keystone.py [--rounds R] [--hits N] [--misses M] [--c-bench PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Callable
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

import keystone_server  # noqa: E402
from tokenward import auth_token  # noqa: E402


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def environ_for(token: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/v2.1/servers",
        "QUERY_STRING": "",
        "SERVER_NAME": "api.example",
        "SERVER_PORT": "8774",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "api.example:8774",
        "HTTP_ACCEPT": "application/json",
        "HTTP_USER_AGENT": "python-novaclient",
        "HTTP_X_AUTH_TOKEN": token,
    }


def timed_call(filt: Any, token: str) -> int:
    environ = environ_for(token)
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    t0 = perf_counter_ns()
    b"".join(filt(environ, start_response))
    took = perf_counter_ns() - t0
    if not status or not status[0].startswith("200"):
        raise RuntimeError(f"refused: {status}")
    return took


class Bare:
    """GET /v3/auth/tokens as tokenless auth sends it, on one keep-alive TLS connection."""

    def __init__(self, options: dict[str, str]) -> None:
        url = urlsplit(options["auth_url"])
        ctx = ssl.create_default_context(cafile=options["cafile"])
        ctx.load_cert_chain(options["certfile"], options["keyfile"])
        self.conn = http.client.HTTPSConnection(url.hostname, url.port, context=ctx, timeout=30)
        self.path = url.path.rstrip("/") + "/auth/tokens"
        self.headers = {
            "X-Project-Name": options["project_name"],
            "X-Project-Domain-Name": options["project_domain_name"],
            "OpenStack-Identity-Access-Rules": "1",
            "Accept": "application/json",
        }

    def __call__(self, token: str) -> int:
        t0 = perf_counter_ns()
        self.conn.request("GET", self.path, headers={**self.headers, "X-Subject-Token": token})
        resp = self.conn.getresponse()
        body = resp.read()
        json.loads(body)
        took = perf_counter_ns() - t0
        if resp.status != 200:
            raise RuntimeError(f"bare validation: {resp.status}")
        return took


def us(values: list[int]) -> tuple[float, float]:
    """Median and p99, in microseconds."""
    ordered = sorted(values)
    return statistics.median(ordered) / 1000.0, ordered[len(ordered) * 99 // 100] / 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hits", type=int, default=20000, help="hit calls per implementation and round")
    parser.add_argument("--misses", type=int, default=20, help="miss calls per implementation and round")
    parser.add_argument("--c-bench", help="tests/c/bench_keystone.c, built")
    parser.add_argument("--c-iterations", type=int, default=200000)
    parser.add_argument("--pki", default=str(ROOT / "tests" / ".work" / "pki"))
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pki = keystone_server.ensure_pki(args.pki)
    with tempfile.TemporaryDirectory(prefix="tw-bench-keystone-") as work:
        with keystone_server.start_keystone(pki, work) as ks:
            options = ks.middleware_options("v3tokenlessauth")
            filters = {
                "tokenward": auth_token.filter_factory({}, **options)(app),
                "keystonemiddleware": keystone_server.keystonemiddleware_filter(app, options, Path(work) / "ksm.conf"),
            }
            bare = Bare(options)
            hit_token = ks.token("alice")
            for filt in filters.values():
                timed_call(filt, hit_token)  # the miss that caches it
            hits: dict[str, list[int]] = {k: [] for k in filters}
            misses: dict[str, list[int]] = {k: [] for k in (*filters, "bare")}
            order = list(filters)
            for r in range(args.rounds):
                for name in order if r % 2 == 0 else reversed(order):
                    filt = filters[name]
                    hits[name].extend(timed_call(filt, hit_token) for _ in range(args.hits))
                tokens = {k: [ks.token("alice") for _ in range(args.misses)] for k in misses}
                for i in range(args.misses):
                    for name in ("tokenward", "bare", "keystonemiddleware")[:: 1 if (r + i) % 2 == 0 else -1]:
                        token = tokens[name][i]
                        misses[name].append(bare(token) if name == "bare" else timed_call(filters[name], token))
            rows = [
                ("hit, tokenward (Python door)", us(hits["tokenward"])),
                ("hit, keystonemiddleware", us(hits["keystonemiddleware"])),
                ("miss, tokenward", us(misses["tokenward"])),
                ("miss, keystonemiddleware", us(misses["keystonemiddleware"])),
                ("bare validation (http.client)", us(misses["bare"])),
            ]
            c_lines = ""
            if args.c_bench:
                env = dict(os.environ)
                env.update(
                    TW_KS_AUTH_URL=options["auth_url"],
                    TW_KS_CAFILE=options["cafile"],
                    TW_KS_CERTFILE=options["certfile"],
                    TW_KS_KEYFILE=options["keyfile"],
                    TW_KS_PROJECT_NAME=options["project_name"],
                    TW_KS_PROJECT_DOMAIN_NAME=options["project_domain_name"],
                    TW_KS_USER_TOKEN=ks.token("alice"),
                    TW_KS_SERVICE_TOKEN=ks.token("nova"),
                )
                c_lines = subprocess.run(
                    [args.c_bench, str(args.c_iterations)], env=env, check=True, capture_output=True, text=True
                ).stdout
    hit_ratio = rows[1][1][0] / rows[0][1][0]
    miss_ratio = rows[2][1][0] / rows[4][1][0]
    from importlib.metadata import version

    print(
        f"keystone {version('keystone')}, keystonemiddleware {version('keystonemiddleware')}, "
        f"tokenward {version('tokenward')}: {args.rounds} rounds of {args.hits} hits and {args.misses} misses each"
    )
    print("| case | median us | p99 us |")
    print("|---|---|---|")
    for label, (median, p99) in rows:
        print(f"| {label} | {median:.3f} | {p99:.3f} |")
    for line in c_lines.splitlines():
        print(line)
    print(f"hit: tokenward {hit_ratio:.1f}x faster than keystonemiddleware (target >= 30x)")
    print(f"miss: tokenward / bare validation = {miss_ratio:.3f} (target <= 1.2)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "hit_ratio": hit_ratio, "miss_ratio": miss_ratio, "c": c_lines}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
