#!/usr/bin/env python3
"""Offline JWT validation (issue 10): per-call latency, one run, one table. Run by
scripts/bench-jwt.sh, which builds what this needs.

Columns: first sight of a JWT (a token never seen: one signature verification) and cache hit,
for RS256 (2048-bit) and ES256; then an introspection miss and hit against the real test AS
(tests/as, oidc-provider, opaque tokens, ``validation = introspection``) for scale.

Rows:
  floor            aws-lc-rs ``ParsedPublicKey`` verify of the token's signature, key parsed
                   once (what the core does), nothing else       benches/jwt_floor.rs
  jsonwebtoken 11  ``decode`` with a key made once (re-parsed by each call)   (same binary)
  core (Rust)      ``Authenticator::authenticate``, no door                    (same binary)
                   (and, for the ratio line only, the hit of the same token cached through
                   ``validation = introspection``: row ``core-introspected``)
  C                ``tokenward_authenticate`` + ``tokenward_verdict_free``, release library
                   installed with its pkg-config file               tests/c/bench_jwt.c
  Python native    ``tokenward._native.Authenticator.authenticate()``
  Python WSGI      the paste filter's WSGI call (``filter_factory``), as bench_filter.py
  PyJWT            ``jwt.decode(token, PyJWK, algorithms=[alg], audience=, issuer=)``, the
                   PyJWK made once: what a Python user writes (no cache, no mapping)

Tokens: Keycloak-shaped access tokens (``jwt_tools.keycloak_claims``, ~1 KB), minted in
advance; keys served by ``jwt_tools.JwksServer`` in a background process (``jwks_uri``).
First sight includes the heap growth of a cache that is filling (every new verdict is kept,
~5 KB each from C, measured by RSS; the page faults are ~1-2 µs of a C first sight); with a full cache,
whose evictions free memory for the next verdict, it is that much less.
Each pass builds new authenticators (empty caches) and runs every row; passes interleave
the rows so that drift on a busy machine hits them alike. A cell is the median over passes
of each pass's median (µs); p99 likewise in ``--json``. A ratio is taken per pass, then its
median over passes.

    python benches/bench_jwt.py --c-bench BIN --floor-bench BIN [--tokens N] [--hits N]
        [--misses N] [--passes N] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "benches"))

import jwt  # noqa: E402  (PyJWT)
import jwt_tools  # noqa: E402
import oidc_as  # noqa: E402
from bench_filter import timed_calls, trivial_app  # noqa: E402

ISSUER = "https://idp.bench.example/realms/openstack"
AUDIENCE = "urn:tokenward:api"
ALGS = ("RS256", "ES256")
INTROSPECTION = "introspection"
MAPPING = {
    "mapping_user_id": "sub",
    "mapping_user_name": "preferred_username",
    "mapping_project_id": "project.id",
    "mapping_project_name": "project.name",
    "mapping_project_domain_id": "project.domain.id",
    "mapping_project_domain_name": "project.domain.name",
    "mapping_user_domain_id": "user_domain.id",
    "mapping_user_domain_name": "user_domain.name",
    "mapping_roles": "realm_access.roles",
}
ROWS = (
    ("floor", "floor: aws-lc-rs verify only"),
    ("jsonwebtoken", "jsonwebtoken 11 decode (Rust)"),
    ("core", "tokenward core (Rust, no door)"),
    ("c", "tokenward C"),
    ("native", "tokenward Python _native.authenticate()"),
    ("wsgi", "tokenward Python WSGI filter call"),
    ("pyjwt", "PyJWT 2 jwt.decode (key preloaded)"),
)
COLUMNS = [(alg, kind) for alg in ALGS for kind in ("first", "hit")] + [
    (INTROSPECTION, "first"),
    (INTROSPECTION, "hit"),
]

# (row, alg, kind) -> [(median_ns, p99_ns), ...] over passes
Results = dict[tuple[str, str, str], list[tuple[float, float]]]


def summary(ns: list[int]) -> tuple[float, float]:
    s = sorted(ns)
    return float(statistics.median(s)), float(s[min(len(s) - 1, len(s) * 99 // 100)])


def per_item(call: Callable[[Any], Any], items: list[Any]) -> list[int]:
    gc.collect()
    out = []
    append = out.append
    for item in items:
        t0 = perf_counter_ns()
        call(item)
        append(perf_counter_ns() - t0)
    return out


# ------------------------------------------------------------------ fixtures


def public_jwk(private: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in private.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}


def mint_tokens(work: Path, count: int) -> dict[str, Any]:
    """Keys, ``count + 1`` tokens per algorithm (the first for warm-up), the key set."""
    keys, jwks = {}, []
    for alg in ALGS:
        key = oidc_as.new_private_key(alg)
        kid = f"bench-{alg.lower()}"
        jwks.append(public_jwk(oidc_as.private_jwk(key, kid, alg)))
        header = {"alg": alg, "typ": "JWT", "kid": kid}
        tokens = [
            jwt_tools.mint(header, jwt_tools.keycloak_claims(ISSUER, aud=[AUDIENCE, "account"], lifetime=7200), key)
            for _ in range(count + 1)
        ]
        (work / f"tokens-{alg}.txt").write_text("\n".join(tokens) + "\n")
        keys[alg] = tokens
    (work / "jwks.json").write_text(json.dumps({"keys": jwks}))
    return keys


_JWKS_SERVER = """
import sys, json
sys.path.insert(0, sys.argv[1])
from jwt_tools import JwksServer
server = JwksServer(json.load(open(sys.argv[2])))
print(server.jwks_uri, flush=True)
sys.stdin.read()  # until the parent closes the pipe
server.close()
"""


def start_jwks_server(work: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _JWKS_SERVER, str(ROOT / "tests" / "support"), str(work / "jwks.json")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    uri = proc.stdout.readline().strip()
    if not uri.startswith("http://"):
        proc.kill()
        raise RuntimeError("the JWKS server did not start")
    return proc, uri


def write_options(path: Path, options: dict[str, str]) -> None:
    path.write_text("".join(f"{k} = {v}\n" for k, v in options.items()))


def jwt_options(jwks_uri: str) -> dict[str, str]:
    return {
        "validation": "jwt",
        "token_issuer": ISSUER,
        "token_audience": AUDIENCE,
        "jwks_uri": jwks_uri,
        **MAPPING,
    }


def introspection_options(server: oidc_as.AuthServer) -> dict[str, str]:
    return {
        "introspect_endpoint": server.introspection_endpoint,
        "audience": server.issuer,
        "client_id": "svc-post",
        "client_secret": oidc_as.CLIENTS["svc-post"]["secret"],
        "auth_method": "client_secret_post",
        "cafile": server.ca_file,
        **oidc_as_mapping(),
    }


def oidc_as_mapping() -> dict[str, str]:
    """The mapping of the test AS's introspection answers (as tests/c/tw_test.h)."""
    return {
        "mapping_project_id": "project.id",
        "mapping_project_name": "project.name",
        "mapping_project_domain_id": "project.domain.id",
        "mapping_project_domain_name": "project.domain.name",
        "mapping_user_domain_id": "user_domain.id",
        "mapping_user_domain_name": "user_domain.name",
        "mapping_roles": "roles",
    }


