"""Framework specs: one string that names an implementation in another framework and how to call it.

Grammar (``[...]`` optional)::

    FRAMEWORK:package.module:attr[(ARGUMENTS)][@LAYOUT]

``FRAMEWORK``
    ``numpy``, ``jax``, ``tensorflow`` (or ``tf``), ``keras`` (Keras 3) or ``paddle``.
``package.module:attr``
    A function applying DropBlock, or a layer class built once per call (a dotted ``attr`` is allowed).
``ARGUMENTS``
    The call written as in Python, with the implementation's own argument names on the left and the
    suite's quantities on the right: ``rate=drop_prob``, ``keep_prob=1 - drop_prob``, ``block_size=block_size``,
    ``seed=seed``, ``sync_channels=True``. For a function they are its arguments; the input is passed
    where ``x`` is named, else as the first positional argument. For a layer class they are the
    constructor's arguments and the input goes to the built layer (in the framework's training or
    inference mode). Without parentheses a function is called as ``f(x, drop_prob, block_size)`` and a
    class is built as ``cls(drop_prob=drop_prob, block_size=block_size)``.
``LAYOUT``
    ``nchw`` or ``nhwc`` (2D), ``ncdhw`` or ``ndhwc`` (3D). Default ``nhwc`` for TensorFlow and Keras,
    ``nchw`` for the others.

Names an argument may use (with literals, ``+ - * /`` and tuples of them):

=============  ==================================================================================
``x``          the input, in the framework's array type and the spec's layout (functions only)
``drop_prob``  the drop probability asked for (float)
``keep_prob``  ``1 - drop_prob``
``block_size`` the block side asked for (int)
``training``   True in training mode, False in inference mode (a function whose arguments do not
               use it is not called in inference mode: the input is returned, the identity)
``seed``       the call's seed, an int in ``[0, 2**31 - 1)`` (see :mod:`.bridge`)
``rng``        the framework's random state built from ``seed``: ``numpy.random.default_rng(seed)``
               (numpy), ``jax.random.PRNGKey(seed)`` (jax; ``key`` is the same); other frameworks
               have none
``dtype``      the input's dtype name, e.g. ``'float16'``
=============  ==================================================================================

Examples::

    numpy:mypkg.blocks:drop_block(x, rate=drop_prob, size=block_size, rng=rng)@nhwc
    jax:mypkg.jax_blocks:drop_block(key, x, drop_prob, block_size)
    keras:keras_cv.layers:DropBlock2D(rate=drop_prob, block_size=block_size, dtype=dtype)
    keras:keras_drop_block:DropBlock2D(block_size=block_size, keep_prob=keep_prob, sync_channels=True)
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..base import AdapterSpecError

__all__ = [
    "FRAMEWORKS",
    "LAYOUTS",
    "NAMES",
    "UNSUPPORTED",
    "FrameworkSpec",
    "framework_spec",
    "is_framework_spec",
    "names_of",
    "parse_framework_spec",
]

# framework prefix -> canonical framework name
FRAMEWORKS: dict[str, str] = {
    "numpy": "numpy",
    "jax": "jax",
    "tensorflow": "tensorflow",
    "tf": "tensorflow",
    "keras": "keras",
    "paddle": "paddle",
    "mxnet": "mxnet",
}
# frameworks without a bridge, and why
UNSUPPORTED: dict[str, str] = {
    "mxnet": "mxnet 1.9.1, its last release, does not import beside NumPy >= 1.24 (it uses np.bool), which "
             "this project needs",
}
CHANNELS_LAST_DEFAULT = ("tensorflow", "keras")
# layout -> (spatial dims, channels last)
LAYOUTS: dict[str, tuple[int, bool]] = {"nchw": (2, False), "nhwc": (2, True), "ncdhw": (3, False),
                                        "ndhwc": (3, True)}
NAMES = ("x", "drop_prob", "keep_prob", "block_size", "training", "seed", "rng", "key", "dtype")
RNG_FRAMEWORKS = ("numpy", "jax")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DOTTED = rf"{_IDENT}(?:\.{_IDENT})*"
_SPEC_RE = re.compile(
    rf"^(?P<fw>[a-z]+):(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})\s*"
    rf"(?:\((?P<args>.*)\))?\s*(?:@\s*(?P<layout>[a-z]+))?$",
    re.S,
)
_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.USub, ast.UAdd)


@dataclass(frozen=True)
class FrameworkSpec:
    """A parsed framework spec (see the module docstring for the grammar).

    ``args`` and ``kwargs`` hold the argument expressions as source text, checked to use only literals,
    :data:`NAMES` and arithmetic; :meth:`evaluate` turns them into values.
    """

    text: str
    framework: str
    module: str
    attr: str
    args: tuple[str, ...] | None
    kwargs: tuple[tuple[str, str], ...]
    layout: str

    @property
    def target(self) -> str:
        return f"{self.module}:{self.attr}"

    @property
    def dims(self) -> int:
        return LAYOUTS[self.layout][0]

    @property
    def channels_last(self) -> bool:
        return LAYOUTS[self.layout][1]

    @property
    def names(self) -> set[str]:
        """The quantity names the written arguments use."""
        return names_of(list(self.args or ()) + [v for _, v in self.kwargs])

    def evaluate(self, source: str, values: dict[str, Any]) -> Any:
        """Value of one argument expression given the quantities (checked expression, no builtins)."""
        return eval(compile(ast.parse(source, mode="eval"), "<spec>", "eval"), {"__builtins__": {}}, values)


def names_of(sources: Iterable[str]) -> set[str]:
    """The names used by argument expressions (source strings)."""
    used: set[str] = set()
    for src in sources:
        used |= {n.id for n in ast.walk(ast.parse(src, mode="eval")) if isinstance(n, ast.Name)}
    return used


def _check_expr(spec: str, framework: str, node: ast.AST) -> None:
    """Raise AdapterSpecError unless ``node`` uses only literals, known names and arithmetic."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            if sub.id not in NAMES:
                raise AdapterSpecError(
                    f"adapter spec {spec!r}: unknown name {sub.id!r} in the arguments; use "
                    f"{', '.join(NAMES)}, literals (quote strings) and + - * /"
                )
            if sub.id in ("rng", "key") and framework not in RNG_FRAMEWORKS:
                raise AdapterSpecError(
                    f"adapter spec {spec!r}: {framework} has no random state object {sub.id!r}; pass seed"
                )
        elif not isinstance(sub, (ast.Expression, ast.Constant, ast.Load, ast.Tuple, ast.List, ast.BinOp,
                                  ast.UnaryOp, *_OPS)):
            raise AdapterSpecError(
                f"adapter spec {spec!r}: {ast.unparse(node)!r} is not allowed in the arguments (literals, "
                f"{', '.join(NAMES)} and + - * / only)"
            )


