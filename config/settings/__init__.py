"""Scriptorium settings package.

``config.settings`` is the development default (the ``base`` module); production uses
``config.settings.production`` and tests ``config.settings.test``. Python imports this
package before any of its modules, so ``base`` is loaded here only when the package
itself is the settings module: the test settings must prepare the environment
(DATA_DIR) before ``base`` reads it.
"""

import os

if os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings") == "config.settings":
    from .base import *  # noqa: F401,F403
