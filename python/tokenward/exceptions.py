"""Exceptions raised by tokenward. Token refusals are not exceptions: they are outcomes."""

from tokenward._native import ConfigurationError, TokenwardError

__all__ = ["ConfigurationError", "TokenwardError"]
