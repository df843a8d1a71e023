"""Python source -> highlighted, escaped HTML (standard library only: ``tokenize``).
Used by the admin to show a script's source read-only."""

import io
import keyword
import token
import tokenize

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_CSS = (
    "<style>.py-src{background:#f8f8f8;color:#222;padding:8px;overflow:auto;max-height:40em;"
    "font:12px/1.4 monospace;white-space:pre;border:1px solid #ddd}.py-src .k{color:#0000aa;"
    "font-weight:bold}.py-src .s{color:#aa5500}.py-src .c{color:#888;font-style:italic}"
    ".py-src .n{color:#009999}.py-src .d{color:#00aa00}</style>"
)


def _css_class(tok: tokenize.TokenInfo, previous: str) -> str | None:
    if tok.type == token.NAME:
        if keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string):
            return "k"
        if previous in ("def", "class"):
            return "d"
        return None
    if tok.type == token.STRING or tok.type in _FSTRING_TYPES:
        return "s"
    if tok.type == token.COMMENT:
        return "c"
    if tok.type == token.NUMBER:
        return "n"
    return None


_FSTRING_TYPES = {
    getattr(token, n)
    for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
    if hasattr(token, n)
}


def highlight(source: str) -> SafeString:
    """The source as a ``<pre>`` with keywords, strings, comments, numbers and defined
    names marked; falls back to plain escaped text when it does not tokenize."""
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    out: list[str] = []
    position = 0
    previous = ""
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == token.ENDMARKER:
                break
            start = offsets[tok.start[0] - 1] + tok.start[1]
            end = offsets[tok.end[0] - 1] + tok.end[1]
            if start < position:
                continue
            out.append(escape(source[position:start]))
            text = escape(source[start:end])
            css = _css_class(tok, previous)
            out.append(f'<span class="{css}">{text}</span>' if css else text)
            position = end
            if tok.type == token.NAME:
                previous = tok.string
    except (tokenize.TokenError, SyntaxError, IndexError):
        out, position = [], 0
    out.append(escape(source[position:]))
    return mark_safe(_CSS + '<pre class="py-src">' + "".join(out) + "</pre>")  # noqa: S308
