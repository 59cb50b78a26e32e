"""Locating and loading peer implementations without importing their packages' top level.

Two kinds of peers need care:

- The installed ``timm``: ``import timm`` pulls in torchvision, huggingface_hub and more, while the file
  ``timm/layers/drop.py`` needs only torch. The file is found through ``importlib.util.find_spec("timm")``
  (which does not run ``timm/__init__.py``) and executed under a private module name.
- Isolated peers, installed side by side with ``pip install --no-deps --target`` (see
  :mod:`verification.adapters.install_peers`) because their import names clash with what is installed:
  ``timm==1.0.22`` (clashes with a current ``timm``) and the original ``dropblock==0.3.0`` (clashes with this
  project's ``dropblock``). They live in ``<peers dir>/<dist>-<version>/`` where the peers dir is
  ``$DROPBLOCK_PEERS_DIR`` or ``./.peers``, and are loaded under private names (``_peer_timm_1_0_22``,
  ``_peer_dropblock_0_3_0``); ``sys.path`` is never changed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

from .base import AdapterUnavailable

__all__ = [
    "PEERS_ENV",
    "IsolatedPeer",
    "TIMM_LEGACY",
    "ORIGINAL",
    "ISOLATED_PEERS",
    "INSTALL_PEERS_COMMAND",
    "peers_dir",
    "isolated_root",
    "load_module_file",
    "load_package_file",
    "installed_timm_layers",
]

PEERS_ENV = "DROPBLOCK_PEERS_DIR"
INSTALL_PEERS_COMMAND = "python -m verification.adapters.install_peers"


@dataclass(frozen=True)
class IsolatedPeer:
    """A peer distribution installed on its own into ``<peers dir>/<dist>-<version>``."""

    dist: str
    version: str
    import_name: str

    @property
    def folder(self) -> str:
        return f"{self.dist}-{self.version}"

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"

    @property
    def private_name(self) -> str:
        return f"_peer_{self.import_name}_{self.version.replace('.', '_')}"

    def pip_args(self, dest: Path) -> list[str]:
        """``pip`` arguments (after ``python -m pip``) that install this peer under ``dest``."""
        return ["install", "--no-deps", "--upgrade", "--target", str(dest / self.folder), self.requirement]


TIMM_LEGACY = IsolatedPeer("timm", "1.0.22", "timm")
ORIGINAL = IsolatedPeer("dropblock", "0.3.0", "dropblock")
ISOLATED_PEERS: tuple[IsolatedPeer, ...] = (TIMM_LEGACY, ORIGINAL)


def peers_dir() -> Path:
    """Where isolated peers live: ``$DROPBLOCK_PEERS_DIR`` if set, else ``./.peers`` (working directory)."""
    env = os.environ.get(PEERS_ENV)
    return Path(env).expanduser() if env else Path.cwd() / ".peers"


def isolated_root(peer: IsolatedPeer, spec: str) -> Path:
    """The folder holding ``peer``, checked to hold that exact version (else AdapterUnavailable)."""
    root = peers_dir() / peer.folder
    pkg = root / peer.import_name / "__init__.py"
    if not pkg.is_file():
        where = f"${PEERS_ENV}" if os.environ.get(PEERS_ENV) else f"./.peers (set ${PEERS_ENV} to look elsewhere)"
        raise AdapterUnavailable(spec, f"{peer.requirement} not found in {root}, under {where}",
                                 INSTALL_PEERS_COMMAND)
    versions = sorted(
        {d.version for d in importlib.metadata.distributions(path=[str(root)])
         if (d.metadata["Name"] or "").lower() == peer.dist}
    )
    if versions != [peer.version]:
        found = ", ".join(versions) or "no package metadata"
        raise AdapterUnavailable(
            spec, f"{root} holds {peer.dist} {found}, expected {peer.version}", INSTALL_PEERS_COMMAND
        )
    return root.resolve()


def _private_name(base: str, path: Path) -> str:
    """``base``, or ``base`` plus a digest of ``path`` when ``base`` is already taken by another file."""
    mod = sys.modules.get(base)
    if mod is None or Path(getattr(mod, "__file__", "") or "").resolve() == path.resolve():
        return base
    return f"{base}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]}"


def load_module_file(name: str, path: Path) -> types.ModuleType:
    """Execute the single file ``path`` as module ``name`` (cached in ``sys.modules``).

    When ``name`` is dotted, its parent must already be in ``sys.modules`` (relative imports resolve there).
    """
    cached = sys.modules.get(name)
    if cached is not None and Path(getattr(cached, "__file__", "") or "").resolve() == path.resolve():
        return cached
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - only for non-Python paths
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_package_file(base: str, package_dir: Path) -> types.ModuleType:
    """Import the package in ``package_dir`` (running its ``__init__.py``) under a private name."""
    init = package_dir / "__init__.py"
    name = _private_name(base, init)
    cached = sys.modules.get(name)
    if cached is not None:
        return cached
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(package_dir)])
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(f"cannot load package {package_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
            sys.modules.pop(key, None)
        raise
    return module


def load_subpackage_module(base: str, package_dir: Path, module: str) -> types.ModuleType:
    """Load ``package_dir/<module>.py`` without running ``package_dir/__init__.py``.

    A stand-in parent package named ``base`` (or ``base`` plus a path digest) is registered whose
    ``__path__`` is ``package_dir``, so that the file's relative imports (``from .grid import ndgrid``) load
    their siblings from the same folder.
    """
    name = _private_name(base, package_dir / "__init__.py")
    parent = sys.modules.get(name)
    if parent is None:
        parent = types.ModuleType(name, f"stand-in package for {package_dir}")
        parent.__path__ = [str(package_dir)]
        parent.__file__ = str(package_dir / "__init__.py")
        parent.__package__ = name
        sys.modules[name] = parent
    return load_module_file(f"{name}.{module}", package_dir / f"{module}.py")


def installed_timm_layers(spec: str) -> tuple[types.ModuleType, str]:
    """``timm/layers/drop.py`` of the installed timm, loaded by path, and timm's version."""
    found = sys.modules.get("timm")
    origin = getattr(found, "__file__", None) if found is not None else None
    if origin is None:
        try:
            module_spec = importlib.util.find_spec("timm")
        except (ImportError, ValueError):
            module_spec = None
        origin = module_spec.origin if module_spec is not None else None
    if not origin:
        raise AdapterUnavailable(spec, "timm is not installed", "pip install timm")
    layers = Path(origin).parent / "layers"
    if not (layers / "drop.py").is_file():
        raise AdapterUnavailable(
            spec, f"{layers / 'drop.py'} not found", "pip install --force-reinstall timm"
        )
    try:
        version = importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    base = f"_peer_timm_{version.replace('.', '_').replace('+', '_')}"
    try:
        drop = load_subpackage_module(base, layers, "drop")
    except Exception as exc:
        raise AdapterUnavailable(
            spec, f"loading {layers / 'drop.py'} failed ({type(exc).__name__}: {exc})", "pip install timm"
        ) from exc
    return drop, version


