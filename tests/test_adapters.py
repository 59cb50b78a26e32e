"""Adapters: spec resolution, built-ins, custom implementations, entry points, ``list`` and the installer."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import sys
import textwrap

import pytest
import torch

import dropblock
from dropblock import PRESETS, get_profile
from verification import cli
from verification.adapters import (
    ENTRY_POINT_GROUP,
    INSTALL_PEERS_COMMAND,
    PEERS_ENV,
    TIMM_LEGACY_FAST,
    Adapter,
    AdapterSpecError,
    AdapterUnavailable,
    Capabilities,
    available_adapters,
    builtin_specs,
    install_peers,
    load_adapter,
    registry,
)

BUILTINS = ["reference", "torchvision", "timm", "timm:with_noise", "timm-legacy", "timm-legacy:fast", "original"]
PEERS = ["torchvision", "timm", "timm-legacy", "timm-legacy:fast", "original"]
DECLARED = {
    "reference": PRESETS["paper"],
    "torchvision": PRESETS["torchvision"],
    "timm": PRESETS["timm"],
    "timm:with_noise": get_profile("timm+noise"),
    "timm-legacy": PRESETS["timm_legacy"],
    "timm-legacy:fast": TIMM_LEGACY_FAST,
    "original": PRESETS["original"],
}


def _load_or_skip(spec: str) -> Adapter:
    try:
        return load_adapter(spec)
    except AdapterUnavailable as exc:
        pytest.skip(str(exc))


def _seeded(adapter: Adapter, x: torch.Tensor, seed: int, *args, **kwargs) -> torch.Tensor:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return adapter(x, *args, **kwargs)


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    """An importable module ``_adapter_probe`` with a DropBlock function, Module class and factory."""
    (tmp_path / "_adapter_probe.py").write_text(textwrap.dedent('''
        import torch
        import dropblock
        from dropblock import PRESETS
        from verification.adapters import Adapter, AdapterUnavailable, Capabilities

        __version__ = "9.9"
        not_callable = 3

        def fn(x, drop_prob, block_size):
            return dropblock.drop_block2d(x, drop_prob, block_size)

        def wrong_arity(x):
            return x

        class Layer(torch.nn.Module):
            def __init__(self, drop_prob, block_size):
                super().__init__()
                self.drop_prob, self.block_size = drop_prob, block_size

            def forward(self, x):
                return dropblock.drop_block2d(x, self.drop_prob, self.block_size, training=self.training)

        class NotAModule:
            def __init__(self, drop_prob, block_size):
                pass

        class Plugged(Adapter):
            def __init__(self):
                super().__init__(name="plugged", version="1.2", profile=PRESETS["timm"],
                                 capabilities=Capabilities(dims=(2, 3)), description="reference timm")

            def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
                return dropblock.drop_block(x, drop_prob, block_size, spatial_dims=spatial_dims,
                                            training=training, profile="timm")

            def setup_source(self):
                return "import dropblock\\nimpl = lambda x, p, k, training=True: " \\
                       "dropblock.drop_block2d(x, p, k, training=training, profile='timm')\\n"

        def make_plugged():
            return Plugged()

        def make_missing():
            raise AdapterUnavailable("missing-plug", "fastdrop is not installed", "pip install fastdrop")

        def make_wrong():
            return object()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "_adapter_probe"
    sys.modules.pop("_adapter_probe", None)


# ------------------------------------------------------------------------------------------- built-ins
def test_builtin_specs():
    assert builtin_specs() == BUILTINS


@pytest.mark.parametrize("spec", BUILTINS)
def test_builtin_loads_or_names_its_install_command(spec):
    try:
        adapter = load_adapter(spec)
    except AdapterUnavailable as exc:
        assert exc.install and exc.install in str(exc)
        assert spec in str(exc)
        return
    assert isinstance(adapter, Adapter)
    assert adapter.profile == DECLARED[spec]
    assert adapter.version and adapter.description
    assert isinstance(adapter.capabilities, Capabilities)


@pytest.mark.parametrize("spec", ["timm-legacy", "timm-legacy:fast", "original"])
def test_isolated_peer_missing_names_the_installer(spec, tmp_path, monkeypatch):
    monkeypatch.setenv(PEERS_ENV, str(tmp_path / "empty"))
    with pytest.raises(AdapterUnavailable) as info:
        load_adapter(spec)
    assert info.value.install == INSTALL_PEERS_COMMAND
    assert INSTALL_PEERS_COMMAND in str(info.value) and spec in str(info.value)
    assert f"under ${PEERS_ENV}" in str(info.value)
    monkeypatch.delenv(PEERS_ENV)
    monkeypatch.chdir(tmp_path)  # no .peers here: the message says where it looked and how to look elsewhere
    with pytest.raises(AdapterUnavailable, match=rf"under ./.peers \(set \${PEERS_ENV} to look elsewhere\)"):
        load_adapter(spec)


def test_isolated_peer_without_matching_metadata_is_unavailable(tmp_path, monkeypatch):
    pkg = tmp_path / "timm-1.0.22" / "timm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    monkeypatch.setenv(PEERS_ENV, str(tmp_path))
    with pytest.raises(AdapterUnavailable, match="expected 1.0.22"):
        load_adapter("timm-legacy")


def test_missing_torchvision_and_timm_name_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(AdapterUnavailable, match="pip install torchvision"):
        load_adapter("torchvision")
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(AdapterUnavailable, match="pip install timm"):
        load_adapter("timm")


@pytest.mark.parametrize("preset", [*PRESETS, "paper+exact", "timm+exact"])
@pytest.mark.parametrize("shape", [(2, 3, 9, 7), (2, 2, 5, 6, 4)])
def test_reference_equals_direct_call(preset, shape, seed):
    adapter = load_adapter("reference" if preset == "paper" else f"reference:{preset}")
    assert adapter.profile == dropblock.get_profile(preset)
    assert adapter.capabilities.dims == (2, 3)
    assert adapter.capabilities.even_block == (adapter.profile.even_policy != "reject")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    got = _seeded(adapter, x, seed, 0.3, 3)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fn = dropblock.drop_block2d if len(shape) == 4 else dropblock.drop_block3d
        want = fn(x, 0.3, 3, profile=preset)
    assert torch.equal(got, want)
    assert adapter(x, 0.3, 3, training=False) is x


@pytest.mark.parametrize("spec", PEERS)
def test_peer_runs_with_right_shape_and_repeats_under_a_seed(spec, seed):
    adapter = _load_or_skip(spec)
    x = torch.ones(2, 3, 8, 8)
    out = _seeded(adapter, x, seed, 0.2, 3)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert torch.equal(out, _seeded(adapter, x, seed, 0.2, 3))
    kept = out[out != 0]
    assert kept.numel() == 0 or torch.allclose(kept, kept[0].expand_as(kept))
    assert torch.equal(adapter(x, 0.2, 3, training=False), x)
    if 3 in adapter.capabilities.dims:
        assert _seeded(adapter, torch.ones(2, 3, 6, 6, 6), seed, 0.2, 3).shape == (2, 3, 6, 6, 6)
    else:
        with pytest.raises(ValueError, match="2D"):
            adapter(torch.ones(2, 3, 6, 6, 6), 0.2, 3)


@pytest.mark.parametrize("spec", PEERS)
def test_peer_rejecting_even_blocks_declares_it(spec):
    adapter = _load_or_skip(spec)
    if adapter.capabilities.even_block:
        assert adapter(torch.ones(2, 3, 8, 8), 0.2, 4).shape == (2, 3, 8, 8)
    else:
        with pytest.raises((ValueError, RuntimeError)):
            adapter(torch.ones(2, 3, 8, 8), 0.2, 4)


def test_timm_is_loaded_without_importing_the_package():
    adapter = _load_or_skip("timm")
    assert adapter._fn.__module__.startswith("_peer_timm_")


@pytest.mark.parametrize("spec", BUILTINS)
def test_reproduction_runs_like_the_adapter(spec, seed):
    adapter = _load_or_skip(spec)
    snippet = adapter.reproduction(f"torch.manual_seed({seed})\nout = impl(torch.ones(2, 3, 8, 8), 0.2, 3)\n")
    compile(snippet, "<reproduction>", "exec")
    saved = {k: v for k, v in sys.modules.items() if k.startswith("_peer_")}
    namespace: dict = {}
    try:
        with torch.random.fork_rng():
            exec(snippet, namespace)
    finally:  # the snippet registers its own private modules: put the adapters' back
        for name in [k for k in sys.modules if k.startswith("_peer_")]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert torch.equal(namespace["out"], _seeded(adapter, torch.ones(2, 3, 8, 8), seed, 0.2, 3))


def test_profile_override_changes_the_declaration_only(seed):
    base = load_adapter("reference:timm")
    other = load_adapter("reference:timm", profile="paper")
    assert other.profile == PRESETS["paper"] and base.profile == PRESETS["timm"]
    x = torch.ones(2, 3, 8, 8)
    assert torch.equal(_seeded(base, x, seed, 0.2, 3), _seeded(other, x, seed, 0.2, 3))


# -------------------------------------------------------------------------------------------- bad specs
@pytest.mark.parametrize(
    "spec",
    ["nope", "reference:bogus", "timm-legacy:slow", "a b:c", "mod:", ":fn", "no_such_module_xyz.sub:fn",
     "json:no_such_attr", "math:pi", "collections:OrderedDict", "json:dumps"],
)
def test_bad_spec_is_a_spec_error_naming_it(spec):
    with pytest.raises(AdapterSpecError) as info:
        load_adapter(spec)
    assert repr(spec) in str(info.value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_missing_module_names_the_path():
    with pytest.raises(AdapterSpecError, match=r"no module named 'no_such_module_xyz'.*PYTHONPATH=\."):
        load_adapter("no_such_module_xyz.sub:fn")


def test_empty_spec_and_bad_profile_are_spec_errors():
    with pytest.raises(AdapterSpecError, match="empty"):
        load_adapter("  ")
    with pytest.raises(AdapterSpecError, match="'reference'"):
        load_adapter("reference", profile="bogus")


def test_custom_spec_errors(custom_module):
    for attr in ("not_callable", "wrong_arity", "NotAModule"):
        with pytest.raises(AdapterSpecError, match=attr):
            load_adapter(f"{custom_module}:{attr}")


# ------------------------------------------------------------------------------------------------ custom
def test_custom_function(custom_module, seed):
    adapter = load_adapter(f"{custom_module}:fn")
    assert adapter.name == f"{custom_module}:fn" and adapter.version == "9.9"
    assert adapter.profile == PRESETS["paper"] and adapter.capabilities == Capabilities()
    x = torch.ones(2, 3, 8, 8)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        want = dropblock.drop_block2d(x, 0.2, 3)
    assert torch.equal(_seeded(adapter, x, seed, 0.2, 3), want)
    assert adapter(x, 0.2, 3, training=False) is x
    namespace: dict = {}
    with torch.random.fork_rng():
        exec(adapter.reproduction(f"torch.manual_seed({seed})\nout = impl(torch.ones(2, 3, 8, 8), 0.2, 3)"),
             namespace)
    assert torch.equal(namespace["out"], want)


def test_custom_module_class(custom_module, seed):
    adapter = load_adapter(f"{custom_module}:Layer", profile="timm",
                           capabilities=Capabilities(dims=(2, 3)))
    assert adapter.profile == PRESETS["timm"] and adapter.capabilities.dims == (2, 3)
    x = torch.ones(2, 3, 8, 8)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        want = dropblock.drop_block2d(x, 0.2, 3)
    assert torch.equal(_seeded(adapter, x, seed, 0.2, 3), want)
    assert adapter(x, 0.2, 3, training=False) is x
    with pytest.raises(ValueError, match="in-place"):
        adapter(x, 0.2, 3, inplace=True)


# ---------------------------------------------------------------------------------------- entry points
def _entry_points(module: str) -> list[importlib.metadata.EntryPoint]:
    def ep(name, attr):
        return importlib.metadata.EntryPoint(name=name, value=f"{module}:{attr}", group=ENTRY_POINT_GROUP)

    return [ep("plugged", "make_plugged"), ep("missing-plug", "make_missing"), ep("wrong-plug", "make_wrong"),
            ep("timm", "make_plugged")]


def test_entry_point_adapters(custom_module, monkeypatch, seed):
    monkeypatch.setattr(registry, "_entry_points", lambda: _entry_points(custom_module))
    adapter = load_adapter("plugged")
    assert adapter.name == "plugged" and adapter.profile == PRESETS["timm"]
    x = torch.ones(2, 3, 8, 8)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        want = dropblock.drop_block2d(x, 0.2, 3, profile="timm")
    assert torch.equal(_seeded(adapter, x, seed, 0.2, 3), want)
    with pytest.raises(AdapterUnavailable, match="pip install fastdrop"):
        load_adapter("missing-plug")
    listed = dict(available_adapters())
    assert list(listed) == BUILTINS + ["plugged", "missing-plug", "wrong-plug"]
    assert isinstance(listed["plugged"], Adapter)
    assert isinstance(listed["missing-plug"], AdapterUnavailable)
    assert "not a verification.adapters.Adapter" in str(listed["wrong-plug"])
    assert not isinstance(listed["timm"], Adapter) or listed["timm"].name == "timm"  # built-in wins


# --------------------------------------------------------------------------------------------- commands
def _install_entry_points(folder, module: str, monkeypatch) -> None:
    """A distribution's metadata with the entry points of :func:`_entry_points` in ``folder``, found by this
    process and by the child processes that ``list`` loads adapters in (``PYTHONPATH``)."""
    info = folder / "fastdrop_probe-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fastdrop-probe\nVersion: 1.0\n")
    lines = [f"{ep.name} = {ep.value}" for ep in _entry_points(module)]
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines) + "\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))


def test_list_json_and_table(capsys, custom_module, tmp_path, monkeypatch):
    _install_entry_points(tmp_path, custom_module, monkeypatch)
    assert cli.main(["list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_spec = {row["spec"]: row for row in rows}
    assert list(by_spec) == BUILTINS + ["plugged", "missing-plug", "wrong-plug"]
    assert by_spec["reference"]["available"] and by_spec["reference"]["profile"] == "paper"
    assert by_spec["reference"]["dims"] == [2, 3]
    assert by_spec["plugged"]["source"] == "entry point"
    assert by_spec["missing-plug"]["install"] == "pip install fastdrop"
    for row in rows:
        assert row["available"] or row["reason"]
    assert cli.main(["list"]) == 0
    table = capsys.readouterr().out
    header = ["NAME", "AVAILABLE", "VERSION", "PROFILE", "DIMS", "EVEN", "INSTALL"]
    assert table.splitlines()[0].split() == header
    assert "reference:paper" in table and "pip install fastdrop" in table


def test_list_shows_install_command_when_peers_missing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(PEERS_ENV, str(tmp_path))
    assert cli.main(["list", "--json"]) == 0
    rows = {row["spec"]: row for row in json.loads(capsys.readouterr().out)}
    for spec in ("timm-legacy", "timm-legacy:fast", "original"):
        assert rows[spec]["available"] is False
        assert rows[spec]["install"] == INSTALL_PEERS_COMMAND
        assert rows[spec]["profile"] == DECLARED[spec].name


def test_install_peers_dry_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv(PEERS_ENV, str(tmp_path / "env"))
    assert install_peers.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    for folder, req in (("timm-1.0.22", "timm==1.0.22"), ("dropblock-0.3.0", "dropblock==0.3.0")):
        assert f"--no-deps --upgrade --target {tmp_path / 'env' / folder} {req}" in out
    assert install_peers.main(["--dry-run", "--dest", str(tmp_path / "d"), "--only", "original"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "d" / "dropblock-0.3.0") in out and "timm" not in out
