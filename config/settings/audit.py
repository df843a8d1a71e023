"""Audit log settings."""

from .env import env

# Audit events older than this many days are deleted daily (django-q2 schedule, or
# `manage.py prune_audit`); 0 keeps every event.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=0)
