#!/usr/bin/env python3
"""tokenward vs keystonemiddleware 13.0.1 ``external_oauth2_token`` at scale.

Reuses benches/bench_filter.py (same options, trivial app, environ, timing loop, 2-thread
driver, statistics) and benches/fake_as.py (run as ``fake_as.py --fast``, an asyncio server in
a subprocess, off this process's GIL). Parts:

  1  cache-hit latency with 1 / 10,000 / 100,000 / 1,000,000 cached tokens, two ways:
     hot (1,024 fixed cached tokens cycled: the cost of the cache *size*) and random (a random
     cached token each call: CPU-cache effects included). Interleaved rounds, the
     implementation that goes first alternates. tokenward is filled through the request path
     (concurrent misses against the fast fake AS) up to --request-fill-max (100,000) and with
     the bench-only ``authenticator._prefill_for_bench`` above it. keystonemiddleware is filled
     through its request path for 1 token and with a bench-only fill through its token cache
     object (``_token_cache.set(token, _parse_necessary_info(answer))``, i.e. exactly what its
     request path stores) above that. token_cache_time=3600 for both in this part so that
     nothing filled at the start expires during the run.
  2  stampede: 64 threads present one new token at once (barrier); the AS answers in 50 ms.
  3  cache-hit throughput from 2 threads on one token (req/s).
  4  junk flood, each implementation in a fresh child process: distinct junk tokens that the
     AS calls inactive, from several sender threads; VmRSS before / peak / after, entries and
     evictions. keystonemiddleware gets the same wall time tokenward needed (capped).
  5  memcached (a real memcached started here): hit latency with the local tier cold, for
     memcache_security_strategy None and ENCRYPT.

    python benches/bench_scale.py [--quick] [--json docs/bench/scale.json]
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import logging
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from time import perf_counter_ns
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_filter as bf  # noqa: E402
import fake_as  # noqa: E402

IMPLS = bf.IMPLS
TW, KSM = IMPLS
HOT_SET = 1024  # distinct cached tokens cycled by the 'hot' batches
ROOT = os.path.dirname(HERE)

_RNG = random.Random(20261125)


# --------------------------------------------------------------------------- helpers


def fast_token(rng: random.Random = _RNG) -> str:
    """Same shape and length as bench_filter.make_token (JWT header, 760 + 342 chars), but
    ~100x cheaper to make, for the 100k-token fills."""
    payload = base64.urlsafe_b64encode(rng.randbytes(570)).decode()
    sig = base64.urlsafe_b64encode(rng.randbytes(257)).decode().rstrip("=")[:342]
    return f"{bf._JWT_HEADER}.{payload}.{sig}"


def prefix_token(tag: str) -> str:
    """A JWT-shaped prefix; prefix + str(i) is a ~1.1 kB token like make_token's."""
    return fast_token()[:-12] + tag


def vmrss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_fast_as() -> tuple[int, Callable[[], None]]:
    """fake_as.py --fast in a subprocess: (port, stop)."""
    return bf.start_as(False, "--fast")


def build(impl: str, port: int, mode: str = "", **extra: Any) -> Any:
    """A filter around the trivial app; ``mode`` is a fake_as path mode (``fake-inactive``,
    ``fake-delay-50``), ``extra`` are more options (strings)."""
    opts = bf.options(port)
    if mode:
        opts["introspect_endpoint"] = opts["introspect_endpoint"].replace(f":{port}/", f":{port}/{mode}/")
    opts.update({k: str(v) for k, v in extra.items()})
    global_conf = {"__file__": "/etc/tacker/api-paste.ini", "here": "/etc/tacker"}
    return bf.factory(impl)(global_conf, **opts)(bf.trivial_app)


def call_status(app: Any, token: str) -> str:
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> None:
        status.append(s)

    result = app(bf.make_environ(token), start_response)
    for _ in result:
        pass
    close = getattr(result, "close", None)
    if close is not None:
        close()
    return status[0] if status else "?"


def summary(samples: list[int], **extra: Any) -> dict[str, Any]:
    s = bf.Series(samples=samples)
    out = s.summary()
    out.pop("introspections", None)
    out.update(extra)
    return out


def concurrently(fn: Callable[[int], None], n: int) -> None:
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            fn(k)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def tw_metrics(app: Any) -> dict[str, int]:
    return dict(app.authenticator.metrics())


def ksm_entries(app: Any) -> int:
    """Entries across keystonemiddleware's in-process _FakeClient dicts (the pool splits)."""
    pool = app._token_cache._cache_pool
    return sum(len(getattr(c, "cache", {})) for c in pool)


