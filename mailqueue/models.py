"""Models of the mailqueue app."""

from django.db import models  # noqa: F401
