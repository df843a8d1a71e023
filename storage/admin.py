"""Admin of the storage app."""

from django.contrib import admin  # noqa: F401
