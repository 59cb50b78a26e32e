"""What every check receives (:class:`Context`) and helpers to build its result."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results import CheckResult, derive_seed
from ..sampler import CallFailure

__all__ = ["Context", "make_result", "failure_result", "BUDGETS"]

# Target effect each budget is designed to detect with power 0.9 at its alpha share: the relative error of
# the drop rate (T1) and the per-unit rate (T2, T4).
BUDGETS: dict[str, dict[str, float]] = {
    "smoke": {"rate_effect": 0.25, "max_maps": 20_000},
    "standard": {"rate_effect": 0.10, "max_maps": 400_000},
    "thorough": {"rate_effect": 0.05, "max_maps": 2_000_000},
}


@dataclass(frozen=True)
class Context:
    """Configuration of one check run.

    Attributes
    ----------
    device, dtype : str
        Where and in which dtype the implementation is called.
    dims : int
        2 or 3 spatial dimensions.
    drop_prob, block_size : float, int
        The configuration under test (checks with their own configuration say so).
    base_seed : int
        The run's seed; each check derives its own with :func:`~verification.results.derive_seed`.
    alpha : float
        Significance level of this check (its share of the implementation's budget).
    budget : str
        ``"smoke"``, ``"standard"`` or ``"thorough"``.
    timeout : float
        Per-call timeout in seconds.
    spec : str
        Adapter spec (for reproduction snippets).
    """

    device: str = "cpu"
    dtype: str = "float32"
    dims: int = 2
    drop_prob: float = 0.1
    block_size: int = 3
    base_seed: int = 0
    alpha: float = 1e-3
    budget: str = "standard"
    timeout: float = 60.0
    spec: str = "reference"
    extra: dict = field(default_factory=dict)

    def seed(self, *parts: object) -> int:
        """Seed of a check: from the base seed, the check id parts, device, dtype and dims only."""
        return derive_seed(self.base_seed, *parts, self.device, self.dtype, self.dims)

    @property
    def rate_effect(self) -> float:
        return BUDGETS[self.budget]["rate_effect"]

    @property
    def max_maps(self) -> int:
        return int(BUDGETS[self.budget]["max_maps"])

    def reproduction(self, shape: tuple[int, ...], drop_prob: float | None = None,
                     block_size: int | None = None, seed: int | None = None) -> str:
        """A snippet making the call on ``torch.ones(shape)`` after ``torch.manual_seed(seed)``.

        For an implementation from another framework (a framework spec) the snippet is in that framework's
        own terms (:func:`verification.adapters.frameworks.native_reproduction`), followed by the suite's
        call as comments.
        """
        p = self.drop_prob if drop_prob is None else drop_prob
        k = self.block_size if block_size is None else block_size
        s = seed if seed is not None else 0
        snippet = (
            "import torch\n"
            "from verification.adapters import load_adapter\n"
            f"impl = load_adapter({self.spec!r})\n"
            f"torch.manual_seed({s})\n"
            f"x = torch.ones({tuple(shape)}, dtype=torch.{self.dtype}, device={self.device!r})\n"
            f"out = impl(x, {p!r}, {k!r})\n"
            "print('dropped', (out == 0).float().mean().item(), 'NaN', out.isnan().sum().item(),\n"
            "      'values', out.unique()[:5])\n"
        )
        # an implementation from another framework: the same call in that framework's own terms
        from ..adapters.frameworks import native_reproduction

        native = native_reproduction(self.spec, tuple(shape), self.dtype, p, k, s)
        if native is None:
            return snippet
        suite = "".join(f"# {line}\n" for line in snippet.splitlines())
        return f"{native}\n# the same call through the suite:\n{suite}"


def make_result(check_id: str, ctx: Context, verdict: str, message: str, **fields) -> CheckResult:
    """A result with the context's device and dtype filled in."""
    fields.setdefault("reproduction", ctx.reproduction((4, 6, 9, 11) if ctx.dims == 2 else (2, 3, 5, 6, 7)))
    return CheckResult(id=check_id, verdict=verdict, message=message, device=ctx.device,  # type: ignore[arg-type]
                       dtype=ctx.dtype, **fields)


def failure_result(check_id: str, ctx: Context, exc: CallFailure) -> CheckResult:
    """A misbehaving call: ``fail`` for wrong outputs, ``error`` when the call raised or hung."""
    verdict = "error" if exc.kind in ("raised", "timeout") else "fail"
    return make_result(check_id, ctx, verdict, f"implementation call {exc.kind}: {exc}",
                       details={"failure": exc.kind})
