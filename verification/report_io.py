"""Writing report files: atomic text and JSON writes, and the rendered reports."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["SCHEMA", "write_text_atomic", "write_json_atomic", "render_reports", "reports_package"]

SCHEMA = "dropblock-conformance/1"


def write_text_atomic(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


#: The name under which :func:`reports_package` loads the suite's ``reports`` package when ``import reports``
#: finds something else.
PRIVATE_NAME = "_dropblock_conformance_reports"


def reports_package() -> ModuleType:
    """The suite's ``reports`` package: the one installed beside :mod:`verification`.

    ``import reports`` can find something else: a folder named ``reports`` (such as the default output folder
    ``reports/latest``) in a directory on ``sys.path`` becomes a namespace package ahead of an editable
    install's import hook, and another project may have a package of that name. Then the package beside
    :mod:`verification` is loaded from its files under :data:`PRIVATE_NAME`; the other is neither imported nor
    replaced in ``sys.modules``.

    Raises
    ------
    ImportError
        No ``reports/__init__.py`` beside :mod:`verification` (a broken install), or it fails to import.
    """
    home = Path(__file__).resolve().parent.parent / "reports"
    try:  # where ``import reports`` would look, without running another package's code
        found = importlib.util.find_spec("reports")
    except (ImportError, ValueError):  # ValueError: a "reports" in sys.modules without a spec
        found = None
    if found is not None and found.origin and Path(found.origin).resolve().parent == home:
        return importlib.import_module("reports")
    if PRIVATE_NAME in sys.modules:
        return sys.modules[PRIVATE_NAME]
    init = home / "__init__.py"
    if not init.is_file():
        raise ImportError(f"the reports package is not installed beside verification (no {init})")
    spec = importlib.util.spec_from_file_location(PRIVATE_NAME, init, submodule_search_locations=[str(home)])
    assert spec is not None and spec.loader is not None  # a file location with a .py suffix always has both
    module = importlib.util.module_from_spec(spec)
    sys.modules[PRIVATE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PRIVATE_NAME]
        raise
    return module


def render_reports(report: dict[str, Any], out_dir: str, *, freeze: bool = True) -> list[str]:
    """``report.md``, ``report.html``, ``junit.xml`` and ``pip-freeze.txt`` (:func:`reports.render_all`);
    the paths written.

    Raises
    ------
    ImportError
        The ``reports`` package cannot be loaded (:func:`reports_package`).
    OSError
        A file could not be written.
    """
    return reports_package().render_all(report, out_dir, freeze=freeze)
