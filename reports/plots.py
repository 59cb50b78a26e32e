"""Plots of check details as base64 PNG data URIs (matplotlib, Agg canvas, no pyplot state).

Each plot renders what the check details hold and is left out when they lack it or are malformed:
T2.position_profile heat maps, T1.rate_curve drop fraction against drop_prob, T3.pair_profile co-drop against
distance, the p-values of the statistical checks against their alphas, and their effects (observed / exact)
with confidence intervals in every dtype that ran. Figures use matplotlib's constrained layout and are saved
without a second, tight-bounding-box pass (a third less drawing time).
"""

from __future__ import annotations

import base64
import io
import math
from statistics import NormalDist
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from verification.checks.guide import effect_units

from .model import P_FLOOR, check_label, statistical_checks

__all__ = ["implementation_plots", "position_profile_png", "rate_curve_png", "pair_profile_png", "pvalue_png",
           "effect_png"]

COLORS = {"pass": "#2e7d32", "fail": "#c62828", "error": "#ef6c00", "skip": "#9e9e9e"}
_MARKERS = "osD^vP*X"
_DPI = 110


def _to_uri(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, facecolor="white")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)


def _as_2d(values: Any) -> np.ndarray | None:
    arr = np.asarray(values, dtype=float)
    if arr.ndim < 2 or arr.size == 0:
        return None
    while arr.ndim > 2:  # middle slice along the leading axes of a 3-d map
        arr = arr[arr.shape[0] // 2]
    return arr


def _mpl(text: Any) -> str:
    """Text shown verbatim by matplotlib (a ``$`` would otherwise start math mode)."""
    return str(text).replace("$", r"\$")


def _tag(check: dict[str, Any]) -> str:
    """``[cpu,float32]`` part of a check's label."""
    return check_label(check)[len(str(check.get("id", "?"))):].strip()


def _series(details: dict[str, Any], key: str, n: int) -> np.ndarray | None:
    values = details.get(key)
    if values is None:
        return None
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return arr if arr.shape == (n,) else None


def position_profile_png(check: dict[str, Any]) -> str | None:
    """Observed, expected and standardised difference ``(obs - exp) / sqrt(exp (1 - exp) / n)``."""
    details = check.get("details") or {}
    if "observed" not in details or "expected" not in details:
        return None
    obs, exp = _as_2d(details["observed"]), _as_2d(details["expected"])
    n = check.get("n") or 0
    if obs is None or exp is None or obs.shape != exp.shape or n <= 0:
        return None
    sd = np.sqrt(np.clip(exp * (1 - exp), 0, None) / n)
    diff = obs - exp
    z = np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0), np.where(np.abs(diff) > 1e-12, np.sign(diff) * 1e3, 0.0))
    alpha = check.get("alpha") or 0.0
    z_star = NormalDist().inv_cdf(1 - alpha / (2 * obs.size)) if 0 < alpha < 1 else None
    zmax = float(np.nanmax(np.abs(z))) if z.size else 0.0
    zlim = max(4.0, min(zmax, 50.0), (z_star or 0) * 1.1)
    vmax = float(max(np.nanmax(obs), np.nanmax(exp), 1e-9))
    fig = Figure(figsize=(12, 3.9), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [(obs, "observed drop rate", "viridis", 0.0, vmax), (exp, "exact drop rate (declared profile)",
              "viridis", 0.0, vmax), (z, "standardised difference z", "RdBu_r", -zlim, zlim)]
    for ax, (data, title, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("column", fontsize=8)
        ax.set_ylabel("row", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(im, ax=ax, shrink=0.85, pad=0.02).ax.tick_params(labelsize=7)
    if z_star is not None:
        hot = np.argwhere(np.abs(z) > z_star)
        if len(hot):
            axes[2].scatter(hot[:, 1], hot[:, 0], marker="s", s=40, facecolors="none", edgecolors="black",
                            linewidths=1.0)
    sub = f"max |z| = {zmax:.2f}" + (f"; positions with |z| > {z_star:.2f} (Bonferroni) boxed" if z_star else "")
    full_shape = np.asarray(details["observed"], dtype=float).shape
    shape = "x".join(str(s) for s in full_shape) + (" (middle slice shown)" if len(full_shape) > 2 else "")
    fig.suptitle(f"{_mpl(check_label(check))}: {check.get('verdict', '?')}\n{shape} map, block "
                 f"{details.get('block_size', '?')}, drop_prob {details.get('drop_prob', '?')}, n = {n} maps; {sub}",
                 fontsize=9.5, color=COLORS.get(str(check.get("verdict")), "black"))
    return _to_uri(fig)


def rate_curve_png(name: str, checks: list[dict[str, Any]]) -> str | None:
    """Drop fraction against drop_prob, with CIs, the declared profile's exact curve and the paper's."""
    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, c in enumerate(checks):
        d = c.get("details") or {}
        x = np.asarray(d.get("drop_probs") or [], dtype=float)
        obs = _series(d, "observed", len(x))
        if x.ndim != 1 or not len(x) or obs is None:
            continue
        color = COLORS.get(str(c.get("verdict")), "black")
        lo, hi = _series(d, "ci_low", len(x)), _series(d, "ci_high", len(x))
        yerr = None if lo is None or hi is None else np.vstack([np.clip(obs - lo, 0, None), np.clip(hi - obs, 0, None)])
        ax.errorbar(x, obs, yerr=yerr, fmt=_MARKERS[i % len(_MARKERS)], color=color, capsize=3, ms=5,
                    label=f"observed {_mpl(_tag(c))}")
        exp = _series(d, "expected", len(x))
        if exp is not None and i == 0:
            ax.plot(x, exp, "-", color="#1565c0", lw=1.6, label="declared profile (exact)")
        paper = _series(d, "paper", len(x))
        if paper is not None and i == 0:
            ax.plot(x, paper, "--", color="#6a1b9a", lw=1.4, label="paper (exact)")
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("drop_prob")
    ax.set_ylabel("fraction of units dropped")
    ax.set_title(f"{_mpl(name)}: drop rate curve", fontsize=10)
    _style(ax)
    ax.legend(fontsize=8, frameon=False)
    return _to_uri(fig)


def pair_profile_png(name: str, checks: list[dict[str, Any]]) -> str | None:
    """Pair co-drop probability against distance: observed against the declared profile's exact law."""
    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.subplots()
    drawn = False
    for i, c in enumerate(checks):
        d = c.get("details") or {}
        x = np.asarray(d.get("distances") or [], dtype=float)
        obs = _series(d, "observed", len(x))
        if x.ndim != 1 or not len(x) or obs is None:
            continue
        tag = _mpl(_tag(c))
        ax.plot(x, obs, _MARKERS[i % len(_MARKERS)], color=COLORS.get(str(c.get("verdict")), "black"), ms=5,
                label=f"observed {tag}")
        exp = _series(d, "expected", len(x))
        if exp is not None:
            ax.plot(x, exp, "-", color="#1565c0", lw=1.4, alpha=0.9, label=f"exact {tag}")
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("distance between the two units")
    ax.set_ylabel("co-drop probability")
    ax.set_title(f"{_mpl(name)}: pair co-drop profile", fontsize=10)
    _style(ax)
    ax.legend(fontsize=8, frameon=False)
    return _to_uri(fig)


def pvalue_png(name: str, checks: list[dict[str, Any]]) -> str | None:
    """Each statistical check's p-value (log scale) with its alpha marked; a check fails left of its mark.

    The axis reaches two decades below the smallest alpha (further for small p-values, down to 1e-16);
    smaller p-values are drawn as a triangle at the left edge, labelled with their value.
    """
    stat = statistical_checks(checks)
    if not stat:
        return None
    lowest = min([c["alpha"] for c in stat] + [max(c["pvalue"], 1e-16) for c in stat if c["pvalue"] > 0] or [1e-16])
    floor = 10.0 ** (math.floor(math.log10(min(lowest, min(c["alpha"] for c in stat) / 100))) - 0.5)
    fig = Figure(figsize=(9, 1.1 + 0.3 * len(stat)), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(len(stat))[::-1]
    for y, c in zip(ys, stat):
        p = c["pvalue"]
        color = COLORS.get(str(c.get("verdict")), "black")
        ax.hlines(y, max(p, floor), 1.0, color="#eeeeee", lw=6, zorder=1)
        if p < floor:
            ax.plot([floor], [y], "<", color=color, ms=8, zorder=3)
            ax.annotate(f"p = {p:.1e}" if p > 0 else f"p {P_FLOOR}", (floor, y), xytext=(9, 0),
                        textcoords="offset points", va="center", fontsize=7.5, color=color)
        else:
            ax.plot([p], [y], "o", color=color, ms=7, zorder=3)
        ax.plot([c["alpha"]], [y], "|", color="black", ms=14, mew=2, zorder=2)
    ax.set_xscale("log")
    ax.set_xlim(floor / 1.5, 1.6)
    ax.set_ylim(-0.7, len(stat) - 0.3)
    ax.set_yticks(ys)
    ax.set_yticklabels([_mpl(check_label(c)) for c in stat], fontsize=8)
    ax.set_xlabel("p-value (log scale)", fontsize=8.5)
    ax.set_title(f"{_mpl(name)}: p-values of the statistical checks", fontsize=10)
    handles = [Line2D([], [], ls="", marker="o", color=COLORS["pass"], label="pass"),
               Line2D([], [], ls="", marker="o", color=COLORS["fail"], label="fail"),
               Line2D([], [], ls="", marker="|", color="black", mew=2, ms=10, label="alpha of the check")]
    ax.legend(handles=handles, fontsize=7.5, frameon=False, loc="lower left", bbox_to_anchor=(1.0, 0.0))
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, axis="x", color="#e0e0e0", linewidth=0.6)
    ax.tick_params(axis="x", labelsize=8)
    return _to_uri(fig)


def _ratio_checks(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Statistical checks whose effect is a ratio to the law (1 when the implementation is as declared)."""
    return [c for c in statistical_checks(checks) if isinstance(c.get("effect"), (int, float))
            and " / " in effect_units(c)[0]]


def effect_png(name: str, checks: list[dict[str, Any]]) -> str | None:
    """Each ratio effect (observed / exact, log scale) with its confidence interval, one row per check instance
    in every device and dtype; 1 is the declared law. Effects of 0 are drawn at the left edge."""
    rows = _ratio_checks(checks)
    if not rows:
        return None
    values = [c["effect"] for c in rows] + [v for c in rows for v in (c.get("ci") or []) if isinstance(v, (int, float))]
    positive = [v for v in values if v > 0]
    lo = min([0.5] + [v / 1.5 for v in positive])
    hi = max([2.0] + [v * 1.5 for v in positive])
    fig = Figure(figsize=(9, 1.1 + 0.3 * len(rows)), layout="constrained")
    ax = fig.subplots()
    ys = np.arange(len(rows))[::-1]
    for y, c in zip(ys, rows):
        color = COLORS.get(str(c.get("verdict")), "black")
        ci = c.get("ci") or []
        if len(ci) == 2 and all(isinstance(v, (int, float)) for v in ci):
            ax.hlines(y, max(ci[0], lo), max(ci[1], lo), color=color, lw=2, alpha=0.6, zorder=2)
        e = c["effect"]
        if e <= lo:
            ax.plot([lo], [y], "<", color=color, ms=8, zorder=3)
            ax.annotate(f"{e:.2g}", (lo, y), xytext=(9, 0), textcoords="offset points", va="center", fontsize=7.5,
                        color=color)
        else:
            ax.plot([e], [y], "o", color=color, ms=6, zorder=3)
    ax.axvline(1.0, color="#1565c0", lw=1.2, zorder=1)
    ax.set_xscale("log")
    ax.set_xlim(lo / 1.2, hi)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_yticks(ys)
    ax.set_yticklabels([_mpl(check_label(c)) for c in rows], fontsize=8)
    ax.set_xlabel("effect: observed / exact under the declared profile (log scale; 1 = as declared)", fontsize=8.5)
    ax.set_title(f"{_mpl(name)}: effects with confidence intervals, every dtype", fontsize=10)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(True, axis="x", color="#e0e0e0", linewidth=0.6)
    ax.tick_params(axis="x", labelsize=8)
    return _to_uri(fig)


def _safe(fn, *args) -> str | None:
    try:
        return fn(*args)
    except Exception:  # a malformed detail must not stop the report
        return None


def implementation_plots(impl: dict[str, Any]) -> list[dict[str, str]]:
    """The plots of one implementation, ``[{"kind", "title", "caption", "src"}]``, for what its checks hold."""
    name = str(impl.get("name", "?"))
    checks = impl.get("checks", [])
    plots = []

    def add(kind: str, title: str, caption: str, src: str | None) -> None:
        if src:
            plots.append({"kind": kind, "title": title, "caption": caption, "src": src})

    add("pvalues", "p-values against alpha", "Each statistical check's p-value; the black bar is the check's alpha "
        "(its share of the implementation's alpha). A p-value left of its bar fails.", _safe(pvalue_png, name, checks))
    add("effects", "effects against the exact law", "Each statistical check's effect as a ratio to the declared "
        "profile's exact law (1 = as declared) with its confidence interval, in every device and dtype that ran; "
        "the unit of each check is in the table of checks.", _safe(effect_png, name, checks))
    rate = [c for c in checks if c.get("id") == "T1.rate_curve"]
    if rate:
        add("rate_curve", "T1.rate_curve: drop rate against drop_prob", "Observed fraction of dropped units with "
            "confidence intervals, the exact curve of the declared profile and of the paper.",
            _safe(rate_curve_png, name, rate))
    pair = [c for c in checks if c.get("id") == "T3.pair_profile"]
    if pair:
        add("pair_profile", "T3.pair_profile: co-drop against distance", "Probability that two units at a given "
            "distance drop together: observed against the exact law.", _safe(pair_profile_png, name, pair))
    for c in checks:
        if c.get("id") == "T2.position_profile":
            add("position_profile", f"{check_label(c)}: per-position drop rate", "Per-position drop rate: observed, "
                "exact under the declared profile, and the standardised difference (obs - exp) / sqrt(exp (1 - exp)"
                " / n).", _safe(position_profile_png, c))
    return plots
