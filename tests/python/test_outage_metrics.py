"""Riding out an AS outage through the Python door (circuit breaker, stale_if_error) and the
Prometheus metrics, parsed with prometheus_client's own parser. The exact timing rules are
pinned in tests/core_decisions.rs with a manual clock; here the real door and HTTP stack."""

from __future__ import annotations

import gc
import json
import os
import socket
import threading
import time
from typing import Any, Callable

from conftest import MAPPING, call
from fake_as import FakeAS, active_claims
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tokenward import metrics
from tokenward.client_credentials import ClientCredentials
from tokenward.external_oauth2_token import ExternalAuth2Protocol
from wsgi_apps import echo_app


def options(url: str, **extra: str) -> dict[str, str]:
    return {
        "introspect_endpoint": url,
        "audience": "https://as.example",
        "client_id": "rs",
        "client_secret": "s3cret",
        "http_connect_timeout": "2",
        **MAPPING,
        **extra,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Switch:
    """An AS answer that the test turns from healthy to failing and back."""

    def __init__(self) -> None:
        self.failing = False

    def __call__(self, form: Any, headers: Any) -> tuple[int, bytes]:
        if self.failing:
            return 500, b"<html>internal error</html>"
        return 200, json.dumps(active_claims()).encode()


def test_the_breaker_opens_answers_fast_probes_and_closes() -> None:
    switch = Switch()
    switch.failing = True
    with FakeAS(switch) as fake:
        app = ExternalAuth2Protocol(
            echo_app, options(fake.url, as_failure_threshold="3", as_open_time="1", retry_after="7")
        )
        for i in range(3):
            status, headers, _ = call(app, bearer(f"t{i}"))
            assert (status[:3], headers["Retry-After"]) == ("503", "7")
        assert len(fake.requests) == 3
        started = time.monotonic()
        for i in range(50):
            status, headers, _ = call(app, bearer(f"open{i}"))
            assert (status[:3], headers["Retry-After"]) == ("503", "1")
        assert time.monotonic() - started < 5, "open: answered without waiting for the AS"
        assert len(fake.requests) == 3, "no AS request while open"
        m = app.authenticator.metrics()
        assert (m["breaker_open"], m["breaker_rejections"]) == (1, 50)
        switch.failing = False
        time.sleep(1.1)  # as_open_time is whole seconds; the rules are pinned with a manual clock
        status, _, _ = call(app, bearer("probe"))
        assert status == "200 OK"
        assert len(fake.requests) == 4
        assert app.authenticator.metrics()["breaker_open"] == 0


def test_filters_with_one_endpoint_and_client_share_one_breaker() -> None:
    switch = Switch()
    switch.failing = True
    with FakeAS(switch) as fake:
        opts = options(fake.url, as_failure_threshold="2", as_open_time="60")
        first, second = (ExternalAuth2Protocol(echo_app, opts) for _ in range(2))
        other_client = ExternalAuth2Protocol(echo_app, {**opts, "client_id": "rs-other"})
        for i in range(2):
            assert call(first, bearer(f"t{i}"))[0][:3] == "503"
        assert len(fake.requests) == 2
        status, headers, _ = call(second, bearer("second"))
        assert (status[:3], headers["Retry-After"]) == ("503", "60")
        assert len(fake.requests) == 2, "the second filter's breaker is the first's: open"
        assert second.authenticator.metrics()["breaker_open"] == 1
        call(other_client, bearer("third"))
        assert len(fake.requests) == 3, "another client at the same AS has its own breaker"


def test_stale_verdicts_are_served_while_the_as_fails() -> None:
    switch = Switch()
    with FakeAS(switch) as fake:
        app = ExternalAuth2Protocol(
            echo_app, options(fake.url, token_cache_time="1", stale_if_error="60", as_failure_threshold="0")
        )
        status, _, body = call(app, bearer("known"))
        assert status == "200 OK"
        assert "stale" not in body["token_info"]
        switch.failing = True
        time.sleep(1.1)  # let the one-second cache lifetime end
        status, _, body = call(app, bearer("known"))
        assert status == "200 OK"
        assert body["token_info"]["stale"] is True
        assert body["environ"]["HTTP_X_PROJECT_ID"] == "p1"
        status, _, _ = call(app, bearer("unknown"))
        assert status[:3] == "503", "a token never seen gets the outage 503"
        assert app.authenticator.metrics()["stale_served"] == 1


def families(registry: CollectorRegistry) -> dict[str, Any]:
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, Any], family: str, name: str, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no {name} {labels}")


