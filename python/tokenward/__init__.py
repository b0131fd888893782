"""tokenward: OAuth 2.0 bearer-token validation for OpenStack services, on a Rust core.

``tokenward.external_oauth2_token:filter_factory`` is a drop-in for
``keystonemiddleware.external_oauth2_token`` in paste pipelines.
"""

from tokenward._native import Authenticator, Outcome, __version__
from tokenward.exceptions import ConfigurationError, TokenwardError

__all__ = ["Authenticator", "ConfigurationError", "Outcome", "TokenwardError", "__version__"]
