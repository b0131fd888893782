#!/usr/bin/env python3
"""tokenward vs keystonemiddleware 13.0.1 ``external_oauth2_token``: per-request cost.

Both filters are built through their paste ``filter_factory(global_conf, **local_conf)`` with
the same options (client_secret_basic, full mapping set, ``mapping_expires_at=exp``, no
memcached) around a trivial WSGI app, and their WSGI callable is called directly with a
realistic environ. Timing (``perf_counter_ns``) covers the call and the consumption of the
response body; building the environ is outside the timed region.

Scenarios (reference spec section 13), interleaved in rounds so that machine drift hits both
implementations alike (the one that goes first alternates each round):

  a    cache hit, same token
  b    cache miss, a new token on each call (one loopback introspection each)
  b0   the floor for b: a bare ``http.client`` POST on a keep-alive connection to the same
       server with the same form body and Basic credentials
  c    2 threads, cache hits on one token: per-call latency and total req/s
  d    hit latency with 1 and with N (default 10,000) cached tokens, filled through the
       request path; the N case hits tokens drawn at random from the N

The introspection endpoint (benches/fake_as.py) runs in a subprocess by default (off this
process's GIL); ``--as-thread`` runs it in a thread of this process instead.

    python benches/bench_filter.py [--quick] [--rounds R] [--iterations N] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import gc
import http.client
import io
import json
import logging
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fake_as  # noqa: E402

CLIENT_ID = "tacker_service"
CLIENT_SECRET = "s3cr:et-0123456789abcdef"
AUDIENCE = "https://keycloak.example.org/realms/openstack"

IMPLS = ("tokenward", "keystonemiddleware")


# --------------------------------------------------------------------------- building blocks


def options(port: int) -> dict[str, str]:
    return {
        "auth_method": "client_secret_basic",
        "introspect_endpoint": f"http://127.0.0.1:{port}/realms/openstack/protocol/openid-connect/token/introspect",
        "audience": AUDIENCE,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "mapping_project_id": "project_info.id",
        "mapping_project_name": "project_info.name",
        "mapping_project_domain_id": "project_info.domain.id",
        "mapping_project_domain_name": "project_info.domain.name",
        "mapping_roles": "role_info",
        "mapping_user_id": "user.id",
        "mapping_user_name": "user.name",
        "mapping_user_domain_id": "user.domain.id",
        "mapping_user_domain_name": "user.domain.name",
        "mapping_expires_at": "exp",
    }


def trivial_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def factory(impl: str) -> Callable[..., Any]:
    # keystonemiddleware registers its [ext_oauth2_auth] options on cfg.CONF at import time and
    # raises DuplicateOptError if tokenward registered its own (different) definitions first:
    # import it first, whichever filter is built first.
    import keystonemiddleware.external_oauth2_token  # noqa: F401

    if impl == "tokenward":
        from tokenward.external_oauth2_token import filter_factory
    else:
        from keystonemiddleware.external_oauth2_token import filter_factory
    return filter_factory


def build(impl: str, port: int) -> Callable[..., Any]:
    global_conf = {"__file__": "/etc/tacker/api-paste.ini", "here": "/etc/tacker"}
    return factory(impl)(global_conf, **options(port))(trivial_app)


_RNG = random.Random(20260509)
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_JWT_HEADER = (
    base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT","kid":"Zb2Jf1yq9mXhQ8kGm3Vt0cL5nR7sD4aE"}')
    .rstrip(b"=")
    .decode()
)


def make_token() -> str:
    """A unique token shaped like a Keycloak access token (~1.1 kB JWT)."""
    payload = "".join(_RNG.choice(_B64) for _ in range(760))
    sig = "".join(_RNG.choice(_B64) for _ in range(342))
    return f"{_JWT_HEADER}.{payload}.{sig}"


_BASE_ENVIRON: dict[str, Any] = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/vnflcm/v2/vnf_instances",
    "QUERY_STRING": "",
    "RAW_URI": "/vnflcm/v2/vnf_instances",
    "SERVER_NAME": "tacker.example.org",
    "SERVER_PORT": "9890",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_SOFTWARE": "eventlet.wsgi",
    "REMOTE_ADDR": "192.0.2.17",
    "REMOTE_PORT": "51312",
    "CONTENT_TYPE": "",
    "CONTENT_LENGTH": "",
    "HTTP_HOST": "tacker.example.org:9890",
    "HTTP_USER_AGENT": "python-tackerclient keystoneauth1/5.8.0 python-requests/2.32.3",
    "HTTP_ACCEPT": "application/json",
    "HTTP_ACCEPT_ENCODING": "gzip, deflate",
    "HTTP_CONNECTION": "keep-alive",
    "HTTP_VERSION": "2.0.0",
    "HTTP_X_OPENSTACK_REQUEST_ID": "req-3f0e8a3c-7a4e-4d0b-9f51-0c1a5e8b7d42",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": True,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def make_environ(token: str) -> dict[str, Any]:
    env = _BASE_ENVIRON.copy()
    env["wsgi.input"] = io.BytesIO(b"")
    env["HTTP_AUTHORIZATION"] = "Bearer " + token
    return env


class Bad(Exception):
    pass


def timed_calls(app: Callable[..., Any], tokens: list[str], out: list[int]) -> None:
    """Calls ``app`` once per token, appending each call's ns to ``out``."""
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(s)

    append = out.append
    for token in tokens:
        env = make_environ(token)
        t0 = perf_counter_ns()
        result = app(env, start_response)
        for _ in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
        append(perf_counter_ns() - t0)
    bad = [s for s in status if not s.startswith("200")]
    if bad or len(status) != len(tokens):
        raise Bad(f"{len(bad)} non-200 answers, e.g. {bad[:1]}")


