"""WSGI apps for paste ini files and servers in the tests (importable as ``wsgi_apps``)."""

from __future__ import annotations

import json
import os
from typing import Any, Callable


def echo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Answers with what the filter passed on: identity keys and token_info."""
    seen = {
        k: v for k, v in environ.items() if isinstance(v, str) and (k.startswith("HTTP_") or k == "SSL_CLIENT_CERT")
    }
    body = json.dumps({"environ": seen, "token_info": environ.get("external.token_info"), "pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def echo_app_factory(global_conf: dict[str, Any], **local_conf: Any) -> Callable[..., Any]:
    return echo_app
