"""Reference DropBlock (Ghiasi, Lin & Le 2018) for CPU and CUDA.

Drop-in replacement for the original ``dropblock`` package (``DropBlock2D``, ``DropBlock3D``,
``LinearScheduler``) with paper semantics by default and every documented peer behaviour as a named
:class:`Profile` (see :data:`PRESETS`).
"""

from . import _op, functional, law  # noqa: F401 (_op registers the operators)
from .functional import drop_block, drop_block2d, drop_block3d
from .modules import DropBlock2D, DropBlock3D
from .profiles import PRESETS, Profile, format_profile, get_profile, parse_profile, preset_names, read_profile_file
from .scheduler import LinearScheduler

__version__ = "0.1.0"

__all__ = [
    "DropBlock2D",
    "DropBlock3D",
    "LinearScheduler",
    "Profile",
    "PRESETS",
    "get_profile",
    "parse_profile",
    "format_profile",
    "read_profile_file",
    "preset_names",
    "drop_block",
    "drop_block2d",
    "drop_block3d",
    "functional",
    "law",
]
