"""Install the peers whose import names clash with installed packages, each into its own folder.

Usage::

    python -m verification.adapters.install_peers [--dest DIR] [--only NAME ...] [--dry-run]

runs, for each peer, ``python -m pip install --no-deps --upgrade --target DIR/<dist>-<version>
<dist>==<version>``:

- ``timm==1.0.22`` into ``DIR/timm-1.0.22`` (adapters ``timm-legacy`` and ``timm-legacy:fast``),
- ``dropblock==0.3.0`` into ``DIR/dropblock-0.3.0`` (adapter ``original``).

``DIR`` defaults to ``$DROPBLOCK_PEERS_DIR``, else ``.peers`` in the working directory: the place the
adapters look. With ``--dest``, set ``DROPBLOCK_PEERS_DIR`` to the same folder when running the checks.
Dependencies are not installed (``--no-deps``): the peers need only torch (and numpy for
``dropblock``), and the loaders never import ``timm/__init__.py``.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .peers import ISOLATED_PEERS, PEERS_ENV, peers_dir

__all__ = ["main", "commands"]

_NAMES = {"timm": "timm", "timm-legacy": "timm", "dropblock": "dropblock", "original": "dropblock"}


def commands(dest: Path, only: Sequence[str] = ()) -> list[list[str]]:
    """The pip command lines (as argument lists) that install the selected peers under ``dest``."""
    wanted = {_NAMES[name] for name in only} if only else None
    return [
        [sys.executable, "-m", "pip", *peer.pip_args(dest)]
        for peer in ISOLATED_PEERS
        if wanted is None or peer.dist in wanted
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verification.adapters.install_peers",
        description="Install timm==1.0.22 and dropblock==0.3.0 side by side for the timm-legacy and original "
                    "adapters (pip install --no-deps --target).",
    )
    parser.add_argument("--dest", type=Path, default=None,
                        help=f"peers folder (default: ${PEERS_ENV}, else ./.peers)")
    parser.add_argument("--only", action="append", choices=sorted(_NAMES), default=[],
                        help="install only this peer (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the pip commands without running them")
    args = parser.parse_args(argv)
    dest = (args.dest if args.dest is not None else peers_dir()).expanduser().resolve()
    failed = 0
    for cmd in commands(dest, args.only):
        print("+ " + shlex.join(cmd), flush=True)
        if args.dry_run:
            continue
        rc = subprocess.call(cmd)
        if rc != 0:
            print(f"install_peers: {cmd[-1]} failed (pip exit code {rc})", file=sys.stderr)
            failed += 1
    if failed:
        return 1
    if not args.dry_run:
        print(f"peers installed under {dest}")
        if args.dest is not None and dest != peers_dir().expanduser().resolve():
            print(f"set {PEERS_ENV}={shlex.quote(str(dest))} so that the adapters find them")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
