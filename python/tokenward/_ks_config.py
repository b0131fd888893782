"""Where the ``auth_token`` filter's option values come from, as in keystonemiddleware 13.0.1:
the paste section first, then oslo.config's ``[keystone_authtoken]`` group (``oslo_config_config``,
else a fresh ``ConfigOpts`` for ``oslo_config_project``/``oslo_config_file``, else the global
``cfg.CONF``), with ``auth_type`` and the plugin options (``auth_url``, ``username``, ...) read
from the group that ``auth_section`` names. The result is a flat dict of strings for the core's
one parser (``validation = keystone``)."""

from __future__ import annotations

import logging
from typing import Any, Optional

from tokenward import _native
from tokenward._config import as_text, import_keystonemiddleware_first, oslo_config_of, paste_options, register_opts

GROUP = "keystone_authtoken"


def _specs() -> dict[str, tuple[str, Optional[str], str, Any]]:
    """name → (kind, default, help, choices) of every option the filter reads."""
    rows = {row[0]: (row[1], row[2], row[3], row[4]) for row in _native.options()}
    return {name: rows[name] for name, _plugin in _native.keystone_options()}


def _opt(name: str, kind: str, default: Optional[str], help_text: str, choices: Any) -> Any:
    from oslo_config import cfg

    if kind == "bool":
        return cfg.BoolOpt(name, default=default == "true", help=help_text)
    if kind == "int":
        return cfg.IntOpt(name, default=None if default is None else int(default), help=help_text)
    if kind == "list":
        extra = {"deprecated_name": "memcache_servers"} if name == "memcached_servers" else {}
        return cfg.ListOpt(name, default=None if default is None else default.split(","), help=help_text, **extra)
    if kind == "choice":
        return cfg.StrOpt(name, default=default, choices=choices, ignore_case=True, help=help_text)
    return cfg.StrOpt(name, default=default, secret=kind == "secret", help=help_text)


def _group_opts() -> list[Any]:
    """The ``[keystone_authtoken]`` options (not the plugin's, which keystoneauth registers)."""
    plugin = {name for name, is_plugin in _native.keystone_options() if is_plugin}
    return [
        _opt(name, *spec)
        for name, spec in _specs().items()
        if name not in plugin and name not in ("memcache_servers", "validation")
    ]


def list_opts() -> list[tuple[str, list[Any]]]:
    """oslo-config-generator hook."""
    return [(GROUP, _group_opts())]


def _plugin_opts(auth_type: Optional[str]) -> list[Any]:
    """The options of the plugin, as keystoneauth registers them (so a service that also
    registers them sees no conflict); tokenward's own definitions without keystoneauth."""
    if auth_type:
        try:
            from keystoneauth1 import loading

            return list(loading.get_auth_plugin_conf_options(auth_type))
        except Exception:  # noqa: S110 - not installed, or an unknown plugin: the core says which
            pass
    specs = _specs()
    return [_opt(name, *specs[name]) for name, is_plugin in _native.keystone_options() if is_plugin]


def _oslo_conf(conf: dict[str, Any], log: logging.Logger) -> Optional[Any]:
    oslo = oslo_config_of(conf, log)
    if oslo is None:
        return None
    from oslo_config import cfg

    if oslo is cfg.CONF:
        import_keystonemiddleware_first("keystonemiddleware.auth_token")
    register_opts(oslo, _group_opts(), GROUP)
    register_opts(oslo, [cfg.StrOpt("auth_type"), cfg.StrOpt("auth_section")], GROUP)
    return oslo


def _read(oslo: Any, group: str, name: str) -> Optional[str]:
    try:
        value = oslo[group][name]
    except Exception:  # NoSuchOptError, NoSuchGroupError: not set there
        return None
    text = as_text(value)
    return text if text else None


def collect(conf: dict[str, Any], log: logging.Logger) -> dict[str, str]:
    """Paste values over oslo.config values, one flat dict of strings."""
    options = paste_options(conf)
    oslo = _oslo_conf(conf, log)
    if oslo is None:
        return options
    specs = _specs()
    plugin = {name for name, is_plugin in _native.keystone_options() if is_plugin}
    for name, (_kind, default, *_rest) in specs.items():
        if name in options or name in plugin or name in ("memcache_servers", "validation"):
            continue
        text = _read(oslo, GROUP, name)
        # The core's default changes nothing, and a value passed counts as given.
        if text is not None and text != default:
            options[name] = text
    if options.get("bearer_validation"):
        # OAuth bearer tokens too: the OAuth filter's options, from this group as well.
        rows = {row[0]: row for row in _native.options()}
        oauth = [
            name
            for name, row in rows.items()
            if name not in specs and name != "memcache_servers" and row[5] != "keystonemiddleware.auth_token"
        ]
        register_opts(oslo, [_opt(name, *rows[name][1:5]) for name in oauth], GROUP)
        for name in oauth:
            if name not in options:
                text = _read(oslo, GROUP, name)
                if text is not None and text != rows[name][2]:
                    options[name] = text
    section = options.get("auth_section") or _read(oslo, GROUP, "auth_section")
    group = section or GROUP
    if section:
        register_opts(oslo, [_opt_str("auth_type")], group)
    auth_type = options.get("auth_type") or _read(oslo, group, "auth_type")
    if auth_type:
        options.setdefault("auth_type", auth_type)
    for opt in _plugin_opts(auth_type):
        register_opts(oslo, [opt], group)
        name = opt.dest
        if name in options or name not in plugin:
            continue
        text = _read(oslo, group, name)
        if text is not None:
            options[name] = text
    return options


def _opt_str(name: str) -> Any:
    from oslo_config import cfg

    return cfg.StrOpt(name)
