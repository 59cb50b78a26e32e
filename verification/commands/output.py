"""The terminal and the output folder of ``dropblock-verify run``: progress, summary, lock, log.

Text from implementations reaches the terminal only through :func:`verification.text.clean_text` (no
escape sequences).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any

from ..cli import UsageError
from ..results import BAD_VERDICTS
from ..text import clean_text

__all__ = ["OutputFolder", "Progress", "print_summary"]

# Files a run writes into its output folder (a new run replaces them, and nothing else).
RUN_FILES = ("results.jsonl", "report.json", "report.md", "report.html", "junit.xml", "pip-freeze.txt",
             "pytest.log")


class OutputFolder:
    """``--out``: checked before anything runs, locked while a run writes to it, never followed out of
    through a symbolic link, removed again when a run that created it fails before writing anything."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.created = False
        self.log = os.path.join(path, "pytest.log")

    def check(self) -> None:
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise UsageError(f"--out {self.path!r} is a file, not a folder")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(self.path) and not os.access(_existing(parent), os.W_OK):
            raise UsageError(f"cannot create --out {self.path!r}: {_existing(parent)!r} is not writable")
        if os.path.isdir(self.path) and not os.access(self.path, os.W_OK):
            raise UsageError(f"cannot write to --out {self.path!r}: permission denied")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``OUT/.lock`` (a second run on the same folder is refused); remove the folder again if it
        was created here and the run wrote nothing."""
        if not os.path.isdir(self.path):
            try:
                os.makedirs(self.path)
            except OSError as exc:
                raise UsageError(f"cannot create --out {self.path!r}: {exc.strerror or exc}") from None
            self.created = True
        lock_path = os.path.join(self.path, ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise UsageError(f"cannot lock --out {self.path!r}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise UsageError(f"another run is writing to --out {self.path!r}; wait for it or choose another "
                             "folder") from None
        try:
            yield
        finally:
            os.remove(lock_path)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            if self.created and not os.listdir(self.path):
                shutil.rmtree(self.path, ignore_errors=True)

    def prepare(self) -> None:
        """Remove the previous run's files (links included, never what they point to)."""
        for name in RUN_FILES:
            path = os.path.join(self.path, name)
            if os.path.islink(path) or os.path.isfile(path):
                os.remove(path)


def _existing(path: str) -> str:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return path or "."


class Progress:
    """Progress over all the checks of a run.

    On a terminal: a bar (tqdm) with the count, rate and time left, and a line for each check that does
    not pass. Elsewhere (CI logs): a line for each such check and a status line at every tenth of the run.
    Nothing with ``quiet``.
    """

    def __init__(self, *, quiet: bool = False, stream: Any = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.bar: Any = None
        self.total = 0
        self.done = 0
        self.started = time.monotonic()
        self.next_line = 0

    def start(self, total: int) -> None:
        self.total, self.started = total, time.monotonic()
        if self.quiet:
            return
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, unit="check", dynamic_ncols=True, leave=False)
        else:
            print(f"dropblock-verify: {total} checks planned", file=self.stream, flush=True)
            self.next_line = max(1, total // 10)

    def result(self, item: Any, record: dict[str, Any]) -> None:
        self.done += 1
        if self.quiet:
            return
        verdict = record.get("verdict", "?")
        if verdict in BAD_VERDICTS:
            dims = (record.get("details") or {}).get("dims", 2)
            where = f"{record.get('device')},{record.get('dtype')}" + (",3d" if dims == 3 else "")
            line = clean_text(f"{verdict:<8} {item.spec} {record.get('id')} [{where}] {record.get('message', '')}",
                              200)
            if self.bar is not None:
                self.bar.write(line, file=self.stream)
            else:
                print(line, file=self.stream, flush=True)
        if self.bar is not None:
            self.bar.update(1)
        elif self.done >= self.next_line or self.done == self.total:
            elapsed = time.monotonic() - self.started
            left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            print(f"[{self.done:>{len(str(self.total))}}/{self.total}] {elapsed:.0f} s elapsed, about {left:.0f} s "
                  "left", file=self.stream, flush=True)
            self.next_line = self.done + max(1, self.total // 10)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_SUMMARY_HEADER = ("implementation", "profile", "closest", "verdict", "pass", "fail", "other", "skip")


def _summary_cells(impl: dict[str, Any]) -> list[str]:
    counts = {"pass": 0, "fail": 0, "other": 0, "skip": 0}
    for c in impl.get("checks", []):
        v = c.get("verdict")
        counts[v if v in ("pass", "fail", "skip") else "other"] += 1
    return [clean_text(impl.get("spec") or impl.get("name", "?"), 60), clean_text(impl.get("profile", "-")),
            clean_text(impl.get("closest_profile") or "-"), str(impl.get("verdict", "?")),
            *(str(counts[k]) for k in ("pass", "fail", "other", "skip"))]


def print_summary(report: dict[str, Any]) -> None:
    """One line per implementation (verdict and counts; columns as wide as their longest cell), its failing
    checks, and the run's verdict."""
    rows = [_summary_cells(impl) for impl in report.get("implementations", [])]
    widths = [max(len(r[i]) for r in [list(_SUMMARY_HEADER), *rows]) for i in range(len(_SUMMARY_HEADER))]

    def line(cells: list[str]) -> str:  # text columns left-aligned, counts right-aligned
        return " ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(list(_SUMMARY_HEADER)).rstrip())
    for impl, cells in zip(report.get("implementations", []), rows):
        checks = impl.get("checks", [])
        print(line(cells))
        if impl.get("message"):
            print(f"    {clean_text(impl['message'], 400)}")
        for text in impl.get("not_run", []):
            print(f"    not run: {clean_text(text, 200)}")
        character = impl.get("characterisation") or {}
        if character.get("inferred_law") and character.get("fit_threshold"):  # position data were drawn
            fits = ("no preset fits (max |z| above " f"{character.get('fit_threshold')})"
                    if character.get("no_preset_fits") else f"closest preset {character.get('closest_profile')}")
            print(f"    inferred law: --profile '{clean_text(character['inferred_law'], 200)}'; {fits}")
        devs = character.get("deviations_from_paper", [])
        if devs:
            print(f"    deviations from paper: {clean_text(', '.join(devs), 400)}")
        for c in checks:
            if c.get("verdict") in BAD_VERDICTS:
                dims = (c.get("details") or {}).get("dims", 2)
                where = f"{c.get('device')},{c.get('dtype')}" + (",3d" if dims == 3 else "")
                print(f"    {c.get('verdict'):<8} {c.get('id')} [{where}] {clean_text(c.get('message', ''), 300)}")
    impls = report.get("implementations", [])
    ok = impls and not report.get("partial") and all(i.get("verdict") == "conforms" for i in impls)
    partial = " (the run did not finish: partial record)" if report.get("partial") else ""
    print(f"verdict: {'every implementation conforms' if ok else 'NOT every implementation conforms'}{partial}")
