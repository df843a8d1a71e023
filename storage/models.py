"""Models of the storage app."""

from django.db import models  # noqa: F401
