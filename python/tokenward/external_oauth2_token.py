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


class ExternalAuth2Protocol(_native.WsgiFilter):
    """Validates the bearer token of each request, then calls ``app`` with the identity
    headers set, or answers 401/403/503 itself.

    The WSGI call itself is native (``_native.WsgiFilter.__call__``): it strips and reads the
    environ, looks the token up and, on a hit, writes the identity keys and
    ``external.token_info`` and calls ``app`` with a ``start_response`` that adds the
    challenge to the application's own 401s; a refusal is answered there too. A miss is
    settled there as well unless eventlet is loaded: then it comes back to ``_miss``, which
    runs the blocking part in eventlet's thread pool when the process is patched. A
    ``TokenwardError`` goes to ``_internal_error``."""

    def __init__(self, app: Callable[..., Any], conf: dict[str, Any]) -> None:
        self._app = app
        conf = dict(conf)
        self._log = logging.getLogger(conf.get("log_name") or DEFAULT_LOG_NAME)
        self._log.info("Starting tokenward external_oauth2_token middleware")
        options = _config.collect(conf, self._log)
        self._native = _native.Authenticator(options, logger=self._log)
        for warning in self._native.warnings:
            self._log.warning(warning)
        self._wsgi_bind(app, self._native)
        self.metrics_label = self._native.metrics_label(conf.get("log_name") or self._log.name)
        _track(self)

    def metric_samples(self) -> list[tuple[str, Optional[str], Optional[str], Any]]:
        """This filter's Prometheus samples (see ``tokenward.metrics``)."""
        return self._native.samples()

    @property
    def authenticator(self) -> _native.Authenticator:
        """The native authenticator (metrics, forget)."""
        return self._native

    def _miss(
        self, environ: dict[str, Any], start_response: StartResponse, pending: _native.Pending
    ) -> Optional[Iterable[bytes]]:
        """The AS must be asked: the blocking part off the hub (eventlet's thread pool when
        patched), then the answer on this thread. None: call the application."""
        try:
            answer = _settle(pending, environ)
        except _native.TokenwardError as error:
            return self._internal_error(start_response, error)
        if answer is None:
            return None
        status, headers, body = answer
        start_response(status, headers)
        return [body]

    def _internal_error(self, start_response: StartResponse, error: BaseException) -> Iterable[bytes]:
        return _internal_error(self._log, start_response, error)


def _settle(pending: _native.Pending, environ: dict[str, Any]) -> Optional[tuple[str, list[tuple[str, str]], bytes]]:
    """A miss: the blocking part off the hub (eventlet's thread pool when patched), then the
    answer on this thread: None (call the application) or ``(status, headers, body)``."""
    green = _green_executor()
    if green is not None:
        green(pending.run)
    else:
        pending.run()
    return pending.finish(environ)


def _internal_error(log: logging.Logger, start_response: StartResponse, error: BaseException) -> Iterable[bytes]:
    """A ``TokenwardError`` (a bug in tokenward): logged with its traceback, a JSON 500."""
    log.error("tokenward failed to check a request", exc_info=error)
    start_response("500 Internal Server Error", [("Content-Type", "application/json")])
    return [
        b'{"error": {"code": 500, "title": "Internal Server Error", '
        b'"message": "The request could not be authenticated."}}'
    ]


def filter_factory(global_conf: dict[str, Any], **local_conf: Any) -> Callable[..., Any]:
    """paste.deploy filter factory: ``local_conf`` over ``global_conf``, as the reference."""
    conf = dict(global_conf)
    conf.update(local_conf)

    def auth_filter(app: Callable[..., Any]) -> ExternalAuth2Protocol:
        return ExternalAuth2Protocol(app, conf)

    return auth_filter
