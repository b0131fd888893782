"""Outbound access tokens by the Client Credentials grant, for calls to other services
(Tacker's ``use_ext_oauth2_auth``), from the same ``[ext_oauth2_auth]`` options.

``ClientCredentials`` is a keystoneauth1 auth plugin when keystoneauth1 is installed (it stays
optional): a Session sends ``Authorization: Bearer …`` and, on a 401, invalidates and retries
once. ``BearerAuth`` does the same for plain ``requests``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from tokenward import _native
from tokenward._config import GROUP, as_text
from tokenward._tracking import track as _track
from tokenward.external_oauth2_token import _green_executor

__all__ = [
    "OPTION_NAMES",
    "AuthServerUnavailableError",
    "BearerAuth",
    "ClientCredentials",
    "ClientCredentialsLoader",
    "CredentialsRejectedError",
    "TokenRequestError",
]

TokenRequestError = _native.TokenRequestError
CredentialsRejectedError = _native.CredentialsRejectedError
AuthServerUnavailableError = _native.AuthServerUnavailableError

#: The core's rows of the options the outbound client reads: name -> (kind, default, help,
#: required). Names, kinds and defaults come from the one option table, not from here.
_CLIENT_OPTIONS: dict[str, tuple[str, Optional[str], str, bool]] = {
    row[0]: (row[1], row[2], row[3], required) for row, required in _native.client_options()
}
#: Tacker's option names for the outbound client (plus tokenward's own).
OPTION_NAMES = tuple(_CLIENT_OPTIONS)

try:
    from keystoneauth1 import plugin as _ksa_plugin

    _PluginBase: Any = _ksa_plugin.BaseAuthPlugin
except ImportError:  # keystoneauth1 is optional
    _PluginBase = object


class ClientCredentials(_PluginBase):  # type: ignore[misc]
    """A token source for one client; equal clients in a process share one cached token."""

    def __init__(self, **options: Any) -> None:
        if _PluginBase is not object:
            super().__init__()
        unknown = set(options) - set(OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        self._options = {k: t for k, v in options.items() if (t := as_text(v)) not in (None, "")}
        self._native = _native.TokenClient(self._options)
        self.metrics_label = self._options.get("metrics_name") or f"client:{self._options.get('client_id', '')}"
        _track(self)

    def metric_samples(self) -> list[tuple[str, Optional[str], Optional[str], Any]]:
        """This client's Prometheus samples (see ``tokenward.metrics``)."""
        return self._native.samples()

    @classmethod
    def from_config(cls, section: Any) -> ClientCredentials:
        """From an oslo.config group (``CONF.ext_oauth2_auth``) or a mapping."""
        values: dict[str, Any] = {}
        for name in OPTION_NAMES:
            try:
                value = section[name] if isinstance(section, Mapping) else getattr(section, name)
            except (KeyError, AttributeError, LookupError):
                continue
            except Exception:  # noqa: S112 - oslo.config's NoSuchOptError: not registered there
                continue
            if value is not None:
                values[name] = value
        return cls(**values)

    # -- the keystoneauth1 plugin interface ------------------------------------------------
    def get_token(self, session: Any = None, **kwargs: Any) -> str:
        """A valid access token (cached, or fetched; off the hub under eventlet)."""
        token = self._native.cached()
        if token is None:
            green = _green_executor()
            token = green(self._native.fetch) if green is not None else self._native.fetch()
        return token

    def get_headers(self, session: Any = None, **kwargs: Any) -> dict[str, str]:
        """keystoneauth1 knows no request URL here, so this stays Bearer: with
        ``dpop_key_file`` use :class:`BearerAuth` (``requests``), which sends DPoP."""
        return {"Authorization": f"Bearer {self.get_token(session)}"}

    def authorization(self, method: str, url: str) -> tuple[str, Optional[str]]:
        """``(Authorization value, DPoP proof or None)`` for one request: ``DPoP <token>``
        and a fresh proof for a DPoP-bound token, else ``Bearer <token>``."""
        pair = self._native.authorization(method, url, False)
        if pair is None:
            green = _green_executor()
            if green is not None:
                pair = green(self._native.authorization, method, url, True)
            else:
                pair = self._native.authorization(method, url, True)
        assert pair is not None
        return pair

    def invalidate(self) -> bool:
        """Drops the cached token; the next call fetches a new one."""
        self._native.invalidate()
        return True

    def get_endpoint(self, session: Any, **kwargs: Any) -> Optional[str]:
        """No service catalog here: the caller's ``endpoint_override``, if any."""
        return kwargs.get("endpoint_override")

    def get_connection_params(self, session: Any, **kwargs: Any) -> dict[str, Any]:
        """The client certificate for resource calls (certificate-bound tokens need it)."""
        cert = self._native.session_settings()[1]
        return {"cert": cert} if cert else {}

    # -- conveniences ------------------------------------------------------------------------
    def create_session(self, **kwargs: Any) -> Any:
        """A keystoneauth1 Session with the configured TLS settings and this plugin, like
        Tacker's ``ExtOAuth2Auth.create_session``."""
        from keystoneauth1 import session as ksa_session

        # Parsed by the core: the same boolean spellings and bounds as everywhere else.
        verify, cert, timeout = self._native.session_settings()
        return ksa_session.Session(
            auth=self,
            verify=verify,
            cert=cert,
            timeout=timeout,
            user_agent="tokenward",
            **kwargs,
        )

    @property
    def requests_sent(self) -> int:
        """Token requests sent for this client's shared cache (for tests and metrics)."""
        return self._native.requests_sent()

    def __repr__(self) -> str:
        endpoint, client = self._options.get("token_endpoint"), self._options.get("client_id")
        return f"ClientCredentials(token_endpoint={endpoint!r}, client_id={client!r})"


