"""The root of vidqueue's error tree, and the one error the configuration raises.

The rest of the tree is ``workers.domain.errors``, which re-exports both, so code imports every
error from there. Only these two live here: the settings and the providers file must refuse a
bad configuration without importing the workers package (``config`` sits below it).
"""

from __future__ import annotations


class VidqueueError(Exception):
    """Root of every error vidqueue raises."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(VidqueueError):
    """The settings or the providers file are wrong; the process must not start."""

    code = "config_error"
