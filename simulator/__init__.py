"""A provider simulator: a real HTTP server speaking Zhipu's video-generation wire format.

Used by vidqueue's tests and local stack in place of a paid provider. Start it with
``python -m simulator`` (or ``vidqueue sim``), or build an ASGI app with :func:`create_app`.
"""

from simulator.app import create_app
from simulator.options import SimOptions

__all__ = ["SimOptions", "create_app"]
