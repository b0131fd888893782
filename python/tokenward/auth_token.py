"""WSGI filter: a drop-in for the common use of ``keystonemiddleware.auth_token``.

Same paste factory, same ``[keystone_authtoken]`` options, same identity headers,
``keystone.token_info``, 401 ``WWW-Authenticate: Keystone uri="…"`` and JSON error bodies, on
tokenward's core (``validation = keystone``). Differences from the reference are deliberate:
``OpenStack-System-Scope`` is stripped like every identity header (the reference lets a
client set it), a service token never changes the user's system scope, Keystone unavailable
is a 503 even with ``delay_auth_decision``, and what tokenward cannot honour
(``enforce_token_bind = required``, memcached TLS or SASL) is refused at start-up.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Optional

from tokenward import _ks_config, _native
from tokenward._tracking import track as _track
from tokenward.exceptions import ConfigurationError
from tokenward.external_oauth2_token import _green_executor, _internal_error, _settle

__all__ = ["AuthProtocol", "ConfigurationError", "filter_factory", "list_opts"]

DEFAULT_LOG_NAME = "keystonemiddleware.auth_token"

StartResponse = Callable[..., Any]

list_opts = _ks_config.list_opts


class _UserAuth:
    """``keystone.token_auth``: the incoming user's token (and the service token sent with it)
    as a keystoneauth1 plugin, for the service's calls to other services on the user's behalf,
    as keystonemiddleware's ``UserAuthPlugin``: ``user`` is the user's ``AccessInfoV3`` (None
    without a valid token), ``get_headers`` gives ``X-Auth-Token`` (the user's) and
    ``X-Service-Token`` (this service's own token, with password or v3applicationcredential).
    Without keystoneauth1 installed, the same attributes on a plain object."""

    # Set by _new_plugin.
    _filter: Any
    _user_token: Optional[str]
    _service_token: Optional[str]
    _token_info: Any
    _user_ref: Any

    @property
    def has_user_token(self) -> bool:
        """Whether the request carried a valid user token."""
        return self._token_info is not None

    @property
    def has_service_token(self) -> bool:
        """Whether the request carried a service token."""
        return bool(self._service_token)

    @property
    def user(self) -> Any:
        """The user's ``keystoneauth1.access.AccessInfoV3`` (None without a valid token)."""
        if self._token_info is None:
            return None
        if self._user_ref is None:
            from keystoneauth1 import access

            self._user_ref = access.create(body=self._token_info, auth_token=self._user_token)
        return self._user_ref

    service = None

    def get_auth_ref(self, session: Any = None, **kwargs: Any) -> Any:
        return self.user

    def _own_token(self) -> Optional[str]:
        native = self._filter._native
        green = _green_executor()
        return green(native.service_token) if green is not None else native.service_token()

    def get_headers(self, session: Any = None, **kwargs: Any) -> Optional[dict[str, str]]:
        if self._token_info is None or not self._user_token:
            return None
        headers = {"X-Auth-Token": self._user_token}
        own = self._own_token()
        if own:
            headers["X-Service-Token"] = own
        return headers

    def get_token(self, session: Any = None, **kwargs: Any) -> Optional[str]:
        return self._user_token if self._token_info is not None else None

    def __getattr__(self, name: str) -> Any:
        # keystoneauth's lock, made when first used (a hit does not pay for it).
        if name == "_lock":
            lock = threading.Lock()
            self.__dict__["_lock"] = lock
            return lock
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"UserAuthPlugin(has_user_token={self.has_user_token}, has_service_token={self.has_service_token})"


def _plugin_class() -> type:
    try:
        from keystoneauth1.identity import base
    except ImportError:
        return type("UserAuthPlugin", (_UserAuth,), {})
    return type("UserAuthPlugin", (_UserAuth, base.BaseIdentityPlugin), {})


UserAuthPlugin = _plugin_class()


def _plugin_prototype() -> dict[str, Any]:
    """The attributes a new plugin starts with (its base class's ``__init__``, run once: a
    request copies them instead of running it again)."""
    init = getattr(UserAuthPlugin, "__init__", object.__init__)
    proto = UserAuthPlugin.__new__(UserAuthPlugin)
    if init is not object.__init__:
        init(proto, reauthenticate=False)
    attributes = dict(vars(proto))
    attributes.pop("_lock", None)  # one per plugin, made on first use (__getattr__)
    return attributes


_PROTOTYPE = _plugin_prototype()


_NEW = UserAuthPlugin.__new__


def _new_plugin(filt: Any, user_token: Optional[str], service_token: Optional[str], info: Any) -> Any:
    plugin = _NEW(UserAuthPlugin)
    plugin.__dict__ = {
        **_PROTOTYPE,
        "_filter": filt,
        "_user_token": user_token,
        "_service_token": service_token,
        "_token_info": info,
        "_user_ref": None,
    }
    return plugin


class AuthProtocol:
    """Validates ``X-Auth-Token`` (and ``X-Service-Token``) with Keystone, then calls ``app``
    with the identity headers set, or answers 401/503 itself."""

    def __init__(self, app: Callable[..., Any], conf: dict[str, Any]) -> None:
        self._app = app
        conf = dict(conf)
        self._log = logging.getLogger(conf.get("log_name") or DEFAULT_LOG_NAME)
        self._log.info("Starting tokenward auth_token middleware")
        options = _ks_config.collect(conf, self._log)
        self._native = _native.KeystoneAuthenticator(options, logger=self._log)
        for warning in self._native.warnings:
            self._log.warning(warning)
        self._strip = frozenset(self._native.strip_environ_keys)
        self._challenge = self._native.challenge
        self._bearer = self._native.accepts_bearer
        self.metrics_label = self._native.metrics_label(conf.get("log_name") or self._log.name)
        _track(self)

    def metric_samples(self) -> list[tuple[str, Optional[str], Optional[str], Any]]:
        """This filter's Prometheus samples (see ``tokenward.metrics``)."""
        return self._native.samples()

    @property
    def authenticator(self) -> _native.KeystoneAuthenticator:
        """The native authenticator (metrics)."""
        return self._native

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # Only the identity keys the request has (a set lookup per environ key).
        for key in self._strip.intersection(environ):
            del environ[key]
        user = environ.get("HTTP_X_AUTH_TOKEN")
        if user is None:
            user = environ.get("HTTP_X_STORAGE_TOKEN")
        if user is None and self._bearer:
            if environ.get("HTTP_AUTHORIZATION") is not None:
                return self._bearer_call(environ, start_response)
        service = environ.get("HTTP_X_SERVICE_TOKEN")
        method = environ.get("REQUEST_METHOD")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        try:
            outcome = self._native.lookup(user, service, method, path)
            if outcome is None:
                green = _green_executor()
                if green is not None:
                    outcome = green(self._native.check, user, service, method, path)
                else:
                    outcome = self._native.check(user, service, method, path)
                self._native.flush_logs()
        except _native.TokenwardError as error:
            return _internal_error(self._log, start_response, error)
        if outcome.allowed:
            environ.update(outcome.environ)
            info = outcome.token_info
            if info is None:
                plugin = _new_plugin(self, None, service.strip() if service else service, None)
            else:
                environ["keystone.token_info"] = info
                # One per token (and service token) while cached, with its own token_info.
                plugin = outcome.token_auth(
                    lambda: _new_plugin(self, user.strip(), service.strip() if service else service, outcome.token_info)
                )
            environ["keystone.token_auth"] = plugin
            return self._app(environ, self._start_response_for(start_response))
        start_response(outcome.status_line, outcome.headers)
        return [outcome.body]

    def _bearer_call(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """``bearer_validation``: an OAuth request, answered as the external_oauth2_token filter
        answers it (certificate binding and DPoP included; identity headers and
        ``external.token_info`` written natively)."""
        try:
            handled = self._native.handle_bearer(environ)
            if isinstance(handled, _native.Pending):
                handled = _settle(handled, environ)
        except _native.TokenwardError as error:
            return _internal_error(self._log, start_response, error)
        if handled is None:
            return self._app(environ, self._start_response_for(start_response))
        status, headers, body = handled
        start_response(status, headers)
        return [body]

    def _start_response_for(self, start_response: StartResponse) -> StartResponse:
        # An application's own 401 gets the Keystone challenge, once (native, as the OAuth filter's).
        return _native.ChallengingStart(start_response, self._challenge)


def filter_factory(global_conf: dict[str, Any], **local_conf: Any) -> Callable[..., Any]:
    """paste.deploy filter factory: ``local_conf`` over ``global_conf``, as the reference."""
    conf = dict(global_conf)
    conf.update(local_conf)

    def auth_filter(app: Callable[..., Any]) -> AuthProtocol:
        return AuthProtocol(app, conf)

    return auth_filter


def app_factory(global_conf: dict[str, Any], **local_conf: Any) -> AuthProtocol:
    """paste.deploy app factory (the filter in front of no application), as the reference."""
    conf = dict(global_conf)
    conf.update(local_conf)
    return AuthProtocol(None, conf)  # type: ignore[arg-type]
