"""Fixtures of the vault tests (the executions tests' script upload)."""

from tests.executions.conftest import upload  # noqa: F401
