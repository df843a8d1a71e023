"""Admin of the executions app."""

from django.contrib import admin  # noqa: F401