class ASClient:
    """Counter reads, and the b0 floor, on keep-alive ``http.client`` connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stats = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.floor = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        url = urllib.parse.urlsplit(options(port)["introspect_endpoint"])
        self.path = url.path
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode("latin-1")).decode()
        self.headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
            "Authorization": "Basic " + basic,
        }

    def posts(self) -> int:
        self.stats.request("GET", "/stats")
        return json.loads(self.stats.getresponse().read())["posts"]

    def timed_floor(self, tokens: list[str], out: list[int]) -> None:
        conn, path, headers = self.floor, self.path, self.headers
        append = out.append
        for token in tokens:
            body = urllib.parse.urlencode({"token": token, "token_type_hint": "access_token"})
            t0 = perf_counter_ns()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            append(perf_counter_ns() - t0)
            if resp.status != 200:
                raise Bad(f"floor POST answered {resp.status}")


def start_as(in_thread: bool, *flags: str) -> tuple[int, Callable[[], None]]:
    """The fake AS in a thread, or as `fake_as.py [flags]` in a subprocess: (port, stop)."""
    if in_thread:
        server = fake_as.FakeAS().start()
        return server.port, server.stop
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "fake_as.py"), *flags],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    port = int(proc.stdout.readline())

    def stop() -> None:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    return port, stop


# --------------------------------------------------------------------------- statistics


def pct(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    idx = min(len(sorted_ns) - 1, max(0, math.ceil(q * len(sorted_ns)) - 1))
    return sorted_ns[idx] / 1000.0


@dataclass
class Series:
    samples: list[int] = field(default_factory=list)
    introspections: int = 0
    wall_ns: int = 0  # scenario c: summed wall time of the 2-thread batches
    calls: int = 0  # scenario c: calls made in that wall time

    def summary(self) -> dict[str, Any]:
        s = sorted(self.samples)
        out: dict[str, Any] = {
            "n": len(s),
            "median_us": round(statistics.median(s) / 1000.0, 2) if s else None,
            "p99_us": round(pct(s, 0.99), 2),
            "mean_us": round(statistics.fmean(s) / 1000.0, 2) if s else None,
            "min_us": round(s[0] / 1000.0, 2) if s else None,
            "introspections": self.introspections,
        }
        if self.wall_ns:
            out["total_req_per_s"] = round(self.calls / (self.wall_ns / 1e9), 1)
        return out


# --------------------------------------------------------------------------- the run


def two_threads(app: Callable[..., Any], token: str, n: int, series: Series) -> None:
    outs: list[list[int]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)
    tokens = [token] * n

    def worker(out: list[int]) -> None:
        barrier.wait()
        try:
            timed_calls(app, tokens, out)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(o,)) for o in outs]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = perf_counter_ns()
    for t in threads:
        t.join()
    series.wall_ns += perf_counter_ns() - t0
    series.calls += 2 * n
    if errors:
        raise errors[0]
    series.samples.extend(outs[0])
    series.samples.extend(outs[1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    port, stop_as = start_as(args.as_thread)
    client = ASClient(port)
    previous_disable = logging.root.manager.disable
    try:
        # keystonemiddleware warns (deprecated in-process cache) and both log per request:
        # silence logging for the whole measured part.
        logging.disable(logging.CRITICAL)
        return _run(args, port, client)
    finally:
        logging.disable(previous_disable)
        stop_as()


def _run(args: argparse.Namespace, port: int, client: ASClient) -> dict[str, Any]:
    it = args.iterations
    n_hit = it
    n_miss = max(10, it // 5)
    n_c = max(10, it // 2)
    n_d = max(10, it // 2)
    rounds = args.rounds
    size = args.cache_size

    # One filter per scenario and implementation, so that caches do not leak between them.
    apps = {scen: {impl: build(impl, port) for impl in IMPLS} for scen in ("a", "b", "c", "d1", "dN")}
    hot = make_token()  # a, c, d1 use one token each (the same string; separate caches)
    series = {scen: {impl: Series() for impl in IMPLS} for scen in ("a", "b", "c", "d1", "dN")}
    floor = Series()

    # Warm-up: connections, first cache initialisation, code paths.
    for impl in IMPLS:
        for scen in ("a", "c", "d1"):
            timed_calls(apps[scen][impl], [hot] * 20, [])
        timed_calls(apps["b"][impl], [make_token() for _ in range(20)], [])
    client.timed_floor([make_token() for _ in range(20)], [])

    # Fill the N-token caches through the request path, interleaved by chunks.
    print(f"filling {size} tokens into each implementation's cache ...", file=sys.stderr)
    fill_tokens = [make_token() for _ in range(size)]
    fill_ns = {impl: 0 for impl in IMPLS}
    fill_posts = {impl: 0 for impl in IMPLS}
    chunk = 500
    for start in range(0, size, chunk):
        for impl in IMPLS:
            before = client.posts()
            t0 = perf_counter_ns()
            timed_calls(apps["dN"][impl], fill_tokens[start : start + chunk], [])
            fill_ns[impl] += perf_counter_ns() - t0
            fill_posts[impl] += client.posts() - before
    held = None
    auth = getattr(apps["dN"]["tokenward"], "authenticator", None)
    if auth is not None and hasattr(auth, "metrics"):
        held = auth.metrics().get("cache_entries")
    # Warm the lookup path of the full caches.
    for impl in IMPLS:
        timed_calls(apps["dN"][impl], _RNG.sample(fill_tokens, 20), [])

    t_start = time.monotonic()
    for r in range(rounds):
        order = IMPLS if r % 2 == 0 else IMPLS[::-1]
        miss_tokens = {impl: [make_token() for _ in range(n_miss)] for impl in IMPLS}
        floor_tokens = [make_token() for _ in range(n_miss)]
        d_tokens = [_RNG.choice(fill_tokens) for _ in range(n_d)]
        for scen in ("a", "b", "b0", "c", "d1", "dN"):
            if scen == "b0":
                gc.collect()
                before = client.posts()
                client.timed_floor(floor_tokens, floor.samples)
                floor.introspections += client.posts() - before
                continue
            for impl in order:
                app, s = apps[scen][impl], series[scen][impl]
                gc.collect()
                before = client.posts()
                if scen == "a":
                    timed_calls(app, [hot] * n_hit, s.samples)
                elif scen == "b":
                    timed_calls(app, miss_tokens[impl], s.samples)
                elif scen == "c":
                    two_threads(app, hot, n_c, s)
                elif scen == "d1":
                    timed_calls(app, [hot] * n_d, s.samples)
                else:
                    timed_calls(app, d_tokens, s.samples)
                s.introspections += client.posts() - before
        print(f"round {r + 1}/{rounds} done ({time.monotonic() - t_start:.1f} s)", file=sys.stderr)

    results: dict[str, Any] = {
        "meta": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_end": os.getloadavg(),
            "rounds": rounds,
            "iterations": it,
            "calls_per_round": {"a": n_hit, "b": n_miss, "b0": n_miss, "c": f"2x{n_c}", "d1": n_d, "dN": n_d},
            "cache_size": size,
            "as_mode": "thread" if args.as_thread else "subprocess",
            "versions": versions(),
            "measured_s": round(time.monotonic() - t_start, 1),
        },
        "fill": {
            impl: {
                "tokens": size,
                "seconds": round(fill_ns[impl] / 1e9, 2),
                "mean_us_per_miss": round(fill_ns[impl] / 1000.0 / size, 1),
                "introspections": fill_posts[impl],
                **({"entries_held_after_fill": held} if impl == "tokenward" else {}),
            }
            for impl in IMPLS
        },
        "scenarios": {scen: {impl: series[scen][impl].summary() for impl in IMPLS} for scen in series},
        "floor_b0": floor.summary(),
    }
    tw = apps["a"]["tokenward"]
    auth = getattr(tw, "authenticator", None)
    if auth is not None and hasattr(auth, "metrics"):
        results["tokenward_metrics"] = {scen: apps[scen]["tokenward"].authenticator.metrics() for scen in apps}
    return results


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("tokenward", "keystonemiddleware", "keystoneauth1", "requests", "WebOb"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "-"
    return out


# --------------------------------------------------------------------------- report


LABELS = {
    "a": "(a) hit, same token",
    "b": "(b) miss, new token",
    "c": "(c) 2 threads, hit",
    "d1": "(d) hit, 1 cached",
    "dN": "(d) hit, {N} cached",
}


def ratio(num: Optional[float], den: Optional[float]) -> Optional[float]:
    if not num or not den:
        return None
    return num / den


def report(res: dict[str, Any]) -> list[str]:
    sc = res["scenarios"]
    n = res["meta"]["cache_size"]
    lines = []
    m = res["meta"]
    lines.append(
        f"tokenward {m['versions']['tokenward']} vs keystonemiddleware "
        f"{m['versions']['keystonemiddleware']} | Python {m['python']} | {m['cpus']} CPUs | "
        f"{m['rounds']} rounds x {m['iterations']} it | AS in {m['as_mode']} | "
        f"load at end {m['loadavg_end'][0]:.2f}"
    )
    head = f"{'scenario':<24} {'tokenward µs':>20} {'keystonemw µs':>20} {'speed-up':>9} {'introspections':>16}"
    lines.append(head)
    lines.append(f"{'':<24} {'median / p99':>20} {'median / p99':>20} {'(median)':>9} {'tw / ksm':>16}")
    lines.append("-" * len(head))
    for scen in ("a", "b", "c", "d1", "dN"):
        t, k = sc[scen]["tokenward"], sc[scen]["keystonemiddleware"]
        r = ratio(k["median_us"], t["median_us"])
        lines.append(
            f"{LABELS[scen].format(N=f'{n:,}'):<24} "
            f"{t['median_us']:>9.1f} / {t['p99_us']:>8.1f} "
            f"{k['median_us']:>9.1f} / {k['p99_us']:>8.1f} "
            f"{(f'{r:.1f}x' if r else '-'):>9} "
            f"{t['introspections']:>7} / {k['introspections']:<7}"
        )
    f = res["floor_b0"]
    lines.append(
        f"{'(b0) floor: bare POST':<24} {f['median_us']:>9.1f} / {f['p99_us']:>8.1f} {'(http.client, keep-alive)':>30}"
    )
    lines.append("")
    ct, ck = sc["c"]["tokenward"], sc["c"]["keystonemiddleware"]
    lines.append(
        f"(c) total throughput, 2 threads: tokenward {ct['total_req_per_s']:,.0f} req/s, "
        f"keystonemiddleware {ck['total_req_per_s']:,.0f} req/s "
        f"({ct['total_req_per_s'] / ck['total_req_per_s']:.1f}x)"
    )
    for impl in IMPLS:
        b = sc["b"][impl]
        lines.append(
            f"miss / floor ({impl}): median {b['median_us'] / f['median_us']:.2f}x, "
            f"p99 {b['p99_us'] / f['p99_us']:.2f}x"
        )
    fl = res["fill"]
    lines.append(
        "fill of {n:,} tokens (misses into a growing cache): tokenward {t:.2f} s "
        "({tu:.0f} µs/miss), keystonemiddleware {k:.2f} s ({ku:.0f} µs/miss)".format(
            n=n,
            t=fl["tokenward"]["seconds"],
            tu=fl["tokenward"]["mean_us_per_miss"],
            k=fl["keystonemiddleware"]["seconds"],
            ku=fl["keystonemiddleware"]["mean_us_per_miss"],
        )
    )
    held = fl["tokenward"].get("entries_held_after_fill")
    if held is not None:
        lines.append(f"tokenward cache entries right after filling {n:,} tokens: {held:,}")
    lines.append("")
    hit = ratio(sc["a"]["keystonemiddleware"]["median_us"], sc["a"]["tokenward"]["median_us"])
    verdict = "PASS" if hit is not None and hit >= 10 else "FAIL"
    lines.append(f"{verdict}: hit (a) >= 10x faster than keystonemiddleware (median: {hit:.1f}x)")
    for scen in ("c", "d1", "dN"):
        r = ratio(sc[scen]["keystonemiddleware"]["median_us"], sc[scen]["tokenward"]["median_us"])
        v = "PASS" if r is not None and r >= 10 else "FAIL"
        lines.append(f"  {v}: {LABELS[scen].format(N=f'{n:,}')} >= 10x (median: {r:.1f}x)")
    mf = sc["b"]["tokenward"]["median_us"] / f["median_us"]
    verdict = "PASS" if mf <= 1.2 else "FAIL"
    lines.append(f"{verdict}: tokenward miss <= 1.2x the floor (median: {mf:.2f}x)")
    hit_posts = sum(sc[s]["tokenward"]["introspections"] for s in ("a", "c", "d1", "dN"))
    verdict = "PASS" if hit_posts == 0 else "FAIL"
    lines.append(f"{verdict}: tokenward made no introspection during hit scenarios ({hit_posts})")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="short run (CI smoke): 3 rounds, 150 iterations, 1,000 cached tokens"
    )
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 20)")
    p.add_argument(
        "--iterations",
        type=int,
        help="hit calls per round and implementation; misses are 1/5 of it, c and d 1/2 (default 1000)",
    )
    p.add_argument("--cache-size", type=int, help="tokens cached for (d) (default 10,000)")
    p.add_argument("--as-thread", action="store_true", help="run the introspection server in a thread of this process")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = p.parse_args(argv)
    quick = {"rounds": 3, "iterations": 150, "cache_size": 1000}
    full = {"rounds": 20, "iterations": 1000, "cache_size": 10000}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)

    res = run(args)
    text = "\n".join(report(res))
    print(text)
    if args.json:
        res["report"] = text.splitlines()
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
