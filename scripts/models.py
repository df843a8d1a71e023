"""Models of the scripts app."""

from django.db import models  # noqa: F401
