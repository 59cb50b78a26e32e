"""Reproduction snippets of statistical checks print the statistic that failed, and run as written."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from verification.adapters import load_adapter
from verification.checks import Context
from verification.checks.base import show_channels, show_counts, show_fraction, show_pair, show_units
from verification.checks.statistical import check_position_profile
from verification.theory import mask_law


def _run(code: str, **names) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, dict(names))  # noqa: S102 (the snippet is ours)
    return out.getvalue()


def test_position_profile_snippet_prints_the_worst_position():
    spec = "verification.mutants:ShiftedRow"  # blocks one row down: nothing ever drops in row 0
    result = check_position_profile(load_adapter(spec), Context(budget="smoke", alpha=1e-4, spec=spec))
    assert result.verdict == "fail" and result.message.startswith("worst position (0, ")
    snippet = result.reproduction
    assert snippet.count("\n") >= 8 and "masks = torch.cat(" in snippet
    printed = _run(snippet)
    worst = result.message.removeprefix("worst position ").split(" of ")[0]
    exact = float(printed.split(f"drop rate at {worst}: 0.0 exact ")[1].split()[0])
    assert exact == pytest.approx(float(result.message.split("vs exact ")[1].split()[0]), abs=1e-4) and exact > 0
    assert int(printed.split("maps:")[1].split()[0]) >= 20_000


def test_show_helpers_run_on_2d_and_3d_masks(gen):
    masks = torch.rand((50, 2, 4, 5, 6), generator=gen) < 0.3
    dropped = masks.flatten(0, 1)
    names = {"masks": masks, "dropped": dropped}
    got = _run(show_units([(1, 2, 3)], 0.3), **names)
    assert got.startswith("drop rate at (1, 2, 3): ") and got.rstrip().endswith("exact 0.3")
    assert float(got.split(":")[1].split()[0]) == pytest.approx(dropped[:, 1, 2, 3].float().mean().item(), abs=1e-5)
    units = np.argwhere(np.ones((4, 5, 6), dtype=bool))
    got = _run(show_units(units, 0.3, "interior drop rate"), **names)
    assert "interior drop rate over 120 units:" in got
    assert float(got.split(":")[1].split()[0]) == pytest.approx(dropped.float().mean().item(), abs=1e-5)
    assert "co-drop of (0, 0, 0) and (0, 0, 1):" in _run(show_pair((0, 0, 0), (0, 0, 1), 0.1), **names)
    assert "co-drop across channels 0 and 1:" in _run(show_channels(units[:3], 0.09), **names)
    assert "mean drop fraction:" in _run(show_fraction(0.3), **names)
    assert "(reference: mean 36.00, sd 4.00)" in _run(show_counts(36.0, 4.0), **names)


def test_show_empty_uses_the_exact_law(gen):
    from verification.checks.base import show_empty

    dist = mask_law((5, 5), 3, 0.1, "paper").mask_distribution(1 << 13)
    code = show_empty(dist)
    q = 1 - mask_law((5, 5), 3, 0.1, "paper").gamma
    assert f"'exact', {q ** 9:.5g}" in code  # 9 seeds in the valid region of a 5 x 5 map with k = 3
    printed = _run(code, dropped=torch.zeros((10, 5, 5), dtype=torch.bool))
    assert printed.startswith("maps with nothing dropped: 1.0 ")