def parse_framework_spec(spec: str) -> FrameworkSpec:
    """Parse a framework spec.

    Raises
    ------
    AdapterSpecError
        Malformed spec, unknown framework or layout, an argument that is not ``name=expression`` or a
        plain expression, or an expression outside literals, :data:`NAMES` and arithmetic.
    """
    m = _SPEC_RE.match(spec.strip()) if isinstance(spec, str) else None
    if m is None:
        raise AdapterSpecError(
            f"malformed framework spec {spec!r}: expected FRAMEWORK:package.module:attr[(arguments)][@layout]"
        )
    framework = FRAMEWORKS.get(m.group("fw"))
    if m.group("fw") in UNSUPPORTED:
        raise AdapterSpecError(f"adapter spec {spec!r}: no {m.group('fw')} bridge: {UNSUPPORTED[m.group('fw')]}")
    if framework is None:
        raise AdapterSpecError(
            f"adapter spec {spec!r}: unknown framework {m.group('fw')!r}; known: {', '.join(FRAMEWORKS)}"
        )
    layout = m.group("layout") or ("nhwc" if framework in CHANNELS_LAST_DEFAULT else "nchw")
    if layout not in LAYOUTS:
        raise AdapterSpecError(f"adapter spec {spec!r}: unknown layout {layout!r}; use {', '.join(LAYOUTS)}")
    args: tuple[str, ...] | None = None
    kwargs: tuple[tuple[str, str], ...] = ()
    if m.group("args") is not None:
        try:
            call = ast.parse(f"_({m.group('args')})", mode="eval").body
        except SyntaxError as exc:
            raise AdapterSpecError(f"adapter spec {spec!r}: the arguments do not parse ({exc.msg})") from None
        assert isinstance(call, ast.Call)
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            raise AdapterSpecError(f"adapter spec {spec!r}: * and ** are not allowed in the arguments")
        for node in [*call.args, *(k.value for k in call.keywords)]:
            _check_expr(spec, framework, node)
        args = tuple(ast.unparse(a) for a in call.args)
        kwargs = tuple((k.arg, ast.unparse(k.value)) for k in call.keywords)  # type: ignore[misc]
    return FrameworkSpec(text=spec.strip(), framework=framework, module=m.group("module"), attr=m.group("attr"),
                         args=args, kwargs=kwargs, layout=layout)


def is_framework_spec(spec: object) -> bool:
    """Whether ``spec`` is meant as a framework spec: a framework prefix (``numpy:``, ``tf:``, ...) or the
    ``word:module:attr`` form (then an unknown framework is reported as such)."""
    if not isinstance(spec, str) or ":" not in spec:
        return False
    head = spec.strip().split("(", 1)[0]
    return head.split(":", 1)[0] in {*FRAMEWORKS, *UNSUPPORTED} or head.count(":") == 2


def framework_spec(framework: str, impl: str, *, layout: str | None = None, args: Iterable[str] = ()) -> str:
    """The spec for command-line options ``--framework F --impl package.module:attr --layout L --arg A``.

    ``args`` are ``name=expression`` (a keyword argument) or ``expression`` (positional) strings, e.g.
    ``["rate=drop_prob", "block_size=block_size"]``. The result is parsed before it is returned.

    Raises
    ------
    AdapterSpecError
        Unknown framework or layout, ``impl`` already carrying a framework prefix or arguments while
        ``args`` are given, or arguments that do not parse.
    """
    if framework in UNSUPPORTED:
        raise AdapterSpecError(f"no {framework} bridge: {UNSUPPORTED[framework]}")
    if framework not in FRAMEWORKS:
        raise AdapterSpecError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORKS)}")
    impl = impl.strip()
    if is_framework_spec(impl):
        raise AdapterSpecError(f"--impl {impl!r} already names a framework; drop --framework {framework}")
    args = list(args)
    if args and "(" in impl:
        raise AdapterSpecError(f"--impl {impl!r} already has arguments; drop --arg")
    text = f"{framework}:{impl}"
    if args:
        text += f"({', '.join(a.strip() for a in args)})"
    if layout:
        text += f"@{layout}"
    parse_framework_spec(text)
    return text
