"""The secrets a script declares: ``# Secrets: NAME, OTHER`` lines (like
``# Requirements:``), names of environment variables it expects."""

import re

_SECRETS_COMMENT = re.compile(r"(?im)^[ \t]*#[ \t]*secrets?[ \t]*:[ \t]*(?P<list>.+?)[ \t]*$")
_NAME = re.compile(r"^[A-Z_][A-Z0-9_]{0,63}$")


def declared_secrets(source: str) -> tuple[list[str], list[str]]:
    """(names in first-seen order, warnings for entries that are no valid name)."""
    names: list[str] = []
    warnings: list[str] = []
    for match in _SECRETS_COMMENT.finditer(source):
        for item in re.split(r"[,\s]+", match.group("list")):
            if not item:
                continue
            if not _NAME.match(item):
                warnings.append(f"'{item}' in '# Secrets:' is not an environment variable name.")
            elif item not in names:
                names.append(item)
    return names, warnings