def fmt_us(v: Optional[float]) -> str:
    if v is None:
        return "N/A"
    return f"{v:,.1f}" if v < 10000 else f"{v:,.0f}"


def ms(ns: int) -> float:
    return round(ns / 1e6, 1)


# --------------------------------------------------------------------------- part 1


class Sized:
    """One filter holding N cached tokens, with its hot set and random-token source."""

    def __init__(self, impl: str, n: int) -> None:
        self.impl, self.n = impl, n
        self.app: Any = None
        self.tokens: list[str] = []  # request-path filled tokens
        self.prefix: Optional[str] = None  # bench-filled tokens are prefix + str(i)
        self.fill: dict[str, Any] = {}
        self.na: Optional[str] = None
        self.hot: dict[str, list[int]] = {"hot": [], "random": []}
        self.introspections = 0
        self.per_batch = 0

    def token(self, i: int) -> str:
        return self.tokens[i] if self.tokens else f"{self.prefix}{i}"

    def hot_tokens(self) -> list[str]:
        rng = random.Random(self.n)
        idx = rng.sample(range(self.n), min(HOT_SET, self.n))
        return [self.token(i) for i in idx]


def fill_tokenward(port: int, n: int, request_fill_max: int, threads: int, claims: str) -> Sized:
    s = Sized(TW, n)
    size = 10000 if n <= 8000 else int(n * 1.25) + 1000
    s.app = build(TW, port, token_cache_size=size, token_cache_time=3600)
    t0 = perf_counter_ns()
    if n <= request_fill_max:
        s.tokens = [fast_token() for _ in range(n)]
        made = perf_counter_ns()

        def worker(k: int) -> None:
            bf.timed_calls(s.app, s.tokens[k::threads], [])

        concurrently(worker, min(threads, n))
        m = tw_metrics(s.app)
        s.fill = {
            "how": f"request path, {min(threads, n)} threads",
            "seconds": ms(perf_counter_ns() - made) / 1000,
            "req_per_s": round(n / ((perf_counter_ns() - made) / 1e9), 0),
            "introspections": m["introspections"],
        }
    else:
        s.prefix = prefix_token(f"tw{n}-")
        held = s.app.authenticator._prefill_for_bench(s.prefix, n, claims)
        s.fill = {"how": "bench-only _prefill_for_bench", "seconds": ms(perf_counter_ns() - t0) / 1000, "held": held}
    m = tw_metrics(s.app)
    s.fill.update(token_cache_size=size, cache_entries=m["cache_entries"], cache_evictions=m["cache_evictions"])
    return s


def fill_ksm(port: int, n: int, claims: str, cap_s: float) -> Sized:
    s = Sized(KSM, n)
    s.app = build(KSM, port, token_cache_time=3600)
    first = fast_token()
    if call_status(s.app, first) != "200 OK":  # initialises the cache pool, one real entry
        raise bf.Bad("keystonemiddleware: first request not 200")
    if n == 1:
        s.tokens = [first]
        s.fill = {"how": "request path", "seconds": 0.0, "entries": ksm_entries(s.app)}
        return s
    s.prefix = prefix_token(f"ksm{n}-")
    data = s.app._parse_necessary_info(json.loads(claims))  # what its request path caches
    cache = s.app._token_cache
    t0 = time.monotonic()
    for i in range(n - 1):
        cache.set(f"{s.prefix}{i}", data)
        if i % 50000 == 49999 and time.monotonic() - t0 > cap_s:
            s.na = f"bench fill stopped after {i + 1:,} entries / {cap_s:.0f} s"
            break
    # one request-path entry (first) + n-1 bench-filled ones; sample only the bench-filled
    s.n = n - 1 if s.na is None else i + 1
    s.fill = {
        "how": "bench-only _token_cache.set(token, _parse_necessary_info(answer)) + 1 via request path",
        "seconds": round(time.monotonic() - t0, 2),
        "entries": ksm_entries(s.app),
    }
    return s


def measure_batch(s: Sized, kind: str, count: int, rng: random.Random, client: bf.ASClient) -> None:
    # Fresh string objects, as a server parses them from each request (a token string made at
    # fill time would otherwise be read cold from DRAM; this turned out to change little).
    if kind == "hot":
        hot = s.hot_cycle
        tokens = [hot[i % len(hot)].encode().decode() for i in range(count)]
    else:
        tokens = [s.token(rng.randrange(s.n)).encode().decode() for _ in range(count)]
    gc.collect()
    before = client.posts()
    bf.timed_calls(s.app, tokens, s.hot[kind])
    s.introspections += client.posts() - before


