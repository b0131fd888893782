#!/usr/bin/env python3
"""Soak (issue 12): gunicorn --preload (gthread) with the tokenward filter in front of a trivial
app, introspecting at the real test AS (oidc-provider) with a real memcached as shared tier,
under 64 client threads for a fixed time while the AS is killed and restarted twice and
memcached once.

    python benches/soak.py [--duration 120] [--clients 64] [--json out.json]

The AS keeps its tokens in a journal (``--store``), so after a restart on the same port the
tokens it issued are still valid, as with an AS backed by a database. The clients send a mix
of valid tokens (a pool from several clients), refused tokens (never issued, or revoked before
first use) and junk (malformed headers, 20 KiB tokens, no header). A verdict is wrong when a
valid token gets 401/403/other 4xx or 200 with someone else's identity, or a refused or junk
request gets 2xx. A 503 for a valid token inside an AS outage window (kill to restart plus
``as_open_time`` + 1 s) is counted apart; outside one it is "unexplained".

Exits 1 on any wrong verdict, 500, unexplained 503, transport error (hang, reset), or worker
restart. Not part of CI: scripts/soak.sh runs it on a fresh machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))

import oidc_as  # noqa: E402
from cache_servers import Server, free_port  # noqa: E402
from fake_as import MAPPING  # noqa: E402

#: Clients whose tokens make up the valid pool (five auth methods, two role shapes).
POOL_CLIENTS = ("svc-basic", "svc-post", "svc-secret-jwt", "svc-private-jwt-es256", "svc-admin", "svc-array")
#: The filter's own client at the AS.
FILTER_CLIENT = "svc-basic"
AS_OPEN_TIME = 10  # the default as_open_time: the breaker may stay open this long after a restart
CLIENT_TIMEOUT = 60.0


# --------------------------------------------------------------------------- processes


class Memcached:
    """A real memcached on a fixed port that can be killed (SIGKILL) and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        exe = shutil.which("memcached") or "/usr/bin/memcached"
        self.argv = [exe, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64", "-u", "nobody"]
        self.server: Optional[Server] = Server(self.argv, self.port, "memcached")

    def kill(self) -> None:
        assert self.server is not None
        self.server.proc.kill()
        self.server.proc.wait(timeout=10)
        self.server = None

    def start(self) -> None:
        self.server = Server(self.argv, self.port, "memcached")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class AS:
    """The test AS on a fixed port with a token journal; kill (SIGKILL) and restart."""

    def __init__(self, pki: Path, store: Path, token_ttl: int) -> None:
        self.pki, self.store, self.token_ttl = pki, store, token_ttl
        self.server: Optional[oidc_as.AuthServer] = oidc_as.start_as(pki, store=store, token_ttl=token_ttl)
        self.port = self.server.port
        self.info = self.server

    def kill(self) -> None:
        assert self.server is not None
        self.server.process.kill()
        self.server.process.wait(timeout=10)
        self.server.stop()
        self.server = None

    def start(self) -> None:
        self.server = oidc_as.start_as(self.pki, port=self.port, store=self.store, token_ttl=self.token_ttl)
        assert self.server.issuer == self.info.issuer

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def paste_ini(path: Path, auth: oidc_as.AuthServer, mc_port: int, a: argparse.Namespace) -> None:
    c = oidc_as.CLIENTS[FILTER_CLIENT]
    options = {
        "introspect_endpoint": auth.introspection_endpoint,
        "audience": auth.issuer,
        "client_id": FILTER_CLIENT,
        "auth_method": c["auth"],
        "client_secret": c["secret"],
        "cafile": auth.ca_file,
        **MAPPING,
        "memcached_servers": f"127.0.0.1:{mc_port}",
        "memcache_pool_dead_retry": str(a.memcache_dead_retry),
        "memcache_pool_maxsize": str(a.memcache_pool_maxsize),
        "token_cache_time": str(a.token_cache_time),
        "stale_if_error": str(a.stale_if_error),
        "metrics_name": "soak",
    }
    lines = "\n".join(f"{k} = {v.replace('%', '%%')}" for k, v in options.items())
    path.write_text(
        "[composite:main]\npaste.composite_factory = soak_app:composite\napi = api\n\n"
        "[pipeline:api]\npipeline = authtoken hello\n\n"
        "[filter:authtoken]\npaste.filter_factory = tokenward.external_oauth2_token:filter_factory\n"
        f"{lines}\n\n[app:hello]\npaste.app_factory = soak_app:hello_factory\n",
        encoding="utf-8",
    )
    path.chmod(0o600)  # it holds the client secret


def start_gunicorn(ini: Path, port: int, log: Path, a: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--preload",
        "--worker-class",
        "gthread",
        "--workers",
        str(a.workers),
        "--threads",
        str(a.threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--keep-alive",
        "30",
        "--timeout",
        "60",
        "--limit-request-field_size",
        "32768",  # room for the 20 KiB tokens, so they reach the filter
        "--error-logfile",
        str(log),
        "--log-level",
        "info",
        "--no-control-socket",
        "--paste",
        str(ini),
    ]
    with open(log, "ab") as err:  # tokenward's WARNING/ERROR lines (logging's last resort) too
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return sorted(out)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def per_worker(port: int, path: str, workers: int) -> dict[int, bytes]:
    """``path`` from every worker (a fresh connection each time until each pid answered)."""
    seen: dict[int, bytes] = {}
    for _ in range(200):
        status, body = get(port, path)
        if status == 200:
            pid = json.loads(body)["pid"] if path == "/stats" else _metrics_pid(body)
            seen.setdefault(pid, body)
        if len(seen) >= workers:
            break
    return seen


def _metrics_pid(body: bytes) -> int:
    for line in body.decode().splitlines():
        if line.startswith("tokenward_") and 'pid="' in line:
            return int(line.split('pid="', 1)[1].split('"', 1)[0])
    return -1


# --------------------------------------------------------------------------- tokens


class Pool:
    def __init__(self, auth: oidc_as.AuthServer, per_client: int, revoked: int) -> None:
        with ThreadPoolExecutor(8) as ex:
            owners = [c for c in POOL_CLIENTS for _ in range(per_client)]
            self.valid = list(zip(ex.map(lambda c: oidc_as.obtain_token(auth, c), owners), owners))
            gone = list(ex.map(lambda i: oidc_as.obtain_token(auth, POOL_CLIENTS[i % 2]), range(revoked)))
            list(ex.map(lambda t: oidc_as.revoke(auth, t), gone))
        # Sanity: the AS agrees with what we expect (one of each; never printed).
        for owner in POOL_CLIENTS:
            tok = next(t for t, o in self.valid if o == owner)
            assert oidc_as.introspect(auth, tok)["active"], owner
        assert not any(oidc_as.introspect(auth, t)["active"] for t in gone[:5])
        self.revoked = gone
        self.repeat_random = [secrets.token_urlsafe(32) for _ in range(50)]


def pick(rng: random.Random, pool: Pool) -> tuple[str, str, list[tuple[str, str]], Optional[str]]:
    """(category, kind, headers, expected user id or None)."""
    r = rng.random()
    if r < 0.55:
        token, owner = rng.choice(pool.valid)
        if r < 0.03:
            return "valid", "valid-lowercase-scheme", [("Authorization", f"bearer {token}")], owner
        return "valid", "valid", [("Authorization", f"Bearer {token}")], owner
    if r < 0.63:
        return "refused", "random-new", [("Authorization", f"Bearer {secrets.token_urlsafe(32)}")], None
    if r < 0.66:
        return "refused", "random-repeat", [("Authorization", f"Bearer {rng.choice(pool.repeat_random)}")], None
    if r < 0.75:
        return "refused", "revoked", [("Authorization", f"Bearer {rng.choice(pool.revoked)}")], None
    if r < 0.78:
        token = rng.choice(pool.valid)[0]
        return "refused", "valid-with-suffix", [("Authorization", f"Bearer {token}x")], None
    # junk
    token = rng.choice(pool.valid)[0]
    junk: list[tuple[str, list[tuple[str, str]]]] = [
        ("no-header", []),
        ("empty-header", [("Authorization", "")]),
        ("scheme-only", [("Authorization", "Bearer")]),
        ("basic-scheme", [("Authorization", "Basic dXNlcjpwYXNz")]),
        ("two-tokens", [("Authorization", f"Bearer {token} {token}")]),
        ("comma", [("Authorization", f"Bearer {token},x")]),
        ("non-ascii", [("Authorization", "Bearer t\u00e9st-t\u00f6ken")]),
        ("control-char", [("Authorization", "Bearer abc\x7fdef")]),
        ("20KiB", [("Authorization", "Bearer " + "A" * 20480)]),
        ("16KiB+1", [("Authorization", "Bearer " + "a" * (16 * 1024 + 1))]),
        ("20KiB-valid-prefix", [("Authorization", f"Bearer {token}" + "B" * 20000)]),
        ("token-scheme", [("Authorization", f"Token {token}")]),
    ]
    kind, headers = junk[rng.randrange(len(junk))]
    return "junk", kind, headers, None


# --------------------------------------------------------------------------- load


class Client(threading.Thread):
    """One client: a keep-alive connection, requests until told to stop."""

    def __init__(self, n: int, port: int, pool: Pool, stop: threading.Event, t0: float, seed: int) -> None:
        super().__init__(daemon=True, name=f"client-{n}")
        self.port, self.pool, self.stop, self.t0 = port, pool, stop, t0
        self.rng = random.Random(seed * 1000 + n)
        # (start s, latency s, category, kind, status or -1, user matches, stale)
        self.records: list[tuple[float, float, str, str, int, bool, bool]] = []
        self.errors: list[str] = []
        self.retries = 0
        self.conn: Optional[http.client.HTTPConnection] = None
        self.used = 0

    def send(self, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=CLIENT_TIMEOUT)
            self.used = 0
        self.used += 1
        self.conn.putrequest("GET", "/", skip_accept_encoding=True)
        for k, v in headers:
            self.conn.putheader(k, v)
        self.conn.endheaders()
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.will_close:
            self.conn.close()
            self.conn = None
        return resp.status, body

    def run(self) -> None:
        while not self.stop.is_set():
            category, kind, headers, owner = pick(self.rng, self.pool)
            start = time.monotonic()
            try:
                try:
                    status, body = self.send(headers)
                except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                    # The server may close an idle keep-alive connection as we reuse it: one
                    # retry on a fresh connection; a fresh connection failing is an error.
                    if self.conn is None or self.used <= 1:
                        raise
                    self.conn.close()
                    self.conn = None
                    self.retries += 1
                    start = time.monotonic()
                    status, body = self.send(headers)
            except (OSError, http.client.HTTPException) as e:
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                self.errors.append(f"{time.monotonic() - self.t0:.1f}s {kind}: {type(e).__name__}: {e}")
                self.records.append((start - self.t0, time.monotonic() - start, category, kind, -1, False, False))
                continue
            latency = time.monotonic() - start
            matches = stale = False
            if status == 200:
                try:
                    seen = json.loads(body)
                    matches = seen["user"] == owner and seen["project"] == f"prj-{owner}"
                    stale = bool(seen["stale"])
                except (ValueError, KeyError, TypeError):
                    pass
            self.records.append((start - self.t0, latency, category, kind, status, matches, stale))


class Chaos(threading.Thread):
    """Kills and restarts the AS and memcached on a schedule (seconds from t0)."""

    def __init__(self, auth: AS, mc: Memcached, plan: list[tuple[float, str, float]], t0: float) -> None:
        super().__init__(daemon=True, name="chaos")
        self.auth, self.mc, self.plan, self.t0 = auth, mc, plan, t0
        self.events: list[tuple[str, float, float]] = []  # (what, killed at, back at)
        self.failure: Optional[BaseException] = None

    def run(self) -> None:
        try:
            for at, what, down in self.plan:
                time.sleep(max(0.0, self.t0 + at - time.monotonic()))
                target = self.auth if what == "AS" else self.mc
                killed = time.monotonic() - self.t0
                target.kill()
                time.sleep(down)
                target.start()
                self.events.append((what, killed, time.monotonic() - self.t0))
        except BaseException as e:  # reported by the main thread
            self.failure = e


class Sampler(threading.Thread):
    """Every second: peak RSS of each worker, one worker's ``/stats`` (whichever answers a new
    connection), and once warm (at ``warm_at``) the open fds of each worker."""

    def __init__(self, pids: list[int], port: int, stop: threading.Event, t0: float, warm_at: float) -> None:
        super().__init__(daemon=True, name="sampler")
        self.pids, self.port, self.stop, self.t0, self.warm_at = pids, port, stop, t0, warm_at
        self.peak = {p: rss_kib(p) for p in pids}
        self.warm_fds: dict[int, int] = {}
        self.stats: list[tuple[float, dict[str, Any]]] = []

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_kib(p))
            if not self.warm_fds and time.monotonic() - self.t0 >= self.warm_at:
                self.warm_fds = {p: open_fds(p) for p in self.pids}
            try:
                status, body = get(self.port, "/stats", timeout=5)
            except OSError:
                continue
            if status == 200:
                self.stats.append((time.monotonic() - self.t0, json.loads(body)))

    def recovery(
        self, since: float, until: float, settled: Callable[[dict[str, Any], dict[str, Any]], bool]
    ) -> dict[int, float]:
        """Per worker: the first sample in [since, until) from which on ``settled(previous,
        sample)`` held for every later sample of that worker in it (-1: never)."""
        out: dict[int, float] = {}
        for pid in self.pids:
            series = [(t, s) for t, s in self.stats if s["pid"] == pid]
            back = -1.0
            for (_, prev), (t, cur) in zip(series, series[1:]):
                if t < since or t >= until:
                    continue
                if settled(prev, cur):
                    back = t if back < 0 else back
                else:
                    back = -1.0
            out[pid] = back
        return out


# --------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def window_of(start: float, latency: float, windows: list[tuple[str, float, float]]) -> str:
    end = start + latency
    for what, lo, hi in windows:
        if start < hi and end > lo:
            return what
    return "outside"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of load (>= 60)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--pool", type=int, default=40, help="valid tokens per pool client (6 clients)")
    ap.add_argument("--revoked", type=int, default=60)
    ap.add_argument("--stale-if-error", type=int, default=30)
    ap.add_argument("--token-cache-time", type=int, default=5, help="short, so outages outlast cache entries")
    ap.add_argument("--memcache-dead-retry", type=int, default=5)
    ap.add_argument("--memcache-pool-maxsize", type=int, default=10, help="the filter's default")
    ap.add_argument("--as-down", type=float, default=10.0, help="seconds of the first AS outage (the second: 1.5x)")
    ap.add_argument("--mc-down", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--json", help="write the figures here too")
    a = ap.parse_args(argv)
    d = a.duration
    plan = [(0.15 * d, "AS", a.as_down), (0.42 * d, "memcached", a.mc_down), (0.65 * d, "AS", 1.5 * a.as_down)]
    if d < 60 or plan[2][0] + plan[2][2] + AS_OPEN_TIME + 2 > d or plan[0][0] + a.as_down + AS_OPEN_TIME > plan[1][0]:
        ap.error("--duration too short for the outages (at least 60 s with the default outage lengths)")

    tmp = Path(tempfile.mkdtemp(prefix="tokenward-soak-"))
    logs = ROOT / "tests" / ".work" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    gunicorn_log = logs / "soak-gunicorn.log"
    gunicorn_log.unlink(missing_ok=True)
    auth: Optional[AS] = None
    mc: Optional[Memcached] = None
    proc: Optional[subprocess.Popen[bytes]] = None
    try:
        pki = oidc_as.ensure_pki(ROOT / "tests" / ".work" / "pki")
        auth = AS(pki, tmp / "as-store.jsonl", token_ttl=int(d) + 900)
        mc = Memcached()
        print(f"soak: AS {auth.info.issuer} (journal store), memcached 127.0.0.1:{mc.port}", flush=True)
        started = time.monotonic()
        assert auth.server is not None
        pool = Pool(auth.server, a.pool, a.revoked)
        print(
            f"soak: pool of {len(pool.valid)} valid tokens from {len(POOL_CLIENTS)} clients, "
            f"{len(pool.revoked)} revoked, in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        ini = tmp / "soak-paste.ini"
        paste_ini(ini, auth.server, mc.port, a)
        port = free_port()
        proc = start_gunicorn(ini, port, gunicorn_log, a)
        deadline = time.monotonic() + 60
        while len(children(proc.pid)) < a.workers or not per_worker_ready(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start; see {gunicorn_log}")
            time.sleep(0.2)
        workers = children(proc.pid)
        assert len(per_worker(port, "/stats", a.workers)) == a.workers, "not every worker answers"
        rss_start = {p: rss_kib(p) for p in workers}
        fds_start = {p: open_fds(p) for p in workers}
        print(
            f"soak: gunicorn --preload gthread {a.workers}x{a.threads} on :{port}, workers {workers}; "
            f"{a.clients} clients for {d:.0f} s; token_cache_time {a.token_cache_time}, "
            f"stale_if_error {a.stale_if_error}, breaker default",
            flush=True,
        )

        stop = threading.Event()
        t0 = time.monotonic()
        clients = [Client(n, port, pool, stop, t0, a.seed) for n in range(a.clients)]
        chaos = Chaos(auth, mc, plan, t0)
        sampler = Sampler(workers, port, stop, t0, warm_at=0.1 * d)
        for t in (*clients, chaos, sampler):
            t.start()
        rss_series: list[tuple[float, dict[int, int]]] = []
        while (left := d - (time.monotonic() - t0)) > 0:
            time.sleep(min(10.0, left))
            n = sum(len(c.records) for c in clients)
            now, rss_now = time.monotonic() - t0, {p: rss_kib(p) for p in workers}
            rss_series.append((now, rss_now))
            shown = " / ".join(f"{v / 1024:.1f}" for v in rss_now.values())
            print(f"  {now:5.0f} s  {n:>8} requests  RSS MiB {shown}", flush=True)
        stop.set()
        chaos.join(timeout=60)
        hung = []
        for c in clients:
            c.join(timeout=CLIENT_TIMEOUT + 10)
            if c.is_alive():
                hung.append(c.name)
        elapsed = time.monotonic() - t0
        rss_end = {p: rss_kib(p) for p in workers}
        fds_end = {p: open_fds(p) for p in workers}
        if chaos.failure is not None:
            raise RuntimeError(f"chaos step failed: {chaos.failure!r}")

        workers_after = children(proc.pid)
        stats = {p: json.loads(b) for p, b in per_worker(port, "/stats", a.workers).items()}
        prom = per_worker(port, "/metrics", a.workers)
        fds = {p: (fds_start[p], sampler.warm_fds.get(p, -1), fds_end[p]) for p in workers}
        result = report(a, clients, chaos, workers, workers_after, (rss_start, rss_end, sampler.peak), fds, stats, prom)
        result["recovery"] = recovery(chaos, sampler)
        result["stats_samples"] = [{"t": round(t, 1), **s} for t, s in sampler.stats]
        result["rss_series_kib"] = [{"t": round(t, 1), **{str(p): v for p, v in r.items()}} for t, r in rss_series]
        result["elapsed_s"] = round(elapsed, 1)
        result["hung_clients"] = hung
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for s in (auth, mc):
            if s is not None:
                s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    log_text = gunicorn_log.read_text(errors="replace") if gunicorn_log.exists() else ""
    result["gunicorn_log"] = {
        "tracebacks": log_text.count("Traceback"),
        "worker_timeouts": log_text.count("WORKER TIMEOUT"),
        "booting_worker": log_text.count("Booting worker"),
        "lines": len(log_text.splitlines()),
    }
    print(
        f"gunicorn log ({gunicorn_log.relative_to(ROOT)}): {result['gunicorn_log']['lines']} lines, "
        f"{result['gunicorn_log']['tracebacks']} tracebacks, {result['gunicorn_log']['worker_timeouts']} worker "
        f"timeouts, {result['gunicorn_log']['booting_worker']} 'Booting worker'"
    )
    if hung:
        print(f"HUNG clients (no answer within {CLIENT_TIMEOUT:.0f} s after the end): {len(hung)}")
    failures = {
        "wrong verdicts": result["wrong_verdicts"],
        "500s": result["status_500"],
        "unexplained 503s for valid tokens": result["valid_503_unexplained"],
        "transport errors": result["transport_errors"],
        "worker restarts": result["worker_restarts"],
        "fd growth after warm-up beyond 8 per thread + 16": max(0, result["fd_growth_after_warm"] - 8 * a.threads - 16),
        "hung clients": len(hung),
        "tracebacks": result["gunicorn_log"]["tracebacks"],
    }
    bad = {k: v for k, v in failures.items() if v}
    print("soak: " + ("FAILED: " + ", ".join(f"{k} {v}" for k, v in bad.items()) if bad else "OK"))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if bad else 0


def recovery(chaos: Chaos, sampler: Sampler) -> list[dict[str, Any]]:
    """When each worker was healthy again after each restart, from the /stats samples: the
    breaker closed (AS), no more shared-tier errors (memcached)."""
    out = []
    print("recovery (s from start; from /stats sampled every second, one worker a sample):")
    kills = [lo for _, lo, _ in chaos.events[1:]] + [float("inf")]
    for (what, _, hi), until in zip(chaos.events, kills):
        if what == "AS":
            back = sampler.recovery(hi, until, lambda prev, cur: cur["breaker_open"] == 0)
            label = "breaker closed"
        else:  # nothing else makes shared-tier errors: look until the end
            back = sampler.recovery(hi, float("inf"), lambda prev, cur: cur["shared_errors"] == prev["shared_errors"])
            label = "no new shared-tier errors from"
        shown = ", ".join(f"pid {p} {'never' if t < 0 else f'{t:.1f}'}" for p, t in back.items())
        print(f"  {what:<10} back {hi:6.1f}: {label}: {shown}")
        out.append({"what": what, "back_s": round(hi, 1), "healthy_s": {str(p): round(t, 1) for p, t in back.items()}})
    return out


def per_worker_ready(port: int) -> bool:
    try:
        return get(port, "/stats", timeout=2)[0] == 200
    except OSError:
        return False


def report(
    a: argparse.Namespace,
    clients: list[Client],
    chaos: Chaos,
    workers: list[int],
    workers_after: list[int],
    rss: tuple[dict[int, int], dict[int, int], dict[int, int]],
    fds: dict[int, tuple[int, int, int]],
    stats: dict[int, dict[str, Any]],
    prom: dict[int, bytes],
) -> dict[str, Any]:
    records = [r for c in clients for r in c.records]
    errors = [e for c in clients for e in c.errors]
    windows = []
    for what, lo, hi in chaos.events:
        if what == "AS":
            windows.append(("AS outage", lo, hi + AS_OPEN_TIME + 1))
        else:
            windows.append(("memcached outage", lo, hi + a.memcache_dead_retry + 1))
    by_status: Counter[int] = Counter()
    by_cat: dict[str, Counter[int]] = defaultdict(Counter)
    by_kind: dict[str, Counter[int]] = defaultdict(Counter)
    latencies: dict[str, list[float]] = defaultdict(list)
    wrong: list[str] = []
    valid_503_outage = valid_503_unexplained = stale_200 = 0
    valid_503_at: list[float] = []
    for start, lat, cat, kind, status, matches, stale in records:
        where = window_of(start, lat, windows)
        by_status[status] += 1
        by_cat[cat][status] += 1
        by_kind[kind][status] += 1
        if status > 0:
            latencies[where].append(lat)
        if cat == "valid":
            if status == 200 and not matches:
                wrong.append(f"{start:.1f}s {kind}: 200 with another identity")
            elif status == 200:
                stale_200 += stale
            elif status == 503:
                valid_503_at.append(start)
                if where == "AS outage":
                    valid_503_outage += 1
                else:
                    valid_503_unexplained += 1
            elif 400 <= status < 500:
                wrong.append(f"{start:.1f}s ({where}) {kind}: {status}")
        elif 200 <= status < 300:
            wrong.append(f"{start:.1f}s ({where}) {cat} {kind}: {status}")
    total = len(records)

    print()
    print(
        f"requests: {total} in {a.duration:.0f} s ({total / a.duration:.0f}/s), "
        f"{sum(c.retries for c in clients)} keep-alive retries"
    )
    print("outages (s from start, killed → back):")
    for what, lo, hi in chaos.events:
        print(f"  {what:<10} {lo:6.1f} → {hi:6.1f}")
    print("per status: " + ", ".join(f"{'error' if s < 0 else s}: {n}" for s, n in sorted(by_status.items())))
    for cat in ("valid", "refused", "junk"):
        line = ", ".join(f"{'error' if s < 0 else s}: {n}" for s, n in sorted(by_cat[cat].items()))
        print(f"  {cat:<8} {sum(by_cat[cat].values()):>7}  {line}")
    print("per kind:")
    for kind in sorted(by_kind):
        print(f"  {kind:<24} " + ", ".join(f"{'error' if s < 0 else s}: {n}" for s, n in sorted(by_kind[kind].items())))
    print(f"wrong verdicts: {len(wrong)}")
    for w in wrong[:20]:
        print(f"  {w}")
    print(f"500s: {by_status.get(500, 0)}")
    print(
        f"valid token 503 during an AS outage: {valid_503_outage}; outside one (unexplained): {valid_503_unexplained}"
    )
    spans = []
    for what, lo, hi in chaos.events:
        inside = [t for t in valid_503_at if lo <= t <= hi + AS_OPEN_TIME + 1] if what == "AS" else []
        if inside:
            spans.append(f"{len(inside)} from {min(inside):.1f} to {max(inside):.1f} s")
    if spans:
        print(f"  when: {'; '.join(spans)}")
    print(f"valid token 200 served stale: {stale_200}")
    print(f"transport errors: {len(errors)}")
    for e in errors[:10]:
        print(f"  {e}")
    print("latency (ms)           requests      p50      p99      max")
    for where in ("outside", "AS outage", "memcached outage"):
        v = latencies.get(where, [])
        if v:
            print(f"  {where:<18} {len(v):>10} {pct(v, 0.5) * 1e3:8.1f} {pct(v, 0.99) * 1e3:8.1f} {max(v) * 1e3:8.1f}")
    rss_start, rss_end, rss_peak = rss
    restarts = len(set(workers_after) - set(workers))
    print("workers: RSS MiB start → end (peak)" + ("" if not restarts else f"; {restarts} NEW worker pids"))
    for p in workers:
        print(f"  pid {p}: {rss_start[p] / 1024:.1f} → {rss_end[p] / 1024:.1f} ({rss_peak[p] / 1024:.1f})")
    # Legitimate growth once warm: at most one HTTP engine (a few fds) and one memcached
    # connection per thread; a leak of pooled connections is thousands.
    fd_growth = max(end - warm for _, warm, end in fds.values())
    print(f"workers: open fds start / warm (at {0.1 * a.duration:.0f} s) / end")
    for p, (start, warm, end) in fds.items():
        print(f"  pid {p}: {start} / {warm} / {end}")
    keys = (
        "cache_hits",
        "cache_negative_hits",
        "cache_misses",
        "introspections",
        "as_errors",
        "breaker_rejections",
        "stale_served",
        "shared_hits",
        "shared_errors",
        "coalesced_waits",
        "cache_entries",
        "cache_evictions",
    )
    print("per worker (/stats, authenticator.metrics()):")
    for p, s in sorted(stats.items()):
        print(f"  pid {p}: " + ", ".join(f"{k} {s.get(k)}" for k in keys if k in s))
    prom_summary = {p: prom_figures(body) for p, body in prom.items()}
    print("per worker (/metrics, Prometheus):")
    for p, f in sorted(prom_summary.items()):
        print(f"  pid {p}: " + ", ".join(f"{k} {v:g}" for k, v in f.items()))
    return {
        "requests": total,
        "by_status": {str(k): v for k, v in sorted(by_status.items())},
        "by_category": {c: {str(k): v for k, v in sorted(n.items())} for c, n in by_cat.items()},
        "by_kind": {c: {str(k): v for k, v in sorted(n.items())} for c, n in by_kind.items()},
        "outages": [{"what": w, "killed_s": round(lo, 1), "back_s": round(hi, 1)} for w, lo, hi in chaos.events],
        "wrong_verdicts": len(wrong),
        "wrong_examples": wrong[:20],
        "status_500": by_status.get(500, 0),
        "valid_503_outage": valid_503_outage,
        "valid_503_unexplained": valid_503_unexplained,
        "valid_200_stale": stale_200,
        "transport_errors": len(errors),
        "latency_ms": {
            w: {"n": len(v), "p50": round(pct(v, 0.5) * 1e3, 2), "p99": round(pct(v, 0.99) * 1e3, 2)}
            for w, v in latencies.items()
        },
        "rss_kib": {str(p): {"start": rss_start[p], "end": rss_end[p], "peak": rss_peak[p]} for p in workers},
        "worker_restarts": restarts,
        "fds": {str(p): dict(zip(("start", "warm", "end"), v)) for p, v in fds.items()},
        "fd_growth_after_warm": fd_growth,
        "stats": {str(p): s for p, s in stats.items()},
        "prometheus": {str(p): f for p, f in prom_summary.items()},
    }


def prom_figures(body: bytes) -> dict[str, float]:
    """Breaker, stale and AS-error figures from one worker's exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            if s.labels.get("filter") != "soak":
                continue
            if s.name in (
                "tokenward_breaker_open",
                "tokenward_breaker_rejections_total",
                "tokenward_stale_served_total",
                "tokenward_introspections_total",
                "tokenward_shared_cache_errors_total",
            ):
                out[s.name.removeprefix("tokenward_")] = s.value
            elif s.name == "tokenward_as_errors_total" and s.value:
                out[f"as_errors{{{s.labels['kind']}}}"] = s.value
            elif s.name == "tokenward_as_request_duration_seconds_count":
                out["as_requests_timed"] = s.value
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
