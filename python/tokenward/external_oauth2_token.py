"""WSGI filter: a drop-in for ``keystonemiddleware.external_oauth2_token``.

Same paste factory signature, same ``[ext_oauth2_auth]`` options, same identity headers,
``external.token_info``, 401 ``WWW-Authenticate`` value and JSON error bodies. Differences from
the reference are deliberate and listed in the README ("Differences from keystonemiddleware").
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Callable, Iterable, Optional
from urllib.parse import quote

from tokenward import _config, _native
from tokenward._config import list_opts
from tokenward._tracking import track as _track
from tokenward.exceptions import ConfigurationError

__all__ = ["ConfigurationError", "ExternalAuth2Protocol", "filter_factory", "list_opts"]

DEFAULT_LOG_NAME = "keystonemiddleware.external_oauth2_token"

StartResponse = Callable[..., Any]

# A Host value that is only host[:port] (a reg-name or an IP literal). Anything else ('/', '?',
# '#', '@') would move the request's path into the query, fragment or userinfo of the URL a
# DPoP proof is compared with, so that a proof for any path of that host would pass.
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")


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


def _client_cert(environ: dict[str, Any]) -> Optional[Any]:
    """The caller's certificate: ``SSL_CLIENT_CERT`` (PEM, from mod_ssl/mod_wsgi) or the peer
    certificate of the TLS socket (DER, eventlet.wsgi)."""
    pem = environ.get("SSL_CLIENT_CERT")
    if pem:
        return pem
    try:
        return environ["wsgi.input"].get_socket().getpeercert(True)
    except Exception:
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
        self._strip = self._native.strip_environ_keys
        self._challenge = self._native.challenge
        self._thumbprint_verify = self._native.thumbprint_verify
        self._cert_header_key = self._native.cert_header_key
        self._dpop_public_url = self._native.dpop_public_url
        self.metrics_label = self._native.metrics_label(conf.get("log_name") or self._log.name)
        _track(self)

    def _request_url(self, environ: dict[str, Any]) -> Optional[str]:
        """The URL a DPoP proof's ``htu`` must name: ``dpop_public_url`` (or the request's
        scheme and Host) + ``SCRIPT_NAME`` + ``PATH_INFO``; no query (RFC 9449 §4.3). None
        (no proof matches) when Host is not a host[:port]."""
        # PEP 3333 paths are bytes decoded as latin-1: encode them back before quoting.
        raw = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).encode("latin-1", "replace")
        path = quote(raw, safe="/:@!$&'()*+,;=-._~")
        if self._dpop_public_url:
            return self._dpop_public_url + path
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        if not _HOST.match(host):
            return None
        return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{path}"

    def metric_samples(self) -> list[tuple[str, Optional[str], Optional[str], Any]]:
        """This filter's Prometheus samples (see ``tokenward.metrics``)."""
        return self._native.samples()

    @property
    def authenticator(self) -> _native.Authenticator:
        """The native authenticator (metrics, forget)."""
        return self._native

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        pop = environ.pop
        # A forwarded certificate never reaches the application, whoever sent it.
        forwarded = pop(self._cert_header_key, None) if self._cert_header_key else None
        for key in self._strip:
            pop(key, None)
        authorization = environ.get("HTTP_AUTHORIZATION")
        cert = _client_cert(environ) if self._thumbprint_verify else None
        peer = environ.get("REMOTE_ADDR") if forwarded is not None else None
        proof = environ.get("HTTP_DPOP")
        method = url = None
        if proof is not None:
            method = environ.get("REQUEST_METHOD")
            url = self._request_url(environ)
        args = (authorization, cert, peer, forwarded, method, url, proof)
        try:
            outcome = self._native.lookup(*args)
            if outcome is None:
                green = _green_executor()
                if green is not None:
                    outcome = green(self._native.authenticate, *args)
                else:
                    outcome = self._native.authenticate(*args)
                self._native.flush_logs()
        except _native.TokenwardError:
            self._log.exception("tokenward failed to check a request")
            start_response("500 Internal Server Error", [("Content-Type", "application/json")])
            return [
                b'{"error": {"code": 500, "title": "Internal Server Error", '
                b'"message": "The request could not be authenticated."}}'
            ]
        if outcome.allowed:
            environ.update(outcome.environ)
            environ["external.token_info"] = outcome.token_info
            return self._app(environ, self._start_response_for(start_response))
        start_response(outcome.status_line, outcome.headers)
        return [outcome.body]

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