try:
    from keystoneauth1 import loading as _ksa_loading

    class ClientCredentialsLoader(_ksa_loading.BaseLoader):  # type: ignore[misc]
        """keystoneauth1 loader, entry point ``tokenward_client_credentials``."""

        @property
        def plugin_class(self) -> type:
            return ClientCredentials

        def get_options(self) -> list[Any]:
            kinds: dict[str, type] = {"bool": bool, "int": int}
            opts = []
            for name, (kind, default, help_text, required) in _CLIENT_OPTIONS.items():
                convert = kinds.get(kind, str)
                opts.append(
                    _ksa_loading.Opt(
                        name.replace("_", "-"),
                        type=convert,
                        secret=kind == "secret",
                        required=required,
                        # The core applies its defaults; the loader passes only what is set.
                        help=f"[{GROUP}] {name}: {help_text}" + (f" (default {default})" if default else ""),
                    )
                )
            return opts

except ImportError:  # pragma: no cover - keystoneauth1 not installed

    class ClientCredentialsLoader:  # type: ignore[no-redef]
        """Placeholder: keystoneauth1 is not installed."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise ImportError("keystoneauth1 is required for the keystoneauth1 loader")


class BearerAuth:
    """``requests`` auth: sends the token (``Bearer``, or ``DPoP`` with a fresh proof per
    request for a DPoP-bound token); on a 401 invalidates and retries once."""

    def __init__(self, credentials: ClientCredentials) -> None:
        self.credentials = credentials

    def _sign(self, request: Any) -> None:
        value, proof = self.credentials.authorization(request.method or "GET", request.url)
        request.headers["Authorization"] = value
        if proof is not None:
            request.headers["DPoP"] = proof
        else:
            request.headers.pop("DPoP", None)

    def __call__(self, request: Any) -> Any:
        self._sign(request)
        request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(self, response: Any, **kwargs: Any) -> Any:
        if response.status_code != 401 or getattr(response.request, "_tokenward_retried", False):
            return response
        self.credentials.invalidate()
        _ = response.content
        response.close()
        retry = response.request.copy()
        self._sign(retry)
        retry._tokenward_retried = True
        again = response.connection.send(retry, **kwargs)
        again.history.append(response)
        again.request = retry
        return again