def test_prometheus_exposes_every_filter_and_token_client() -> None:
    switch = Switch()
    with FakeAS(switch) as fake:
        named = ExternalAuth2Protocol(echo_app, options(fake.url, metrics_name="tacker-api"))
        by_log = ExternalAuth2Protocol(echo_app, options(fake.url, client_id="rs2", log_name="tacker.auth"))
        client = ClientCredentials(token_endpoint=fake.url, client_id="tacker", client_secret="s")
        registry = CollectorRegistry()
        metrics.register(registry)
        metrics.register(registry)  # a second call is a no-op, not a duplicate error
        for _ in range(3):
            call(named, bearer("tok"))
        switch.failing = True
        call(by_log, bearer("other"))
        fams = families(registry)
        pid = str(os.getpid())
        f = {"filter": "tacker-api", "pid": pid}
        assert sample(fams, "tokenward_cache_hits", "tokenward_cache_hits_total", **f) == 2
        assert sample(fams, "tokenward_cache_misses", "tokenward_cache_misses_total", **f) == 1
        assert sample(fams, "tokenward_introspections", "tokenward_introspections_total", **f) == 1
        assert sample(fams, "tokenward_cache_entries", "tokenward_cache_entries", **f) == 1
        assert sample(fams, "tokenward_breaker_open", "tokenward_breaker_open", **f) == 0
        h = "tokenward_as_request_duration_seconds"
        assert sample(fams, h, h + "_count", **f) == 1
        assert sample(fams, h, h + "_bucket", le="+Inf", **f) == 1
        other = {"filter": "tacker.auth", "pid": pid}
        assert sample(fams, "tokenward_as_errors", "tokenward_as_errors_total", kind="status", **other) == 1
        assert sample(fams, "tokenward_as_errors", "tokenward_as_errors_total", kind="timeout", **other) == 0
        assert (
            sample(fams, "tokenward_token_requests", "tokenward_token_requests_total", filter="client:tacker", pid=pid)
            == 0
        )
        assert fams["tokenward_cache_hits"].type == "counter"
        assert fams[h].type == "histogram"
        del client, named, by_log


#: Every sample name the issue lists for an introspection filter, with the error kinds.
ISSUE_COUNTERS = {
    "tokenward_cache_hits_total",
    "tokenward_cache_negative_hits_total",
    "tokenward_cache_misses_total",
    "tokenward_introspections_total",
    "tokenward_as_errors_total",
    "tokenward_breaker_rejections_total",
    "tokenward_shared_cache_errors_total",
    "tokenward_coalesced_waits_total",
    "tokenward_stale_served_total",
}
ISSUE_GAUGES = {"tokenward_cache_entries", "tokenward_breaker_open"}
ISSUE_HISTOGRAM = "tokenward_as_request_duration_seconds"
ISSUE_KINDS = {"unreachable", "timeout", "status", "garbage", "too_large", "rejected"}


def test_an_introspection_filter_exposes_exactly_the_issues_families() -> None:
    with FakeAS() as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url, metrics_name="exact"))
        call(app, bearer("tok"))
        registry = CollectorRegistry()
        metrics.register(registry)
        text = generate_latest(registry).decode()
    mine = [
        (f, s) for f in text_string_to_metric_families(text) for s in f.samples if s.labels.get("filter") == "exact"
    ]
    types = {s.name: f.type for f, s in mine}
    h = ISSUE_HISTOGRAM
    assert set(types) == ISSUE_COUNTERS | ISSUE_GAUGES | {h + "_bucket", h + "_sum", h + "_count"}
    assert {n for n, t in types.items() if t == "counter"} == ISSUE_COUNTERS
    assert {n for n, t in types.items() if t == "gauge"} == ISSUE_GAUGES
    assert {s.labels["kind"] for _, s in mine if s.name == "tokenward_as_errors_total"} == ISSUE_KINDS
    assert all(s.labels["pid"] == str(os.getpid()) for _, s in mine)
    del app