def part1(args: argparse.Namespace, port: int, client: bf.ASClient, claims: str) -> dict[str, Any]:
    sizes = args.sizes
    sized: dict[str, dict[int, Sized]] = {TW: {}, KSM: {}}
    for n in sizes:
        print(f"[1] filling tokenward with {n:,} ...", file=sys.stderr)
        sized[TW][n] = fill_tokenward(port, n, args.request_fill_max, args.fill_threads, claims)
        print(f"    {sized[TW][n].fill}", file=sys.stderr)
        if n > args.ksm_max:
            s = Sized(KSM, n)
            s.na = f"not attempted: above --ksm-max {args.ksm_max:,}"
            sized[KSM][n] = s
            continue
        print(f"[1] filling keystonemiddleware with {n:,} ...", file=sys.stderr)
        sized[KSM][n] = fill_ksm(port, n, claims, args.ksm_fill_cap)
        print(f"    {sized[KSM][n].fill} {sized[KSM][n].na or ''}", file=sys.stderr)
    gc.collect()
    gc.freeze()  # the filled caches are not garbage: keep collections cheap during timing

    # Warm up, then size ksm batches from its measured cost (a hit at 1M is ~0.1 s).
    for impl in IMPLS:
        for n in sizes:
            s = sized[impl][n]
            if s.app is None:
                continue
            s.hot_cycle = s.hot_tokens()
            warm: list[int] = []
            bf.timed_calls(s.app, s.hot_cycle[:5] * 2, warm)
            est = statistics.median(warm) / 1e9
            s.per_batch = max(args.min_batch, min(args.batch, int(args.batch_seconds / est)))
            if impl == TW:
                s.per_batch = args.batch
    rng = random.Random(7)
    t0 = time.monotonic()
    for r in range(args.rounds):
        order = IMPLS if r % 2 == 0 else IMPLS[::-1]
        for n in sizes:
            for impl in order:
                s = sized[impl][n]
                if s.app is None:
                    continue
                for kind in ("hot", "random"):
                    measure_batch(s, kind, s.per_batch, rng, client)
        print(f"[1] round {r + 1}/{args.rounds} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)

    out: dict[str, Any] = {"sizes": sizes, TW: {}, KSM: {}}
    for impl in IMPLS:
        for n in sizes:
            s = sized[impl][n]
            row: dict[str, Any] = {"fill": s.fill, "na": s.na, "cached": s.n}
            if s.app is not None:
                row["hot"] = summary(s.hot["hot"])
                row["random"] = summary(s.hot["random"])
                row["introspections_during_hits"] = s.introspections
                row["calls_per_batch"] = s.per_batch
                if impl == TW:
                    row["metrics_end"] = tw_metrics(s.app)
                else:
                    row["entries_end"] = ksm_entries(s.app)
            out[impl][str(n)] = row
    out["measured_s"] = round(time.monotonic() - t0, 1)
    # free the big caches before the next parts
    for impl in IMPLS:
        for s in sized[impl].values():
            s.app = None
            s.tokens = []
    gc.unfreeze()
    gc.collect()
    return out


# --------------------------------------------------------------------------- part 2, 3


def part2(args: argparse.Namespace, port: int, client: bf.ASClient) -> dict[str, Any]:
    apps = {impl: build(impl, port, mode="fake-delay-50") for impl in IMPLS}
    for impl in IMPLS:  # warm: connections, cache pool
        call_status(apps[impl], fast_token())
    res: dict[str, Any] = {impl: {"introspections": [], "wall_ms": [], "non_200": []} for impl in IMPLS}
    for r in range(args.stampede_reps):
        order = IMPLS if r % 2 == 0 else IMPLS[::-1]
        for impl in order:
            token = fast_token()
            barrier = threading.Barrier(args.stampede_threads)
            statuses: list[str] = []
            t_end: list[int] = []

            def worker(
                k: int,
                barrier: threading.Barrier = barrier,
                app: Any = apps[impl],
                token: str = token,
                statuses: list[str] = statuses,
                t_end: list[int] = t_end,
            ) -> None:
                barrier.wait()
                statuses.append(call_status(app, token))
                t_end.append(perf_counter_ns())

            before = client.posts()
            t0 = perf_counter_ns()
            concurrently(worker, args.stampede_threads)
            res[impl]["wall_ms"].append(ms(max(t_end) - t0))
            res[impl]["introspections"].append(client.posts() - before)
            res[impl]["non_200"].append(sum(1 for s in statuses if not s.startswith("200")))
    res[TW]["metrics_end"] = tw_metrics(apps[TW])
    res["threads"] = args.stampede_threads
    res["as_delay_ms"] = 50
    return res


def part3(args: argparse.Namespace, port: int, client: bf.ASClient) -> dict[str, Any]:
    apps = {impl: build(impl, port) for impl in IMPLS}
    token = fast_token()
    for impl in IMPLS:
        bf.timed_calls(apps[impl], [token] * 50, [])
    series = {impl: bf.Series() for impl in IMPLS}
    for r in range(args.rounds):
        order = IMPLS if r % 2 == 0 else IMPLS[::-1]
        for impl in order:
            gc.collect()
            before = client.posts()
            bf.two_threads(apps[impl], token, args.tput_calls, series[impl])
            series[impl].introspections += client.posts() - before
    return {impl: series[impl].summary() for impl in IMPLS} | {"calls_per_thread_per_round": args.tput_calls}


# --------------------------------------------------------------------------- part 4 (child)


def junk_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: floods one implementation with junk, prints a JSON line."""
    logging.disable(logging.CRITICAL)
    impl, port = args.junk_child, args.port
    extra: dict[str, Any] = {"token_cache_time": 300}
    if impl == TW:
        extra.update(token_cache_size=args.junk_cache_size, token_cache_inactive_time=300)
    app = build(impl, port, mode="fake-inactive", **extra)
    prefix = prefix_token("junk-")
    for i in range(20):  # warm: connections, cache pool
        call_status(app, f"{prefix}warm{i}")
    gc.collect()
    rss_before = vmrss_kib()
    sent = [0] * args.junk_threads
    stop = threading.Event()
    deadline = time.monotonic() + args.junk_seconds if args.junk_seconds else None
    timeline: list[dict[str, Any]] = []
    peak = [rss_before]
    t0 = time.monotonic()

    def sampler() -> None:
        last = 0.0
        while not stop.is_set():
            rss = vmrss_kib()
            peak[0] = max(peak[0], rss)
            now = time.monotonic() - t0
            if now - last >= 1.0:
                last = now
                timeline.append({"t": round(now, 1), "sent": sum(sent), "rss_kib": rss})
            stop.wait(0.05)

    def sender(k: int) -> None:
        n = args.junk_threads
        for j, i in enumerate(range(k, args.junk, n)):
            st = call_status(app, f"{prefix}{i:08x}")
            if not st.startswith("401"):
                raise bf.Bad(f"junk answered {st}")
            sent[k] += 1
            if deadline is not None and j % 16 == 0 and time.monotonic() > deadline:
                return

    smp = threading.Thread(target=sampler, daemon=True)
    smp.start()
    concurrently(sender, args.junk_threads)
    elapsed = time.monotonic() - t0
    stop.set()
    smp.join()
    peak[0] = max(peak[0], vmrss_kib())
    gc.collect()
    out: dict[str, Any] = {
        "impl": impl,
        "junk_sent": sum(sent),
        "threads": args.junk_threads,
        "seconds": round(elapsed, 1),
        "req_per_s": round(sum(sent) / elapsed, 0),
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_peak_mib": round(peak[0] / 1024, 1),
        "rss_after_mib": round(vmrss_kib() / 1024, 1),
        "timeline": timeline,
    }
    if impl == TW:
        m = tw_metrics(app)
        out.update(
            cache_entries=m["cache_entries"],
            cache_evictions=m["cache_evictions"],
            introspections=m["introspections"],
            token_cache_size=args.junk_cache_size,
            metrics=m,
        )
    else:
        out.update(cache_entries=ksm_entries(app), cache_dicts=len(app._token_cache._cache_pool))
        # what one lookup costs now (the O(n) sweep), on a token it has cached
        lat: list[int] = []
        for i in range(5):
            t = perf_counter_ns()
            call_status(app, f"{prefix}{i:08x}")
            lat.append(perf_counter_ns() - t)
        out["lookup_ms_after"] = round(statistics.median(lat) / 1e6, 2)
    print(json.dumps(out), flush=True)


def part4(args: argparse.Namespace, port: int) -> dict[str, Any]:
    def child(impl: str, junk: int, seconds: float) -> dict[str, Any]:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--junk-child",
            impl,
            "--port",
            str(port),
            "--junk",
            str(junk),
            "--junk-threads",
            str(args.junk_threads),
            "--junk-cache-size",
            str(args.junk_cache_size),
            "--junk-seconds",
            str(seconds),
        ]
        print(
            f"[4] {impl}: up to {junk:,} junk tokens" + (f", {seconds:.0f} s max" if seconds else ""), file=sys.stderr
        )
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    tw = child(TW, args.junk, 0)
    print(f"    { ({k: v for k, v in tw.items() if k not in ('timeline', 'metrics')}) }", file=sys.stderr)
    budget = min(max(tw["seconds"], 10.0), args.ksm_junk_cap)
    ksm = child(KSM, args.junk, budget)
    print(f"    { ({k: v for k, v in ksm.items() if k != 'timeline'}) }", file=sys.stderr)
    return {TW: tw, KSM: ksm, "ksm_time_budget_s": budget}


# --------------------------------------------------------------------------- part 5


def start_memcached() -> tuple[int, Callable[[], None]]:
    exe = shutil.which("memcached") or "/usr/bin/memcached"
    port = free_port()
    cmd = [exe, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "512", "-t", "2"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError("memcached did not start")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    return port, stop


def part5(args: argparse.Namespace, port: int, client: bf.ASClient) -> dict[str, Any]:
    mc_port, stop_mc = start_memcached()
    try:
        res: dict[str, Any] = {"tokens": args.mc_tokens, "memcached_port": mc_port}
        for strategy in ("None", "ENCRYPT"):
            extra: dict[str, Any] = {
                "memcached_servers": f"127.0.0.1:{mc_port}",
                "memcache_security_strategy": strategy,
            }
            if strategy != "None":
                extra["memcache_secret_key"] = "bench-memcache-secret-0123456789"
            tokens = {impl: [fast_token() for _ in range(args.mc_tokens)] for impl in IMPLS}
            host_a = {impl: build(impl, port, **extra) for impl in IMPLS}
            host_b = {impl: build(impl, port, **extra) for impl in IMPLS}
            fill: dict[str, Any] = {}
            for impl in IMPLS:  # host A introspects every token (fills memcached)
                before = client.posts()
                t0 = perf_counter_ns()
                bf.timed_calls(host_a[impl], tokens[impl], [])
                fill[impl] = {
                    "seconds": round((perf_counter_ns() - t0) / 1e9, 2),
                    "introspections": client.posts() - before,
                }
            time.sleep(0.5)  # let any write-behind reach memcached
            for impl in IMPLS:  # warm host B's connections on tokens of its own
                w = fast_token()
                bf.timed_calls(host_a[impl], [w], [])
                time.sleep(0.05)
                bf.timed_calls(host_b[impl], [w], [])
            samples: dict[str, list[int]] = {impl: [] for impl in IMPLS}
            posts = {impl: 0 for impl in IMPLS}
            chunk = 250
            for i, start in enumerate(range(0, args.mc_tokens, chunk)):
                order = IMPLS if i % 2 == 0 else IMPLS[::-1]
                for impl in order:
                    gc.collect()
                    before = client.posts()
                    bf.timed_calls(host_b[impl], tokens[impl][start : start + chunk], samples[impl])
                    posts[impl] += client.posts() - before
            row: dict[str, Any] = {}
            for impl in IMPLS:
                row[impl] = summary(samples[impl], introspections_host_b=posts[impl], fill_host_a=fill[impl])
            mb = tw_metrics(host_b[TW])
            row[TW]["host_b_metrics"] = mb
            res[strategy] = row
            print(
                f"[5] {strategy}: tw {row[TW]['median_us']} µs, ksm {row[KSM]['median_us']} µs, "
                f"tw shared_hits {mb['shared_hits']}",
                file=sys.stderr,
            )
        return res
    finally:
        stop_mc()


# --------------------------------------------------------------------------- part 6

WORKING_SETS = (1, 16, 128, 1024, 8192)


def part6(args: argparse.Namespace, port: int, claims: str) -> dict[str, Any]:
    """tokenward only: the hit latency against the number of distinct tokens cycled (the
    working set) at fixed cache sizes, to tell the cost of the cache's size from the cost of
    touching many grants (each grant's Python objects and cache slot are its own memory)."""
    sizes = [n for n in (1, 10000, 1000000) if n <= max(args.sizes)]
    filled = {n: fill_tokenward(port, n, args.request_fill_max, args.fill_threads, claims) for n in sizes}
    gc.collect()
    gc.freeze()
    series: dict[tuple[int, int], list[int]] = {}
    cycles: dict[tuple[int, int], list[str]] = {}
    for n, s in filled.items():
        rng = random.Random(n + 6)
        for h in WORKING_SETS:
            if h <= n:
                cycles[(n, h)] = [s.token(i) for i in rng.sample(range(n), h)]
                series[(n, h)] = []
                bf.timed_calls(s.app, cycles[(n, h)][:8], [])  # warm: Python objects built
    for r in range(args.rounds):
        for (n, h), cycle in cycles.items():
            tokens = [cycle[i % h].encode().decode() for i in range(args.batch)]
            gc.collect()
            bf.timed_calls(filled[n].app, tokens, series[(n, h)])
        print(f"[6] round {r + 1}/{args.rounds}", file=sys.stderr)
    out: dict[str, Any] = {"sizes": sizes, "working_sets": list(WORKING_SETS), "median_us": {}}
    for (n, h), samples in series.items():
        out["median_us"][f"{n}/{h}"] = summary(samples)["median_us"]
    for s in filled.values():
        s.app = None
    gc.unfreeze()
    return out


# --------------------------------------------------------------------------- report


def report(res: dict[str, Any]) -> tuple[list[str], list[str]]:
    L: list[str] = []
    checks: list[str] = []
    m = res["meta"]
    L.append(
        f"tokenward {m['versions']['tokenward']} vs keystonemiddleware {m['versions']['keystonemiddleware']} | "
        f"Python {m['python']} | {m['cpus']} CPUs | mode {m['mode']} | fake AS: fake_as.py --fast subprocess | "
        f"load at end {m['loadavg_end'][0]:.2f}"
    )
    p1 = res.get("hit_vs_size")
    if p1:
        L.append("")
        L.append(
            f"1. cache-hit latency vs cached tokens (WSGI call, µs, median / p99; hot = {HOT_SET:,} cached tokens cycled)"
        )
        head = f"{'cached':>10} {'tw hot':>17} {'ksm hot':>21} {'x':>7} {'tw random':>17} {'ksm random':>21} {'x':>7}"
        L.append(head)
        L.append("-" * len(head))
        for n in p1["sizes"]:
            t, k = p1[TW][str(n)], p1[KSM][str(n)]
            cells = []
            for kind in ("hot", "random"):
                tv = t[kind]
                kv = k.get(kind)
                cells.append(f"{fmt_us(tv['median_us']):>7} / {fmt_us(tv['p99_us']):>7}")
                if kv:
                    cells.append(f"{fmt_us(kv['median_us']):>9} / {fmt_us(kv['p99_us']):>9}")
                    cells.append(f"{kv['median_us'] / tv['median_us']:>6,.0f}x")
                else:
                    cells.append(f"{'N/A':>21}")
                    cells.append(f"{'-':>7}")
            L.append(f"{n:>10,} " + " ".join(cells))
        L.append("fills:")
        for n in p1["sizes"]:
            t, k = p1[TW][str(n)], p1[KSM][str(n)]
            tf = t["fill"]
            extra = f", {tf['req_per_s']:,.0f} req/s" if "req_per_s" in tf else ""
            L.append(
                f"  {n:>9,} tokenward: {tf['how']} ({tf['seconds']:.1f} s{extra}), token_cache_size {tf['token_cache_size']:,}, "
                f"entries {tf['cache_entries']:,}, evictions {tf['cache_evictions']}"
            )
            if k.get("na"):
                L.append(f"  {n:>9,} keystonemiddleware: N/A ({k['na']})")
            else:
                kf = k["fill"]
                L.append(
                    f"  {n:>9,} keystonemiddleware: {kf['how']} ({kf['seconds']:.1f} s), entries {kf['entries']:,}"
                )
        intro = sum(p1[TW][str(n)]["introspections_during_hits"] for n in p1["sizes"])
        kintro = sum(p1[KSM][str(n)].get("introspections_during_hits", 0) for n in p1["sizes"])
        L.append(f"introspections during the hit batches: tokenward {intro}, keystonemiddleware {kintro}")
        meds = {n: p1[TW][str(n)]["hot"]["median_us"] for n in p1["sizes"]}
        lo, hi = min(meds.values()), max(meds.values())
        spread = hi / lo - 1
        v = "PASS" if spread <= 0.20 else "FAIL"
        checks.append(
            f"{v}: tokenward hot hit latency flat within 20% from {p1['sizes'][0]:,} to {p1['sizes'][-1]:,} cached "
            f"(medians {', '.join(f'{fmt_us(x)}' for x in meds.values())} µs: spread {spread * 100:.0f}%)"
        )
        if "10000" in p1[TW] and p1[KSM]["10000"].get("hot"):
            for kind in ("hot", "random"):
                r = p1[KSM]["10000"][kind]["median_us"] / p1[TW]["10000"][kind]["median_us"]
                v = "PASS" if r >= 30 else "FAIL"
                checks.append(
                    f"{v}: at 10,000 cached ({kind}) tokenward >= 30x faster than keystonemiddleware (median: {r:,.0f}x)"
                )
    p2 = res.get("stampede")
    if p2:
        L.append("")
        L.append(f"2. stampede: {p2['threads']} threads, one new token, AS answers in {p2['as_delay_ms']} ms")
        for impl in IMPLS:
            r = p2[impl]
            L.append(
                f"  {impl:<19} introspections per run {r['introspections']}, wall ms {r['wall_ms']}, "
                f"non-200 {sum(r['non_200'])}"
            )
        v = "PASS" if all(x == 1 for x in p2[TW]["introspections"]) else "FAIL"
        checks.append(f"{v}: stampede: tokenward makes 1 introspection per run ({p2[TW]['introspections']})")
    p3 = res.get("throughput")
    if p3:
        t, k = p3[TW], p3[KSM]
        L.append("")
        L.append("3. cache-hit throughput, 2 threads, one token")
        for impl, r in ((TW, t), (KSM, k)):
            L.append(
                f"  {impl:<19} {r['total_req_per_s']:>10,.0f} req/s  (per call median {r['median_us']} µs, p99 {r['p99_us']} µs, "
                f"introspections {r['introspections']})"
            )
        L.append(f"  ratio {t['total_req_per_s'] / k['total_req_per_s']:.1f}x")
    p4 = res.get("junk")
    if p4:
        L.append("")
        L.append("4. junk flood (AS answers active=false; fresh child process each; VmRSS MiB)")
        for impl in IMPLS:
            r = p4[impl]
            ent = f"entries {r['cache_entries']:,}"
            if impl == TW:
                ent += f" (token_cache_size {r['token_cache_size']:,}), evictions {r['cache_evictions']:,}"
            else:
                ent += f" in {r['cache_dicts']} dicts, a lookup now costs {r['lookup_ms_after']} ms"
            L.append(
                f"  {impl:<19} {r['junk_sent']:>9,} junk in {r['seconds']:.1f} s ({r['req_per_s']:,.0f}/s, {r['threads']} threads): "
                f"RSS {r['rss_before_mib']} -> peak {r['rss_peak_mib']} -> after {r['rss_after_mib']}; {ent}"
            )
        L.append(
            f"  keystonemiddleware got the same wall time as tokenward (capped at {p4['ksm_time_budget_s']:.0f} s)"
        )
        t = p4[TW]
        bound = t["token_cache_size"] * 11 // 10 + 16  # documented in src/cache.rs: 10 % shard slack
        v = "PASS" if t["cache_entries"] <= bound else "FAIL"
        checks.append(
            f"{v}: junk flood: tokenward entries {t['cache_entries']:,} <= its documented bound "
            f"token_cache_size*1.1+16 = {bound:,} (sharded store, 10% slack)"
        )
    p5 = res.get("memcached")
    if p5:
        L.append("")
        L.append(
            f"5. memcached hit, local tier cold (host B reads {p5['tokens']:,} tokens host A cached), µs median / p99"
        )
        for strategy in ("None", "ENCRYPT"):
            r = p5[strategy]
            t, k = r[TW], r[KSM]
            L.append(
                f"  {strategy:<8} tokenward {fmt_us(t['median_us'])} / {fmt_us(t['p99_us'])}  "
                f"keystonemiddleware {fmt_us(k['median_us'])} / {fmt_us(k['p99_us'])}  "
                f"({k['median_us'] / t['median_us']:.1f}x); host B introspections tw {t['introspections_host_b']} / "
                f"ksm {k['introspections_host_b']}; tw shared_hits {t['host_b_metrics']['shared_hits']}"
            )
    p6 = res.get("working_set")
    if p6:
        L.append("")
        L.append("6. tokenward hit latency, µs median: cached tokens (rows) x distinct tokens cycled (columns)")
        sets = p6["working_sets"]
        L.append(f"{'cached':>10} " + " ".join(f"{h:>8,}" for h in sets))
        for n in p6["sizes"]:
            cells = [p6["median_us"].get(f"{n}/{h}") for h in sets]
            L.append(f"{n:>10,} " + " ".join(f"{fmt_us(c) if c else '-':>8}" for c in cells))
    L.append("")
    notes = res["meta"].get("notes", [])
    for n in notes:
        L.append(f"note: {n}")
    return L, checks


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> dict[str, Any]:
    port, stop_as = start_fast_as()
    client = bf.ASClient(port)
    claims = fake_as._claims().decode()
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    res: dict[str, Any] = {}
    t_all = time.monotonic()
    timings: dict[str, float] = {}
    try:
        parts = [
            ("hit_vs_size", "1", lambda: part1(args, port, client, claims)),
            ("stampede", "2", lambda: part2(args, port, client)),
            ("throughput", "3", lambda: part3(args, port, client)),
            ("junk", "4", lambda: part4(args, port)),
            ("memcached", "5", lambda: part5(args, port, client)),
            ("working_set", "6", lambda: part6(args, port, claims)),
        ]
        for key, num, fn in parts:
            if num not in args.parts:
                continue
            t0 = time.monotonic()
            res[key] = fn()
            timings[key] = round(time.monotonic() - t0, 1)
            print(f"part {num} done in {timings[key]} s", file=sys.stderr)
    finally:
        logging.disable(previous)
        stop_as()
    res["meta"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_end": os.getloadavg(),
        "mode": "quick" if args.quick else "full",
        "versions": bf.versions(),
        "args": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "part_seconds": timings,
        "total_s": round(time.monotonic() - t_all, 1),
        "notes": [
            "tokenward is filled through the request path (concurrent misses) up to "
            f"{args.request_fill_max:,} tokens and with the bench-only _prefill_for_bench above that",
            "keystonemiddleware is filled through the request path for 1 token and with a bench-only "
            "fill through its token cache object (_token_cache.set(token, _parse_necessary_info(answer))) "
            "above that: its request path sweeps the whole dict on every get, O(n) per miss",
            "token_cache_time=3600 in part 1 so that entries filled first do not expire during the run",
            "tokens are JWT-shaped ~1.1 kB strings; bench-filled ones are a fixed prefix + a counter",
            "_prefill_for_bench gives every token its own grant (as the request path does), so the "
            "1,000,000 point reads as many distinct grants as the others",
        ],
    }
    return res


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CI-sized run (sizes up to 100,000, 100,000 junk, 3 rounds)")
    p.add_argument("--json", metavar="PATH", default=os.path.join(ROOT, "docs", "bench", "scale.json"))
    p.add_argument("--parts", default="123456", help="which parts to run (default 123456)")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="cached-token counts")
    p.add_argument("--rounds", type=int, help="interleaved rounds for parts 1 and 3")
    p.add_argument("--batch", type=int, help="hit calls per batch (tokenward; keystonemiddleware at most this)")
    p.add_argument("--batch-seconds", type=float, help="keystonemiddleware batch time budget (fewer calls when slow)")
    p.add_argument("--min-batch", type=int, default=3)
    p.add_argument("--request-fill-max", type=int, default=100000, help="fill tokenward through requests up to this")
    p.add_argument("--fill-threads", type=int, default=4)
    p.add_argument("--ksm-max", type=int, default=1000000, help="largest keystonemiddleware cache to fill")
    p.add_argument("--ksm-fill-cap", type=float, default=90.0, help="seconds before the ksm bench fill gives up")
    p.add_argument("--stampede-threads", type=int, default=64)
    p.add_argument("--stampede-reps", type=int)
    p.add_argument("--tput-calls", type=int, help="calls per thread per round in part 3")
    p.add_argument("--junk", type=int, help="junk tokens for tokenward (default 1,000,000; quick 100,000)")
    p.add_argument("--junk-threads", type=int, default=4)
    p.add_argument("--junk-cache-size", type=int, default=100000)
    p.add_argument("--ksm-junk-cap", type=float, help="most seconds for the keystonemiddleware junk flood")
    p.add_argument("--mc-tokens", type=int, help="tokens for the memcached part")
    # internal: the junk-flood child
    p.add_argument("--junk-child", choices=IMPLS, help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--junk-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.junk_child:
        junk_child(args)
        return 0
    quick = dict(
        sizes=[1, 10000, 100000],
        rounds=3,
        batch=300,
        batch_seconds=0.1,
        stampede_reps=3,
        tput_calls=500,
        junk=100000,
        ksm_junk_cap=20.0,
        mc_tokens=500,
    )
    full = dict(
        sizes=[1, 10000, 100000, 1000000],
        rounds=8,
        batch=1000,
        batch_seconds=0.3,
        stampede_reps=5,
        tput_calls=2000,
        junk=1000000,
        ksm_junk_cap=90.0,
        mc_tokens=2000,
    )
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)

    res = run(args)
    lines, checks = report(res)
    text = "\n".join(lines + checks)
    print(text)
    res["report"] = lines
    res["checks"] = checks
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump(res, fh, indent=2)
        fh.write("\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
