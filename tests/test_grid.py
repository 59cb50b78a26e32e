"""The configuration grid and the user's ``--config`` points."""

from __future__ import annotations

import pytest

from verification.checks import Context
from verification.checks.grid import GRID, ConfigPoint, parse_config, points_for, with_user_points
from verification.cli import main


def test_parse_config_reads_the_three_keys():
    assert parse_config("p=0.2,k=5,size=56x56") == ConfigPoint((56, 56), 5, 0.2, user=True)
    assert parse_config(" drop_prob=0.5 , block_size=3, size=4x5x6 ") == ConfigPoint((4, 5, 6), 3, 0.5, user=True)


@pytest.mark.parametrize(("text", "names"), [
    ("p=0.2,k=5", "missing size"),
    ("p=1.5,k=5,size=8x8", "p=1.5"),
    ("p=abc,k=5,size=8x8", "p='abc'"),
    ("p=0.1,k=0,size=8x8", "k='0'"),
    ("p=0.1,k=2.5,size=8x8", "k='2.5'"),
    ("p=0.1,k=3,size=8", "size='8'"),
    ("p=0.1,k=3,size=8x0", "size='8x0'"),
    ("p=0.1,k=3,size=8x8,q=1", "'q=1'"),
    ("p=0.1,p=0.2,k=3,size=8x8", "p given twice"),
    ("", "--config"),
])
def test_parse_config_names_the_bad_part_in_one_line(text, names):
    with pytest.raises(ValueError) as info:
        parse_config(text)
    assert names in str(info.value) and "\n" not in str(info.value)


def test_grid_covers_the_configurations_the_issue_lists():
    sizes = {p.sizes for pts in GRID.values() for p in pts}
    assert {(56, 56), (28, 28), (14, 14), (7, 7)} <= sizes
    assert any(h > w for h, w, *_ in sizes) and any(h < w for h, w, *_ in sizes)
    ks = {p.block_size for pts in GRID.values() for p in pts}
    assert {1, 2, 4, 6, 13} <= ks
    ctx = Context()
    for dtype in ("float32", "float16", "bfloat16"):
        c = Context(dtype=dtype)
        seen = {p.sizes for cid in ("T1.lattice_rate", "P.half_rate") for p in points_for(cid, c)}
        assert {(56, 56), (28, 28), (14, 14), (7, 7)} <= seen, dtype
    assert points_for("T1.lattice_rate", ctx)[0] == ConfigPoint((14, 14), ctx.block_size, ctx.drop_prob)


def test_user_points_reach_the_checks_that_take_them():
    ctx = Context(extra={"configs": ["p=0.2,k=5,size=56x56", "p=0.3,k=3,size=6x7x8"]})
    assert points_for("T1.lattice_rate", ctx)[-1] == ConfigPoint((56, 56), 5, 0.2, user=True)
    assert points_for("T2.position_profile", ctx)[-1].sizes == (56, 56)
    assert all(not p.user for p in points_for("T3.pair_profile", ctx))
    ctx3 = Context(dims=3, extra=ctx.extra)
    assert points_for("T1.lattice_rate", ctx3)[-1].sizes == (6, 7, 8)


def test_with_user_points_validates_and_copies_into_every_context():
    from verification.adapters import load_adapter
    from verification.engine import plan_checks

    plan = plan_checks(load_adapter("reference"), devices=["cpu"], dtypes=["float32"], alpha=1e-3, budget="smoke",
                       base_seed=0, timeout=60, spec="reference", only=["T1"])
    plan = with_user_points(plan, ["p=0.2,k=5,size=28x28"])
    assert all(p.ctx.extra["configs"] == ["p=0.2,k=5,size=28x28"] for p in plan.checks)
    with pytest.raises(ValueError, match="k=-1"):
        with_user_points(plan, ["p=0.2,k=-1,size=28x28"])


def test_cli_rejects_a_bad_config_in_one_line(tmp_path, capsys):
    assert main(["run", "--impl", "reference", "--config", "p=0.2,k=5,size=56", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "size='56'" in err and len(err.strip().splitlines()) == 1
