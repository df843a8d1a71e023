"""Scriptorium settings package.

``config.settings`` is the development default (``base``); production uses
``config.settings.production`` and tests ``config.settings.test``.
"""

from .base import *  # noqa: F401,F403
