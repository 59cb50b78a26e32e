"""The ``[tool.dropblock-conformance]`` table of a project's ``pyproject.toml``."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["tool_table"]


def tool_table(folder: str, error: type[Exception]) -> tuple[str, dict[str, Any]]:
    """``(path, table)``: the path of ``folder/pyproject.toml`` and its ``[tool.dropblock-conformance]`` table
    (empty when the file or the table is missing). ``error`` (one line) when the file cannot be read as TOML."""
    import tomllib

    path = os.path.join(folder, "pyproject.toml")
    if not os.path.isfile(path):
        return path, {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("dropblock-conformance", {})
    return path, table if isinstance(table, dict) else {}
