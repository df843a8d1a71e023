"""Models of the executions app."""

from django.db import models  # noqa: F401
