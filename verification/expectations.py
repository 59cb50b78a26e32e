"""Known deviations: an expectations file that marks checks as expected to fail (``xfail``) or not to run
(``skip``), so that a project shipping a DropBlock with a known, tracked defect keeps a green gate until
something new breaks.

File format (one expectation per line; ``#`` at the start of a line or after a space starts a comment)::

    # PATTERN                            KIND   REASON                                   [LINK]
    timm::P.all_dropped[cpu,float16       xfail  NaN when everything drops in float16     https://github.com/o/r/issues/1
    T0.argument_validation                xfail  drop_prob is not range-checked
    timm::T2.oversize_block               skip   blocks larger than the map are out of scope

``PATTERN`` is a prefix of a check instance's id, ``SPEC::CHECK[DEVICE,DTYPE,Nd]`` (``timm::T1.lattice_rate[cpu,
float32,2d]``); a pattern without ``::`` applies to every implementation. ``KIND`` is ``xfail`` or ``skip``; the
reason is the rest of the line, and a last word starting with ``http://`` or ``https://`` is its link. The first
matching line decides.

Semantics (strict, as array-api-tests' xfails and web-platform-tests' expectations): an ``xfail`` check that
fails is recorded as ``xfail`` and does not fail the run; one that passes is ``xpass``, which fails the run (the
file must stay true). Expectations never hide a crash, a time-out, a check not run or an error: those keep their
verdicts. A ``skip`` check is not run. A pattern that matches no planned check is reported with a warning.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Expectation", "ExpectationError", "parse_expectations", "read_expectations", "match", "apply",
           "from_pyproject", "unmatched"]

KINDS = ("xfail", "skip")


class ExpectationError(ValueError):
    """A malformed expectations file; the message names the file and line."""


@dataclass(frozen=True)
class Expectation:
    """One line of an expectations file."""

    pattern: str
    kind: str
    reason: str
    link: str = ""

    def matches(self, item_id: str) -> bool:
        """Whether ``item_id`` (``SPEC::CHECK[...]``) falls under this pattern."""
        if "::" in self.pattern:
            return item_id.startswith(self.pattern)
        return item_id.split("::", 1)[-1].startswith(self.pattern)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def parse_expectations(text: str, source: str = "expectations") -> list[Expectation]:
    """The expectations of a file's text.

    Raises
    ------
    ExpectationError
        A line with fewer than three fields, an unknown kind, or no reason.
    """
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line:
            continue
        parts = line.split()
        if len(parts) < 3:
            raise ExpectationError(f"{source}:{number}: expected 'PATTERN xfail|skip REASON [LINK]', "
                                   f"got {raw.strip()!r}")
        pattern, kind, *rest = parts
        if kind not in KINDS:
            raise ExpectationError(f"{source}:{number}: kind must be xfail or skip, got {kind!r}")
        link = rest.pop() if rest[-1].startswith(("http://", "https://")) else ""
        if not rest:
            raise ExpectationError(f"{source}:{number}: {pattern} {kind} needs a reason")
        out.append(Expectation(pattern, kind, " ".join(rest), link))
    return out


def _strip_comment(raw: str) -> str:
    """The line without its comment: ``#`` at its start or after whitespace (a link may hold ``#``)."""
    text = raw.strip()
    if text.startswith("#"):
        return ""
    for i, ch in enumerate(text):
        if ch == "#" and i > 0 and text[i - 1].isspace():
            return text[:i].strip()
    return text


def read_expectations(path: str) -> list[Expectation]:
    """The expectations of a file. Raises :class:`ExpectationError` (unreadable or malformed file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ExpectationError(f"cannot read expectations file {path!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ExpectationError(f"expectations file {path!r} is not UTF-8 text: {exc}") from None
    return parse_expectations(text, path)


def from_pyproject(folder: str = ".") -> str | None:
    """The ``expectations`` path of ``[tool.dropblock-conformance]`` in ``folder/pyproject.toml`` (relative
    paths are relative to that folder), or None."""
    from .pyproject import tool_table

    path, table = tool_table(folder, ExpectationError)
    value = table.get("expectations")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ExpectationError(f"{path}: [tool.dropblock-conformance] expectations must be a path, got {value!r}")
    return os.path.join(folder, value)


def match(expectations: list[dict[str, Any]] | list[Expectation], item_id: str) -> Expectation | None:
    """The first expectation whose pattern covers ``item_id``."""
    for e in expectations:
        exp = e if isinstance(e, Expectation) else Expectation(**e)
        if exp.matches(item_id):
            return exp
    return None


def apply(exp: Expectation | None, result: dict[str, Any]) -> dict[str, Any]:
    """A result dict with an ``xfail`` expectation applied: ``fail`` becomes ``xfail``, ``pass`` becomes
    ``xpass``; every other verdict (errors, crashes, time-outs, checks not run) stays as it is."""
    if exp is None or exp.kind != "xfail" or result.get("verdict") not in ("fail", "pass"):
        return result
    out = dict(result)
    details = {**(result.get("details") or {}), "expectation": exp.to_dict()}
    if result["verdict"] == "fail":
        out.update(verdict="xfail", message=f"expected failure ({exp.reason}): {result.get('message', '')}",
                   details=details)
    else:
        out.update(verdict="xpass", message=f"expected to fail ({exp.reason}) but passed: remove the expectation "
                                            f"{exp.pattern!r}; {result.get('message', '')}", details=details)
    return out


def unmatched(expectations: list[dict[str, Any]], item_ids: list[str]) -> list[str]:
    """Patterns that cover none of ``item_ids``."""
    return [e["pattern"] for e in expectations if not any(Expectation(**e).matches(i) for i in item_ids)]
