"""WSGI filter: a drop-in for ``keystonemiddleware.external_oauth2_token``.

Same paste factory signature, same ``[ext_oauth2_auth]`` options, same identity headers,
``external.token_info``, 401 ``WWW-Authenticate`` value and JSON error bodies. Differences from
the reference are deliberate and listed in the README ("Differences from keystonemiddleware").
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Iterable, Optional

from tokenward import _config, _native
from tokenward._config import list_opts
from tokenward._tracking import track as _track
from tokenward.exceptions import ConfigurationError

__all__ = ["ConfigurationError", "ExternalAuth2Protocol", "filter_factory", "list_opts"]

DEFAULT_LOG_NAME = "keystonemiddleware.external_oauth2_token"

StartResponse = Callable[..., Any]


def _green_executor() -> Optional[Callable[..., Any]]:
    """eventlet's thread pool when this process is monkey-patched, else None. A blocking
    call on a greenthread would stall every other greenthread of the hub."""
    if "eventlet" not in sys.modules:
        return None
    try:
        from eventlet import patcher, tpool
    except ImportError:
        return None
    if patcher.is_monkey_patched("thread") or patcher.is_monkey_patched("socket"):
        return tpool.execute
    return None


class ExternalAuth2Protocol:
    """Validates the bearer token of each request, then calls ``app`` with the identity
    headers set, or answers 401/403/503 itself."""

    def __init__(self, app: Callable[..., Any], conf: dict[str, Any]) -> None:
        self._app = app
        conf = dict(conf)
        self._log = logging.getLogger(conf.get("log_name") or DEFAULT_LOG_NAME)
        self._log.info("Starting tokenward external_oauth2_token middleware")
        options = _config.collect(conf, self._log)
        self._native = _native.Authenticator(options, logger=self._log)
        for warning in self._native.warnings:
            self._log.warning(warning)
        self._handle = self._native.handle
        self._challenge = self._native.challenge
        self.metrics_label = self._native.metrics_label(conf.get("log_name") or self._log.name)
        _track(self)

    def metric_samples(self) -> list[tuple[str, Optional[str], Optional[str], Any]]:
        """This filter's Prometheus samples (see ``tokenward.metrics``)."""
        return self._native.samples()

    @property
    def authenticator(self) -> _native.Authenticator:
        """The native authenticator (metrics, forget)."""
        return self._native

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # One native call reads and strips the environ, looks the token up and, on a hit,
        # writes the identity keys and external.token_info (see _native.Authenticator.handle).
        try:
            answer = self._handle(environ)
            if answer is not None and answer.__class__ is not tuple:  # a miss: ask the AS
                green = _green_executor()
                if green is not None:
                    green(answer.run)
                else:
                    answer.run()
                answer = answer.finish(environ)
        except _native.TokenwardError:
            self._log.exception("tokenward failed to check a request")
            start_response("500 Internal Server Error", [("Content-Type", "application/json")])
            return [
                b'{"error": {"code": 500, "title": "Internal Server Error", '
                b'"message": "The request could not be authenticated."}}'
            ]
        if answer is None:
            return self._app(environ, self._start_response_for(start_response))
        status, headers, body = answer
        start_response(status, headers)
        return [body]

    def _start_response_for(self, start_response: StartResponse) -> StartResponse:
        challenge = self._challenge

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # A 401 from the application gets the challenge, once (the reference adds a
            # second one when the application already sent its own).
            if status[:3] == "401" and not any(k.lower() == "www-authenticate" for k, _ in headers):
                headers = [*headers, ("WWW-Authenticate", challenge)]
            return start_response(status, headers, exc_info)

        return start


def filter_factory(global_conf: dict[str, Any], **local_conf: Any) -> Callable[..., Any]:
    """paste.deploy filter factory: ``local_conf`` over ``global_conf``, as the reference."""
    conf = dict(global_conf)
    conf.update(local_conf)

    def auth_filter(app: Callable[..., Any]) -> ExternalAuth2Protocol:
        return ExternalAuth2Protocol(app, conf)

    return auth_filter
