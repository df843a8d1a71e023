"""Admin of the mailqueue app."""

from django.contrib import admin  # noqa: F401
