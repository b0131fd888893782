"""tokenward: OAuth 2.0 bearer-token validation for OpenStack services, on a Rust core.

``tokenward.external_oauth2_token:filter_factory`` is a drop-in for
``keystonemiddleware.external_oauth2_token`` in paste pipelines, and
``tokenward.auth_token:filter_factory`` (paste ``egg:tokenward#auth_token``) for the common use
of ``keystonemiddleware.auth_token`` (Keystone tokens, ``validation = keystone``).
"""

from tokenward._native import Authenticator, Outcome, __version__
from tokenward.exceptions import ConfigurationError, TokenwardError

__all__ = ["Authenticator", "ConfigurationError", "Outcome", "TokenwardError", "__version__"]
