"""Riding out an AS outage through the Python door (circuit breaker, stale_if_error) and the
Prometheus metrics, parsed with prometheus_client's own parser. The exact timing rules are
pinned in tests/core_decisions.rs with a manual clock; here the real door and HTTP stack."""

from __future__ import annotations

import json
import os
import time
from typing import Any

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
