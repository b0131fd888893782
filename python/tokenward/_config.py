"""Where option values come from, as in keystonemiddleware 13.0.1: the paste section first,
then the ``[ext_oauth2_auth]`` group of oslo.config (when installed): ``oslo_config_config``,
else a fresh ``ConfigOpts`` for ``oslo_config_project``/``oslo_config_file``, else the global
``cfg.CONF``. The result is a flat dict of strings for the core's one parser."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Optional

from tokenward import _native

GROUP = "ext_oauth2_auth"

# Paste-only keys that steer loading and are not options.
_LOADER_KEYS = ("oslo_config_config", "oslo_config_project", "oslo_config_file", "log_name")


def _oslo_opts() -> list[Any]:
    from oslo_config import cfg

    opts = []
    for name, kind, default, help_text, choices, origin in _native.options():
        if name == "memcache_servers":
            continue  # registered as the deprecated name of memcached_servers
        if origin == "keystonemiddleware.auth_token":
            continue  # the auth_token filter's, in [keystone_authtoken]
        kwargs: dict[str, Any] = {"help": help_text}
        if kind == "bool":
            opt = cfg.BoolOpt(name, default=default == "true", **kwargs)
        elif kind == "int":
            opt = cfg.IntOpt(name, default=None if default is None else int(default), **kwargs)
        elif kind == "list":
            extra = {"deprecated_name": "memcache_servers"} if name == "memcached_servers" else {}
            opt = cfg.ListOpt(name, default=None, **kwargs, **extra)
        elif kind == "choice":
            opt = cfg.StrOpt(name, default=default, choices=choices, ignore_case=True, **kwargs)
        else:
            opt = cfg.StrOpt(name, default=default, secret=kind == "secret", **kwargs)
        opts.append(opt)
    return opts


def list_opts() -> list[tuple[str, list[Any]]]:
    """oslo-config-generator hook (entry point ``oslo.config.opts``)."""
    return [(GROUP, _oslo_opts())]


def register(conf: Any) -> None:
    """Registers tokenward's options on ``conf``; options the service (Tacker) or
    keystonemiddleware registered already are kept as they are."""
    from oslo_config import cfg

    if conf is cfg.CONF:
        import_keystonemiddleware_first("keystonemiddleware.external_oauth2_token")
    register_opts(conf, _oslo_opts(), GROUP)


def import_keystonemiddleware_first(module: str) -> None:
    """Imports keystonemiddleware's ``module`` before tokenward registers on the global CONF:
    it registers its own definitions of the options there when imported, and importing it later
    (in the same process, or by oslo-config-generator) would raise DuplicateOptError."""
    try:
        importlib.import_module(module)
    except Exception:  # noqa: S110 - not installed, or broken: nothing to make room for
        pass


def register_opts(conf: Any, opts: list[Any], group: str) -> None:
    """Registers ``opts`` in ``group``; an option the service or keystonemiddleware registered
    already is kept as it is."""
    from oslo_config import cfg

    for opt in opts:
        try:
            conf.register_opt(opt, group=group)
        except cfg.DuplicateOptError:
            pass


def oslo_config_of(conf: dict[str, Any], log: logging.Logger) -> Optional[Any]:
    """The oslo.config ``ConfigOpts`` a paste section names: ``oslo_config_config``, else a fresh
    one for ``oslo_config_project``/``oslo_config_file``, else the global ``cfg.CONF``; None
    (with a warning when a project is named) without oslo.config."""
    try:
        from oslo_config import cfg
    except ImportError:
        if conf.get("oslo_config_project"):
            log.warning("oslo_config_project is set but oslo.config is not installed")
        return None
    oslo = conf.get("oslo_config_config")
    if oslo is None:
        project = conf.get("oslo_config_project")
        if project:
            oslo = cfg.ConfigOpts()
            files = [conf["oslo_config_file"]] if conf.get("oslo_config_file") else None
            oslo([], project=project, default_config_files=files, validate_default_values=True)
        else:
            oslo = cfg.CONF
    return oslo


def as_text(value: Any) -> Optional[str]:
    """An option value as the core's parser wants it; None means unset."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def paste_options(conf: dict[str, Any]) -> dict[str, str]:
    """The paste section's option values as text, without the loader's keys and unset values."""
    options: dict[str, str] = {}
    for key, value in conf.items():
        if key in _LOADER_KEYS:
            continue
        text = as_text(value)
        if text is not None and text != "":
            options[key] = text
    return options


def collect(conf: dict[str, Any], log: logging.Logger) -> dict[str, str]:
    """Merges paste values over oslo.config values into one flat dict of strings."""
    options = paste_options(conf)
    oslo = oslo_config_of(conf, log)
    if oslo is not None:
        register(oslo)
        group = getattr(oslo, GROUP)
        for name, _kind, default, *_ in _native.options():
            if name in options or name == "memcache_servers":
                continue
            try:
                value = getattr(group, name)
            except Exception:  # noqa: S112 - NoSuchOptError and friends: not set there
                continue
            text = as_text(value)
            # The core's default is not passed on: it changes nothing, and an option passed
            # counts as given (validation = jwt warns about introspection-only options given).
            if text and text != default:
                options[name] = text
    return options
