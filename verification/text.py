"""Text that comes from an implementation under test (exception messages, reprs), made safe to keep.

Such text may hold ANSI escape sequences (which would repaint a terminal or a CI log), other control
characters, or lone surrogates (which cannot be encoded as UTF-8 and would crash every writer). Everything
the suite records from an implementation goes through :func:`clean_text` once, when it is recorded; the
renderers escape their own markup (Markdown, HTML, XML) on top.
"""

from __future__ import annotations

import re

__all__ = ["clean_text", "last_line", "describe_exception"]

# CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), and two-character escapes
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]")
# C0 and C1 control characters other than tab and newline
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# the listing of the call's arguments that Keras appends to an error raised inside a layer ("Call arguments
# received by layer 'name' (type Cls):" in Keras 2, "Arguments received by Cls.call():" in Keras 3, then one
# "• name=value" line per argument)
_ARGUMENT_LISTING = re.compile(r"^(Call arguments|Arguments) received by\b")


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
    exception message, whose first line is often a header. A trailing listing of the call's arguments (as
    Keras appends one to an error raised inside a layer) is not that line: the last line before it is."""
    lines = [ln.strip() for ln in clean_text(text).splitlines() if ln.strip()]
    cut = next((i for i, ln in enumerate(lines) if i > 0 and _ARGUMENT_LISTING.match(ln)), len(lines))
    lines = lines[:cut]
    return clean_text(lines[-1], limit) if lines else ""


def describe_exception(exc: BaseException, limit: int = 300) -> str:
    """``"Type: what went wrong"`` for an exception raised by an implementation: the last line of a multi-line
    message (:func:`last_line`); for an ``AssertionError`` without a message, the failing source line of the
    innermost frame that has one (``assert block_size % 2 == 1`` at ``mod.py:12``)."""
    import traceback

    text = last_line(exc, limit)
    if not text and isinstance(exc, AssertionError) and exc.__traceback__ is not None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.line]
        if frames:
            f = frames[-1]
            where = f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}"
            text = clean_text(f"{(f.line or '').strip()} (at {where})", limit)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