def test_every_new_registry_gets_a_collector() -> None:
    # A registry that is gone may leave its id to the next one: that one needs its own.
    with FakeAS() as fake:
        app = ExternalAuth2Protocol(echo_app, options(fake.url, metrics_name="fresh"))
        for _ in range(20):
            registry = CollectorRegistry()
            first = metrics.register(registry)
            assert metrics.register(registry) is first
            text = generate_latest(registry).decode()
            assert text.count('tokenward_cache_entries{filter="fresh"') == 1, text
            del registry
            gc.collect()
        del app


class RawAS:
    """A TCP endpoint that reads each request and then runs ``misbehave(connection, stop)``.
    Counts the connections and the body bytes it managed to send."""

    def __init__(self, misbehave: Callable[[socket.socket, threading.Event], int]) -> None:
        self.misbehave = misbehave
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/introspect"
        self.stop = threading.Event()
        self.connections = 0
        self.sent: list[int] = []
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RawAS:
        self.acceptor.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.listener.close()
        for t in [self.acceptor, *self.threads]:
            t.join(timeout=10)

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.sent.append(self.misbehave(conn, self.stop))


HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def drip(conn: socket.socket, stop: threading.Event) -> int:
    """A 1000-byte answer, one byte every 100 ms (100 s in all)."""
    conn.sendall(HEADERS + b"Content-Length: 1000\r\n\r\n")
    sent = 0
    while sent < 1000 and not stop.wait(0.1):
        try:
            conn.sendall(b" ")
        except OSError:
            break
        sent += 1
    return sent


def flood(conn: socket.socket, stop: threading.Event) -> int:
    """A 200 MB answer, sent as fast as the reader takes it."""
    size = 200_000_000
    conn.sendall(HEADERS + f"Content-Length: {size}\r\n\r\n".encode())
    block, sent = b"7" * 65536, 0
    while sent < size and not stop.is_set():
        try:
            conn.sendall(block)
        except OSError:
            break
        sent += len(block)
    return sent


def never_close(conn: socket.socket, stop: threading.Event) -> int:
    """The start of a body that is read until close (no length), then silence, open."""
    conn.sendall(HEADERS + b"Connection: close\r\n\r\n" + b'{"active":true')
    stop.wait(60)
    return 14


def test_an_as_that_drips_floods_or_never_closes_is_cut_off_and_trips_the_breaker() -> None:
    behaviours = [flood, drip, never_close]
    turn = iter(behaviours)
    sent: dict[str, int] = {}

    def next_behaviour(conn: socket.socket, stop: threading.Event) -> int:
        behaviour = next(turn)
        sent[behaviour.__name__] = behaviour(conn, stop)
        return sent[behaviour.__name__]

    with RawAS(next_behaviour) as raw:
        app = ExternalAuth2Protocol(
            echo_app,
            options(
                raw.url,
                http_connect_timeout="1",
                as_failure_threshold="3",
                as_open_time="60",
                retry_after="7",
                metrics_name="raw",
            ),
        )
        registry = CollectorRegistry()
        metrics.register(registry)
        for i, behaviour in enumerate(behaviours):
            started = time.monotonic()
            status, headers, _ = call(app, bearer(f"t{i}"))
            took = time.monotonic() - started
            assert (status[:3], headers["Retry-After"]) == ("503", "7"), behaviour.__name__
            # Cut off by the 1 s deadline or the cap (the drip alone would take 100 s).
            assert took < 10, (behaviour.__name__, took)
        assert raw.connections == 3
        fams = families(registry)
        f = {"filter": "raw", "pid": str(os.getpid())}
        errors = "tokenward_as_errors"
        assert sample(fams, errors, errors + "_total", kind="too_large", **f) == 1
        assert sample(fams, errors, errors + "_total", kind="timeout", **f) == 2
        h = "tokenward_as_request_duration_seconds"
        assert sample(fams, h, h + "_count", **f) == 3
        assert sample(fams, "tokenward_breaker_open", "tokenward_breaker_open", **f) == 1
        # Open after the three: the next miss is a fast 503 and no connection is made.
        status, headers, _ = call(app, bearer("after"))
        assert (status[:3], headers["Retry-After"]) == ("503", "60")
        assert raw.connections == 3
        assert app.authenticator.metrics()["breaker_rejections"] == 1
    # (Leaving the block joined the server's threads.) The 200 MB answer was abandoned after
    # the 1 MiB cap, plus what the socket buffers held; the drip got a few bytes out.
    assert sent["flood"] < 64 * 2**20, sent
    assert sent["drip"] < 100, sent
    del app