# ------------------------------------------------------------------ rows


def run_binary(cmd: list[str], results: Results, row_override: str | None = None) -> None:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if parts[:1] != ["RESULT"]:
            continue
        row, alg, kind, median, p99 = parts[1], parts[2], parts[3], float(parts[4]), float(parts[5])
        results[(row_override or row, alg, kind)].append((median, p99))


def python_rows(
    case: str, options: dict[str, str], tokens: list[str], hits: int, results: Results, wsgi_only: bool = False
) -> None:
    """The Python door, first sight then hits, through _native and through the WSGI filter."""
    from tokenward import _native
    from tokenward.external_oauth2_token import filter_factory

    headers = [f"Bearer {t}" for t in tokens]
    if not wsgi_only:
        native = _native.Authenticator(options)
        assert native.authenticate(headers[0]).allowed, "warm-up refused"

        def check(h: str, authenticate: Any = native.authenticate) -> None:
            if not authenticate(h).allowed:
                raise RuntimeError(f"{case}: refused")

        results[("native", case, "first")].append(summary(per_item(check, headers[1:])))
        results[("native", case, "hit")].append(summary(per_item(check, [headers[1]] * hits)))
    app = filter_factory({}, **options)(trivial_app)
    warm: list[int] = []
    timed_calls(app, tokens[:1], warm)
    gc.collect()
    first: list[int] = []
    timed_calls(app, tokens[1:], first)
    results[("wsgi", case, "first")].append(summary(first))
    gc.collect()
    hit: list[int] = []
    timed_calls(app, [tokens[1]] * hits, hit)
    results[("wsgi", case, "hit")].append(summary(hit))


