"""Admin of the scripts app."""

from django.contrib import admin  # noqa: F401
