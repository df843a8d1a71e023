"""Secret values never reach a run's stored log or its live events: ``Masker`` sits
between the output stream and ``on_log`` and replaces every occurrence of a secret
value with ``MASK``, also when the value arrives split across chunks."""

from collections.abc import Callable, Iterable

MASK = "********"
MIN_LENGTH = 4  # shorter values would mask ordinary words; they are refused at save time


class Masker:
    """Wraps ``on_log``. Text that could be the start of a secret is held back until
    the next chunk (or ``flush``) shows whether it is; everything else passes at once,
    so live logs are not delayed by masking."""

    def __init__(self, on_log: Callable[[str], None], secrets: Iterable[str]):
        self.on_log = on_log
        self.values = sorted({s for s in secrets if len(s) >= MIN_LENGTH}, key=len, reverse=True)
        self.pending = ""

    def __call__(self, text: str) -> None:
        if not self.values:
            self.on_log(text)
            return
        text = self.pending + text
        for value in self.values:
            text = text.replace(value, MASK)
        keep = self._held_back(text)
        self.pending = text[len(text) - keep :] if keep else ""
        out = text[: len(text) - keep]
        if out:
            self.on_log(out)

    def _held_back(self, text: str) -> int:
        """How many trailing characters may begin a secret value."""
        longest = 0
        for value in self.values:
            for size in range(min(len(value) - 1, len(text)), longest, -1):
                if value.startswith(text[-size:]):
                    longest = size
                    break
        return longest

    def flush(self) -> None:
        """Send what was held back (the run has ended: it was no secret)."""
        if self.pending:
            self.on_log(self.pending)
            self.pending = ""


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret value (of at least MIN_LENGTH characters) masked."""
    for value in sorted({s for s in secrets if len(s) >= MIN_LENGTH}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