def isolated_timm_layers(spec: str) -> types.ModuleType:
    """``timm/layers/drop.py`` of the isolated ``timm==1.0.22``, loaded by path."""
    root = isolated_root(TIMM_LEGACY, spec)
    layers = root / "timm" / "layers"
    try:
        return load_subpackage_module(TIMM_LEGACY.private_name, layers, "drop")
    except Exception as exc:
        raise AdapterUnavailable(
            spec, f"loading {layers / 'drop.py'} failed ({type(exc).__name__}: {exc})", INSTALL_PEERS_COMMAND
        ) from exc


def isolated_original(spec: str) -> types.ModuleType:
    """The isolated ``dropblock==0.3.0`` package, imported as ``_peer_dropblock_0_3_0``."""
    root = isolated_root(ORIGINAL, spec)
    try:
        return load_package_file(ORIGINAL.private_name, root / "dropblock")
    except Exception as exc:
        raise AdapterUnavailable(
            spec, f"importing {root / 'dropblock'} failed ({type(exc).__name__}: {exc})",
            INSTALL_PEERS_COMMAND,
        ) from exc


def subpackage_module_source(var: str, name: str, package_dir: Path, module: str) -> str:
    """Source that loads ``package_dir/<module>.py`` as ``name.<module>`` into ``var`` (see above)."""
    return (
        "import importlib.util\nimport sys\nimport types\n\n"
        f"_dir = {str(package_dir)!r}\n"
        f"_pkg = types.ModuleType({name!r})\n"
        "_pkg.__path__ = [_dir]\n"
        "sys.modules[_pkg.__name__] = _pkg\n"
        f"_spec = importlib.util.spec_from_file_location(\n"
        f"    {name + '.' + module!r}, _dir + {'/' + module + '.py'!r}\n)\n"
        f"{var} = importlib.util.module_from_spec(_spec)\n"
        f"sys.modules[_spec.name] = {var}\n"
        f"_spec.loader.exec_module({var})\n"
    )


def package_source(var: str, name: str, package_dir: Path) -> str:
    """Source that imports the package in ``package_dir`` as ``name`` into ``var``."""
    return (
        "import importlib.util\nimport sys\n\n"
        f"_dir = {str(package_dir)!r}\n"
        f"_spec = importlib.util.spec_from_file_location({name!r}, _dir + '/__init__.py', "
        "submodule_search_locations=[_dir])\n"
        f"{var} = importlib.util.module_from_spec(_spec)\n"
        f"sys.modules[_spec.name] = {var}\n"
        f"_spec.loader.exec_module({var})\n"
    )
