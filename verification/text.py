"""Text that comes from an implementation under test (exception messages, reprs), made safe to keep.

Such text may hold ANSI escape sequences (which would repaint a terminal or a CI log), other control
characters, or lone surrogates (which cannot be encoded as UTF-8 and would crash every writer). Everything
the suite records from an implementation goes through :func:`clean_text` once, when it is recorded; the
renderers escape their own markup (Markdown, HTML, XML) on top.
"""

from __future__ import annotations

import re

__all__ = ["clean_text", "last_line"]

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-character escapes
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
# C0 and C1 control characters other than tab and newline
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: object, limit: int | None = None) -> str:
    """``str(text)`` without ANSI escapes or control characters (tab and newline kept), lone surrogates
    replaced by U+FFFD, cut to ``limit`` characters (with an ellipsis) when given."""
    s = text if isinstance(text, str) else str(text)
    s = s.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> '?'
    s = _CONTROL.sub("", _ANSI.sub("", s.replace("\r\n", "\n").replace("\r", "\n")))
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 1)] + "…"
    return s


def last_line(text: object, limit: int = 300) -> str:
    """The last non-empty line of ``text`` (cleaned): the line that says what went wrong in a multi-line
    exception message, whose first line is often a header."""
    lines = [ln.strip() for ln in clean_text(text).splitlines() if ln.strip()]
    return clean_text(lines[-1], limit) if lines else ""
