"""The paste apps of the soak (benches/soak.py): a trivial protected app behind the tokenward
filter, and two unauthenticated routes of the same worker beside it: ``/metrics``
(Prometheus text from ``tokenward.metrics``) and ``/stats`` (the filter's
``authenticator.metrics()`` as JSON, which also has the shared-tier hits)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from tokenward import metrics

App = Callable[..., Any]


def _send(start_response: Callable[..., Any], body: bytes, ctype: str = "application/json") -> list[bytes]:
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Says who the filter let in (user id, project id, whether the verdict was stale)."""
    info = environ.get("external.token_info") or {}
    body = {
        "pid": os.getpid(),
        "user": environ.get("HTTP_X_USER_ID"),
        "project": environ.get("HTTP_X_PROJECT_ID"),
        "stale": bool(info.get("stale")),
    }
    return _send(start_response, json.dumps(body).encode())


def hello_factory(global_conf: dict[str, Any], **local_conf: Any) -> App:
    return hello


def composite(loader: Any, global_conf: dict[str, Any], **local_conf: str) -> App:
    """``/metrics`` and ``/stats`` unauthenticated; every other path through the pipeline
    named ``api`` (whose outermost object is the tokenward filter)."""
    api = loader.get_app(local_conf["api"], global_conf=global_conf)
    registry = CollectorRegistry()
    metrics.register(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return _send(start_response, generate_latest(registry), "text/plain; version=0.0.4")
        if path == "/stats":
            stats = {"pid": os.getpid(), **api.authenticator.metrics()}
            return _send(start_response, json.dumps(stats).encode())
        return api(environ, start_response)

    return app
