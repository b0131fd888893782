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
    body = json.dumps(
        {
            "environ": seen,
            "token_info": environ.get("external.token_info"),
            "pid": os.getpid(),
            "remote_addr": environ.get("REMOTE_ADDR"),
        }
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def echo_app_factory(global_conf: dict[str, Any], **local_conf: Any) -> Callable[..., Any]:
    return echo_app


def prefix_map_factory(loader: Any, global_conf: dict[str, Any], **local_conf: str) -> Callable[..., Any]:
    """paste composite: ``/prefix = app`` lines; the prefix moves from PATH_INFO to SCRIPT_NAME."""
    apps = sorted(((p.rstrip("/"), loader.get_app(name)) for p, name in local_conf.items()), key=lambda a: -len(a[0]))

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        for prefix, app in apps:
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix) :]
                return app(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such prefix"]

    return dispatch
