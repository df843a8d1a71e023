"""Hooks the vault offers to the apps above it (which it never imports).

``register_rotator(label, fn)``: ``fn() -> int`` re-encrypts what its app keeps with
vault.crypto under the newest SECRETS_KEYS key and returns how many values it
rewrote (raising vault.crypto.DecryptionFailed, with what failed in its message,
when one cannot be opened). ``manage.py rotate_secrets`` calls every one after the
secrets themselves; mailqueue registers its SMTP passwords."""

from collections.abc import Callable

_rotators: dict[str, Callable[[], int]] = {}


def register_rotator(label: str, rotator: Callable[[], int]) -> None:
    """Add (or replace) the rotator shown as ``label`` ("SMTP password(s)")."""
    _rotators[label] = rotator


def rotators() -> dict[str, Callable[[], int]]:
    """Every registered rotator by label, in registration order."""
    return dict(_rotators)
