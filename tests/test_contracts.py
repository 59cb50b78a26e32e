"""Laws declared as strings and contracts, on implementations written for them (tests/law_impls.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_util import report_of as read_report
from cli_util import run_cli

from verification.adapters import AdapterSpecError, load_adapter
from verification.contracts import ContractError, contract_from_pyproject, parse_contract
from verification.engine import implementation_verdict, plan_checks, run_checks

TESTS = str(Path(__file__).resolve().parent)
ENV = {"PYTHONPATH": TESTS}


@pytest.fixture(autouse=True)
def _impls_importable(monkeypatch):
    monkeypatch.syspath_prepend(TESTS)


def _results(spec, profile=None, contract=None, only=None, dtypes=("float32",)):
    adapter = load_adapter(spec, profile=profile, contract=contract)
    plan = plan_checks(adapter, devices=["cpu"], dtypes=list(dtypes), alpha=1e-3, budget="smoke", base_seed=0,
                       timeout=60, spec=spec, only=only)
    return adapter, run_checks(adapter, plan)


# the law-sensitive checks: shape and sharing contract, per-position law, sharing, rescaling
_LAW_CHECKS = ["T0.output_contract", "T0.rescaling", "T2.position_profile", "T4.sharing"]


@pytest.mark.parametrize("name", ["all_region_eps0", "valid_channel_shared", "batch_shared_per_channel",
                                  "original_unscaled", "original_same_dtype", "legacy_fast"])
def test_six_laws_conform_when_declared(name):
    from law_impls import SIX_LAWS

    _, results = _results(f"law_impls:{name}", SIX_LAWS[name], only=_LAW_CHECKS, dtypes=("float32", "float16"))
    assert implementation_verdict(results) == "conforms", [(r.id, r.message) for r in results if r.verdict != "pass"]


def test_a_wrong_law_string_is_caught():
    _, results = _results("law_impls:batch_shared_per_channel", "paper,seed_region=all", only=["T4.sharing"])
    assert implementation_verdict(results) == "does-not-conform"


def test_declared_rejection_that_crashes_is_a_failure():
    _, results = _results("law_impls:crashing_rejection", "paper", "even_block=reject", only=["T0.rejections"])
    (r,) = results
    assert r.verdict == "fail" and "RuntimeError" in r.message and "ValueError declared" in r.message


def test_builtin_declared_rejections_are_checked_not_trusted():
    pytest.importorskip("torchvision")
    _, results = _results("torchvision", only=["T0.rejections"])
    assert [r.verdict for r in results] == ["pass", "pass"]  # 2D and 3D
    assert "even block_size=4: ValueError" in results[0].message


def test_square_only_implementation_is_served_square_maps():
    _, results = _results("law_impls:square_only", "paper", "square_only",
                          only=["T0", "T1.lattice_rate", "T2", "T3.pair_profile", "T6.tiny_mask_law"])
    bad = [(r.id, r.verdict, r.message) for r in results if r.verdict not in ("pass", "skip")]
    assert not bad


def test_mmdetection_style_contract_from_the_attribute():
    adapter = load_adapter("law_impls:WarmupDropBlock", profile="paper,eps=1e-06,output_dtype=float32")
    caps = adapter.capabilities
    assert (caps.even_block, caps.oversize_block, caps.zero_prob, caps.rejects) == (False, False, False,
                                                                                   ("AssertionError",))
    _, results = _results("law_impls:WarmupDropBlock", "paper,eps=1e-06,output_dtype=float32",
                          only=["T0.rejections", "T0.argument_validation"])
    assert [r.verdict for r in results] == ["pass", "pass"], [r.message for r in results]


def test_bare_assert_is_quoted():
    _, results = _results("law_impls:square_only", "paper", None, only=["T0.output_contract"])
    (r,) = results
    assert r.verdict == "error" and "AssertionError: square maps only" in r.message


def test_contract_strings_round_trip_and_errors():
    c = parse_contract("even_block=reject,zero_prob=reject,square_only,dims=2+3,dtypes=float32,raises=AssertionError")
    assert parse_contract(c.to_string()) == c and c.dims == (2, 3)
    for bad in ("even_block=maybe", "colour=red", "dims=4", "dtypes=int8", "raises=1x", "even_block", "a=1,,b=2"):
        with pytest.raises(ContractError):
            parse_contract(bad)
    with pytest.raises(AdapterSpecError, match="even_block"):
        load_adapter("reference", contract="even_block=perhaps")


def test_contract_from_pyproject(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.dropblock-conformance.contract]\nzero_prob = "reject"\n'
                                             'square_only = true\nraises = ["AssertionError", "ValueError"]\n')
    assert contract_from_pyproject(str(tmp_path)) == "zero_prob=reject,square_only,raises=AssertionError+ValueError"
    (tmp_path / "pyproject.toml").write_text('[tool.dropblock-conformance]\ncontract = "dims=3+2"\n')
    assert contract_from_pyproject(str(tmp_path)) == "dims=2+3"


def test_cli_profile_string_profile_file_and_contract(tmp_path):
    law = tmp_path / "law.toml"
    law.write_text('base = "paper"\nsharing = "channel"\n')
    out = tmp_path / "out"
    proc = run_cli("run", "--impl", "law_impls:valid_channel_shared", "--profile-file", str(law), "--dtype", "float32",
                   "--budget", "smoke", "--checks", "T0.output_contract,T4.sharing,T0.rejections", "--contract",
                   "dims=2,raises=ValueError+TypeError", "--quiet", "--out", str(out), env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    impl = read_report(out)["implementations"][0]
    assert impl["profile"] == "paper,sharing=channel" and impl["verdict"] == "conforms"
    assert impl.get("contract") == "dims=2,raises=ValueError+TypeError"
    proc = run_cli("run", "--impl", "law_impls:valid_channel_shared", "--profile", "paper,sharing=sample",
                   "--out", str(tmp_path / "bad"), env=ENV)
    assert proc.returncode == 2 and "sharing" in proc.stderr
    proc = run_cli("run", "--impl", "reference", "--contract", "zero_prob=never", "--out", str(tmp_path / "c"))
    assert proc.returncode == 2 and "zero_prob" in proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["all_region_eps0", "valid_channel_shared", "batch_shared_per_channel",
                                  "original_unscaled", "original_same_dtype", "legacy_fast"])
def test_six_laws_conform_from_the_cli(name, tmp_path):
    from law_impls import SIX_LAWS

    out = tmp_path / "out"
    proc = run_cli("run", "--impl", f"law_impls:{name}", "--profile", SIX_LAWS[name], "--budget", "smoke",
                   "--dtype", "float32,float16", "--quiet", "--out", str(out), env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert read_report(out)["implementations"][0]["verdict"] == "conforms"


def test_exception_text_keeps_what_went_wrong(tmp_path, monkeypatch):
    from verification.text import describe_exception

    # a module of its own, not rewritten by pytest: a bare assert as an implementation has it
    (tmp_path / "bareimpl.py").write_text("def bare(block_size):\n    assert block_size % 2 == 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from bareimpl import bare

    try:
        bare(4)
    except AssertionError as exc:
        text = describe_exception(exc)
    assert text == "AssertionError: assert block_size % 2 == 1 (at bareimpl.py:2)"
    multi = RuntimeError("Traceback of the kernel:\n  frame 1\nshape mismatch: 11 vs 12\n")
    assert describe_exception(multi) == "RuntimeError: shape mismatch: 11 vs 12"
    keras = ValueError("Exception encountered when calling layer 'drop_block2d' (type DropBlock2D).\n\ncannot "
                       "compute Mul as input #1 was expected to be a half tensor but is a float tensor [Op:Mul]\n\n"
                       "Call arguments received by layer 'drop_block2d' (type DropBlock2D):\n"
                       "  \u2022 inputs=tf.Tensor(shape=(1, 6, 6, 2), dtype=float16)\n  \u2022 training=True")
    assert describe_exception(keras) == ("ValueError: cannot compute Mul as input #1 was expected to be a half "
                                         "tensor but is a float tensor [Op:Mul]")


def test_version_per_implementation(tmp_path, monkeypatch):
    (tmp_path / "twoimpls.py").write_text("__version__ = '2.0'\n"
                                          "def a(x, p, k):\n    return x\n"
                                          "def b(x, p, k):\n    return x\n"
                                          "b.__version__ = '0.3.0'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_adapter("twoimpls:a").version == "2.0" and load_adapter("twoimpls:b").version == "0.3.0"