def pyjwt_row(alg: str, jwk: dict[str, str], tokens: list[str], results: Results) -> None:
    key = jwt.PyJWK(jwk)

    def decode(t: str) -> None:
        jwt.decode(t, key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

    decode(tokens[0])
    results[("pyjwt", alg, "first")].append(summary(per_item(decode, tokens[1:])))


# ------------------------------------------------------------------ table


def cell(results: Results, key: tuple[str, str, str], index: int = 0) -> float | None:
    runs = results.get(key)
    return statistics.median(r[index] for r in runs) / 1000.0 if runs else None


def fmt(v: float | None) -> str:
    return "—" if v is None else (f"{v:.1f}" if v >= 10 else f"{v:.2f}")


def table(results: Results) -> str:
    head = ["case (median µs per call)"] + [
        f"{'introspection' if a == INTROSPECTION else a} {'miss' if (a == INTROSPECTION and k == 'first') else ('first sight' if k == 'first' else 'hit')}"
        for a, k in COLUMNS
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * len(COLUMNS)) + "|"]
    for row, label in ROWS:
        cells = [fmt(cell(results, (row, a, k))) for a, k in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(results: Results) -> list[str]:
    def r(a: tuple[str, str, str], b: tuple[str, str, str]) -> str:
        # Per pass (the two were measured seconds apart), then the median over passes.
        x, y = results.get(a), results.get(b)
        if not x or not y:
            return "—"
        return f"{statistics.median(p[0] / q[0] for p, q in zip(x, y)):.2f}"

    out = []
    for alg in ALGS:
        out.append(
            f"{alg}: C first sight / floor = {r(('c', alg, 'first'), ('floor', alg, 'first'))} (target ≤ 1.3); "
            f"core / floor = {r(('core', alg, 'first'), ('floor', alg, 'first'))}; "
            f"jsonwebtoken / floor = {r(('jsonwebtoken', alg, 'first'), ('floor', alg, 'first'))}"
        )
        out.append(
            f"{alg}: PyJWT / Python first sight = {r(('pyjwt', alg, 'first'), ('wsgi', alg, 'first'))} (WSGI), "
            f"{r(('pyjwt', alg, 'first'), ('native', alg, 'first'))} (_native) (target ≥ 3)"
        )
        out.append(
            f"{alg}: JWT hit / introspection hit of the same token (core) = "
            f"{r(('core', alg, 'hit'), ('core-introspected', alg, 'hit'))} (target: as fast)"
        )
        out.append(
            f"{alg}: JWT hit / introspection hit of a 43 B opaque token = {r(('c', alg, 'hit'), ('c', INTROSPECTION, 'hit'))} (C), "
            f"{r(('wsgi', alg, 'hit'), ('wsgi', INTROSPECTION, 'hit'))} (WSGI); "
            f"introspection miss / JWT first sight = {r(('c', INTROSPECTION, 'first'), ('c', alg, 'first'))} (C), "
            f"{r(('wsgi', INTROSPECTION, 'first'), ('wsgi', alg, 'first'))} (WSGI)"
        )
    return out


def pieces(results: Results) -> list[str]:
    out = []
    for alg in ALGS:
        parts = {p: cell(results, (f"piece:{p}", alg, "first")) for p in ("parse", "verify", "claims")}
        core, c = cell(results, ("core", alg, "first")), cell(results, ("c", alg, "first"))
        if None in parts.values() or core is None:
            continue
        rest = core - sum(v for v in parts.values() if v is not None)
        door = f", C door on top of the core {fmt(c - core)}" if c is not None else ""
        out.append(
            f"{alg} first sight in the core: header+base64 {fmt(parts['parse'])}, signature {fmt(parts['verify'])}, "
            f"claims JSON {fmt(parts['claims'])}, the rest (key lookup, claims checks, mapping, cache insert, "
            f"verdict) {fmt(rest)}{door} µs"
        )
    return out


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c-bench", required=True, help="tests/c/bench_jwt.c, built")
    ap.add_argument("--floor-bench", required=True, help="the jwt_floor bench binary")
    ap.add_argument("--tokens", type=int, default=2000, help="first-sight tokens per algorithm (default 2000)")
    ap.add_argument("--hits", type=int, default=20000, help="cache hits per case (default 20000)")
    ap.add_argument("--misses", type=int, default=300, help="introspection misses per pass (default 300)")
    ap.add_argument("--passes", type=int, default=5, help="passes over every row (default 5)")
    ap.add_argument("--json", help="write every figure here")
    ap.add_argument("--work", help="working directory (default: a temporary one)")
    a = ap.parse_args()

    import importlib.metadata

    import cryptography

    with tempfile.TemporaryDirectory(prefix="tw-bench-jwt-") as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        tokens = mint_tokens(work, a.tokens)
        jwks = json.loads((work / "jwks.json").read_text())["keys"]
        print(f"minted {a.tokens + 1} tokens per algorithm in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        jwks_proc, jwks_uri = start_jwks_server(work)
        try:
            options = jwt_options(jwks_uri)
            write_options(work / "jwt.conf", options)
            (work / "meta.json").write_text(
                json.dumps({"issuer": ISSUER, "audience": AUDIENCE, "algs": list(ALGS), "options": options})
            )
            with oidc_as.start_as(oidc_as.ensure_pki(work / "pki"), token_ttl=3600) as server:
                opaque = [oidc_as.obtain_token(server, "svc-post") for _ in range(a.misses + 1)]
                (work / "tokens-opaque.txt").write_text("\n".join(opaque) + "\n")
                intro = introspection_options(server)
                write_options(work / "introspection.conf", intro)
                results: Results = defaultdict(list)
                for p in range(a.passes):
                    print(f"pass {p + 1}/{a.passes}", file=sys.stderr)
                    run_binary(
                        [
                            a.c_bench,
                            str(a.hits),
                            *(f"{alg}:{work / 'jwt.conf'}:{work / f'tokens-{alg}.txt'}" for alg in ALGS),
                            f"{INTROSPECTION}:{work / 'introspection.conf'}:{work / 'tokens-opaque.txt'}",
                        ],
                        results,
                    )
                    run_binary([a.floor_bench, str(work), str(a.hits)], results)
                    for alg in ALGS:
                        python_rows(alg, options, tokens[alg], a.hits, results)
                        pyjwt_row(alg, next(k for k in jwks if k["alg"] == alg), tokens[alg], results)
                    python_rows(INTROSPECTION, intro, opaque, a.hits, results)
        finally:
            assert jwks_proc.stdin is not None
            jwks_proc.stdin.close()
            jwks_proc.wait(timeout=10)

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    print(
        f"\ntokenward {importlib.metadata.version('tokenward')} | "
        f"CPython {platform.python_version()} | PyJWT {jwt.__version__} | cryptography {cryptography.__version__} | "
        f"{os.cpu_count()} CPUs: {cpu}"
    )
    print(
        f"{a.tokens} first-sight tokens per algorithm (~{len(tokens['RS256'][1])} B RS256, "
        f"~{len(tokens['ES256'][1])} B ES256), {a.hits} hits, {a.misses} introspection misses, "
        f"{a.passes} passes; cells: median over passes of the median per call, µs\n"
    )
    print(table(results))
    print()
    for line in ratios(results) + pieces(results):
        print(line)
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    f"{row} {alg} {kind}": {
                        "median_us": cell(results, (row, alg, kind)),
                        "p99_us": cell(results, (row, alg, kind), 1),
                        "passes": len(v),
                    }
                    for (row, alg, kind), v in sorted(results.items())
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
