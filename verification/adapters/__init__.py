"""Adapters: every DropBlock implementation behind one call, with the law it declares.

An :class:`Adapter` is called as ``adapter(x, drop_prob, block_size, training=True)``; it draws its
randomness from torch's global generator of ``x``'s device (seed it with ``torch.manual_seed`` inside
``torch.random.fork_rng``), picks the 2D or 3D entry point from ``x.dim()`` and declares a
:class:`dropblock.Profile` (``adapter.profile``) and :class:`Capabilities` (``adapter.capabilities``).
``adapter.reproduction(call)`` gives a copy-paste snippet that loads the implementation and runs ``call``.

Specs accepted by :func:`load_adapter`
--------------------------------------
``reference``, ``reference:<preset>``
    This project's reference under a preset (``reference:timm``, ``reference:paper+exact``).
``torchvision``
    ``torchvision.ops.drop_block2d`` / ``drop_block3d``.
``timm``
    The installed timm's ``timm.layers.drop.drop_block_2d``, loaded from its file (``import timm`` is not
    needed, nor are timm's other dependencies).
``timm-legacy``, ``timm-legacy:fast``
    timm 1.0.22's ``drop_block_2d(batchwise=False)`` and ``drop_block_fast_2d``.
``original``
    The original PyPI ``dropblock`` 0.3.0 (``DropBlock2D`` / ``DropBlock3D``).
``package.module:attr``
    A function ``f(x, drop_prob, block_size)`` or an ``nn.Module`` class taking ``drop_prob=`` and
    ``block_size=`` (see :mod:`.custom`); declares the ``paper`` preset unless ``profile=`` says otherwise.

timm 1.0.22 and dropblock 0.3.0 clash with installed import names, so they are installed side by side
under ``$DROPBLOCK_PEERS_DIR`` (default ``./.peers``) by ``python -m verification.adapters.install_peers``
and loaded under private module names. An adapter whose implementation is missing raises
:class:`AdapterUnavailable` with the command that installs it.

Registering an adapter from another package
-------------------------------------------
Declare an entry point in the ``dropblock_conformance.adapters`` group. Its name is the spec users give,
its value a callable that takes no arguments and returns an :class:`Adapter` (raising
:class:`AdapterUnavailable` when its implementation cannot be loaded)::

    # pyproject.toml of the package "fastdrop"
    [project.entry-points."dropblock_conformance.adapters"]
    fastdrop = "fastdrop.conformance:make_adapter"

    # fastdrop/conformance.py
    from dropblock import PRESETS
    from verification.adapters import Adapter, Capabilities

    class FastDropAdapter(Adapter):
        def __init__(self):
            import fastdrop
            super().__init__(name="fastdrop", version=fastdrop.__version__, profile=PRESETS["paper"],
                             capabilities=Capabilities(dims=(2, 3)),
                             description="fastdrop.drop_block(x, drop_prob, block_size)")

        def forward(self, x, drop_prob, block_size, *, spatial_dims, training, inplace):
            import fastdrop
            return fastdrop.drop_block(x, drop_prob, block_size) if training else x

        def setup_source(self):
            return '''
                import fastdrop

                def impl(x, drop_prob, block_size, training=True):
                    return fastdrop.drop_block(x, drop_prob, block_size) if training else x
                '''

    def make_adapter():
        return FastDropAdapter()

Registered adapters appear in ``dropblock-verify list`` and are run by ``dropblock-verify run`` when no
``--impl`` is given. A registered name cannot replace a built-in one.
"""

from .base import Adapter, AdapterSpecError, AdapterUnavailable, Capabilities
from .builtin import TIMM_LEGACY_FAST
from .peers import INSTALL_PEERS_COMMAND, PEERS_ENV, peers_dir
from .registry import ENTRY_POINT_GROUP, available_adapters, builtin_specs, entry_point_specs, load_adapter

__all__ = [
    "Adapter",
    "AdapterSpecError",
    "AdapterUnavailable",
    "Capabilities",
    "ENTRY_POINT_GROUP",
    "INSTALL_PEERS_COMMAND",
    "PEERS_ENV",
    "TIMM_LEGACY_FAST",
    "available_adapters",
    "builtin_specs",
    "entry_point_specs",
    "load_adapter",
    "peers_dir",
]
