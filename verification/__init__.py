"""Statistical conformance engine for DropBlock implementations.

Data flows ``implementation -> adapter -> sampler -> checks -> results -> report``: :mod:`.adapters` wraps an
implementation as a black box, :mod:`.theory` gives the exact mask law the checks test against, and
:mod:`.cli` is the ``dropblock-verify`` command.
"""

__version__ = "0.1.0"
