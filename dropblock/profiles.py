"""Profiles: the axes on which DropBlock implementations differ, and named presets.

A :class:`Profile` fixes every free choice of the DropBlock mask law (Ghiasi, Lin & Le, 2018, Sec. 3 and
Algorithm 1) so that the law is known exactly: where seeds may fire, how the seed probability ``gamma`` is
derived from ``drop_prob``, which maps share a mask, how even and oversized blocks are placed, and how kept
units are rescaled.

Presets mirror the behaviour of the public implementations at the versions named in their docstrings; they
mirror the *intended* law of each peer (its documented semantics), not its numerical defects, which the
verification suite is there to find.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["Profile", "PRESETS", "get_profile", "preset_names", "parse_profile", "format_profile",
           "profile_from_mapping", "read_profile_file"]

SeedRegion = Literal["valid", "all"]
GammaRule = Literal["paper", "per_block", "exact"]
Sharing = Literal["none", "channel", "batch", "batch_per_channel"]
EvenPolicy = Literal["reject", "top_left", "bottom_right"]
OversizePolicy = Literal["clip", "clip_min", "overhang", "reject"]
Normalize = Literal["global", "none"]
OutputDtype = Literal["preserve", "float32"]
Fill = Literal["zero", "noise"]

_CHOICES = {
    "seed_region": ("valid", "all"),
    "gamma_rule": ("paper", "per_block", "exact"),
    "sharing": ("none", "channel", "batch", "batch_per_channel"),
    "even_policy": ("reject", "top_left", "bottom_right"),
    "oversize_policy": ("clip", "clip_min", "overhang", "reject"),
    "normalize": ("global", "none"),
    "output_dtype": ("preserve", "float32"),
    "fill": ("zero", "noise"),
}


@dataclass(frozen=True)
class Profile:
    """One exact DropBlock law.

    Parameters
    ----------
    name : str
        Label used in reports.
    seed_region : {"valid", "all"}
        ``"valid"``: seeds (block top-left corners) only where the whole block fits in the map, the
        paper's valid seed region (Sec. 3, Fig. 2). ``"all"``: a seed at every position, its block clipped
        at the map border.
    gamma_rule : {"paper", "per_block", "exact"}
        ``"paper"``: Eq. 1 generalised to any map, ``gamma = drop_prob * prod(L) / (prod(k) * prod(L - k
        + 1))`` with the effective block sides ``k``. ``"per_block"``: ``drop_prob / prod(k)`` (original
        ``dropblock`` 0.3.0). ``"exact"``: the gamma whose expected drop fraction under this profile equals
        ``drop_prob`` exactly (no peer offers it; Eq. 1 ignores block overlaps and under-drops).
    gamma_scale : float
        Multiplies the rule's gamma (timm's ``gamma_scale``). The result is clipped to [0, 1].
    sharing : {"none", "channel", "batch", "batch_per_channel"}
        ``"none"``: one mask per (sample, channel) (paper Algorithm 1). ``"channel"``: one mask per sample
        shared by its channels. ``"batch"``: one mask shared by the whole batch and all channels.
        ``"batch_per_channel"``: one mask per channel shared by every sample of the batch (a ``(1, C, H, W)``
        mask, as gluon-cv 0.10 ``DropBlock`` draws it).
    even_policy : {"reject", "top_left", "bottom_right"}
        For an even block side: raise ``ValueError``, or place the seed at the top-left / bottom-right of
        the block's centre. Under ``seed_region="valid"`` the placement does not change the law.
    oversize_policy : {"clip", "clip_min", "overhang", "reject"}
        For a block side larger than the map: ``"clip"`` clips each side to its own axis; ``"clip_min"``
        clips the (square or cubic) block to the smallest map side (torchvision, timm <= 1.0.22);
        ``"overhang"`` keeps the full block and clips it only when painted (original ``dropblock``, ``"all"``
        seed region only); ``"reject"`` raises ``ValueError``.
    normalize : {"global", "none"}
        ``"global"``: kept units are multiplied by ``numel(mask) / (count_kept(mask) + eps)`` over the whole
        mask tensor (the authors' TF code); ``"none"``: no rescaling.
    eps : float
        Added to the kept count. With ``eps == 0`` an all-dropped tensor gives zeros (never ``0/0``).
    output_dtype : {"preserve", "float32"}
        ``"preserve"`` returns the input dtype; ``"float32"`` promotes half-precision inputs to float32.
    fill : {"zero", "noise"}
        What a dropped unit holds. ``"zero"``: 0 (the paper). ``"noise"``: a standard normal value, one per unit
        of the block mask (maps that share a mask share the values), drawn independently of the mask and of
        the input and rounded to the output dtype; kept units are not rescaled, so it needs
        ``normalize="none"`` (timm's ``with_noise=True``, ``timm/layers/drop.py`` 1.0.23 to 1.0.31).
    """

    name: str = "custom"
    seed_region: SeedRegion = "valid"
    gamma_rule: GammaRule = "paper"
    gamma_scale: float = 1.0
    sharing: Sharing = "none"
    even_policy: EvenPolicy = "bottom_right"
    oversize_policy: OversizePolicy = "clip"
    normalize: Normalize = "global"
    eps: float = 0.0
    output_dtype: OutputDtype = "preserve"
    fill: Fill = "zero"

    def __post_init__(self) -> None:
        for field, allowed in _CHOICES.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"Profile.{field} must be one of {allowed}, got {value!r}")
        if not isinstance(self.gamma_scale, (int, float)) or isinstance(self.gamma_scale, bool):
            raise TypeError(f"Profile.gamma_scale must be a real number, got {type(self.gamma_scale).__name__}")
        if not math.isfinite(self.gamma_scale) or self.gamma_scale < 0:
            raise ValueError(f"Profile.gamma_scale must be finite and >= 0, got {self.gamma_scale!r}")
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool):
            raise TypeError(f"Profile.eps must be a real number, got {type(self.eps).__name__}")
        if not math.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"Profile.eps must be finite and >= 0, got {self.eps!r}")
        if self.oversize_policy == "overhang" and self.seed_region == "valid":
            raise ValueError("Profile.oversize_policy='overhang' needs seed_region='all' (no block fits)")
        if self.fill == "noise" and self.normalize != "none":
            raise ValueError("Profile.fill='noise' needs normalize='none' (kept units are not rescaled)")

    def replace(self, **changes: object) -> Profile:
        """Return a copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def law_fields(self) -> dict[str, object]:
        """The fields that define the law (everything but ``name``)."""
        out = dataclasses.asdict(self)
        out.pop("name")
        return out


PRESETS: dict[str, Profile] = {
    # Authors' TF code (tensorflow/tpu models/official/resnet/resnet_model.py, ``dropblock``), generalised to
    # any H x W and to 3D: valid seed region, Eq. 1, one mask per channel (Algorithm 1), block clipped to
    # each axis, even sides as TF 'SAME' pooling (seed bottom-right), global rescale without epsilon.
    "paper": Profile(name="paper"),
    # torchvision.ops.drop_block2d / drop_block3d (torchvision/ops/drop_block.py, 0.24 to 0.29):
    # block_size = min(block_size, *spatial) then odd-only, valid region, Eq. 1, per channel, eps 1e-6.
    "torchvision": Profile(
        name="torchvision",
        even_policy="reject",
        oversize_policy="clip_min",
        eps=1e-6,
    ),
    # timm.layers.drop_block_2d defaults (timm/layers/drop.py, 1.0.23 to 1.0.31): seeds at every position
    # (max-pool with padding), Eq. 1 with per-axis clipped sides, couple_channels=True, even sides with the
    # seed bottom-right, normalisation over the (N, 1, H, W) mask with eps 1e-7.
    "timm": Profile(
        name="timm",
        seed_region="all",
        sharing="channel",
        eps=1e-7,
    ),
    # timm 1.0.22 drop_block_2d with fast=False, batchwise=False (timm/layers/drop.py): valid region done
    # right (1.0.22 builds it as (W, H) and reshapes to (H, W)), Eq. 1 with the block clipped to the
    # smallest side (1.0.22 also uses the unclipped side in one factor, which divides by zero once
    # block_size > map; the preset uses the clipped side throughout), per channel, even sizes rejected
    # (1.0.22 crashes on them), eps 1e-7.
    "timm_legacy": Profile(
        name="timm_legacy",
        even_policy="reject",
        oversize_policy="clip_min",
        eps=1e-7,
    ),
    # timm 1.0.22 drop_block_fast_2d (timm/layers/drop.py), the path of ``DropBlock2d`` with its default
    # fast=True: Bernoulli(gamma) seeds at every position of a tensor shaped like the input (one mask per
    # (sample, channel)), each growing a block centred on it and clipped at the border (max-pool with padding
    # k // 2); gamma by Eq. 1 with the block clipped to the smallest side; rescaled by numel / (sum + 1e-6);
    # even sizes rejected (1.0.22 crashes on them: the pooled mask is one larger than the input).
    "timm_legacy_fast": Profile(
        name="timm_legacy_fast",
        seed_region="all",
        even_policy="reject",
        oversize_policy="clip_min",
        eps=1e-6,
    ),
    # Original PyPI package dropblock 0.3.0 (dropblock/dropblock.py): gamma = drop_prob / block_size**d
    # with the unclipped block, seeds at every position, one mask per sample shared by the channels,
    # even sides via padding block_size // 2 and dropping the last row/column (seed top-left), the block
    # never clipped before painting, global rescale without epsilon, float32 output for half inputs.
    "original": Profile(
        name="original",
        seed_region="all",
        gamma_rule="per_block",
        sharing="channel",
        even_policy="top_left",
        oversize_policy="overhang",
        output_dtype="float32",
    ),
}


def preset_names() -> tuple[str, ...]:
    """Names of the built-in presets, in a stable order."""
    return tuple(PRESETS)


def _field_value(field: dataclasses.Field, text: str, where: str) -> object:
    """``text`` converted to the type of ``field``'s default (bool, int, float or str)."""
    default = field.default
    if isinstance(default, bool):
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"{field.name}={text!r} in {where!r} is not a boolean (true or false)")
    if isinstance(default, (int, float)):
        try:
            value = float(text) if isinstance(default, float) else int(text)
        except ValueError:
            raise ValueError(f"{field.name}={text!r} in {where!r} is not a number") from None
        return value
    return text


def _law_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Profile) if f.name != "name"}


def profile_from_mapping(values: dict[str, object], *, base: str | Profile = "paper", where: str = "") -> Profile:
    """A profile from ``base`` (a preset, ``+exact`` allowed) with the fields in ``values`` changed.

    Values may be strings (converted to the field's type) or already typed; unknown fields raise.
    The name is :func:`format_profile` of the result.

    Raises
    ------
    ValueError
        An unknown field (the message lists the fields), a value the field does not accept.
    TypeError
        A value of the wrong type.
    """
    fields = _law_fields()
    prof = get_profile(base)
    changes: dict[str, object] = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"unknown profile field {key!r} in {where or key!r}; fields are {', '.join(fields)}")
        changes[key] = _field_value(fields[key], value, where or f"{key}={value}") if isinstance(value, str) \
            else value
    prof = prof.replace(**changes)
    return prof.replace(name=format_profile(prof))


def parse_profile(text: str) -> Profile:
    """Parse a law string ``PRESET[+exact][,field=value...]`` (or only ``field=value,...`` over ``paper``).

    Every field of :class:`Profile` but ``name`` may be set, e.g. ``"paper,sharing=channel"``,
    ``"original,normalize=none"``, ``"timm,gamma_scale=0.5"``; values are converted to the field's type.
    The profile's name is the canonical string of :func:`format_profile`.

    Raises
    ------
    ValueError
        Unknown preset, modifier or field, a malformed item (no ``=``), a repeated field, a bad value.
    """
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise ValueError(f"empty item in profile {text!r}; write PRESET[+exact][,field=value...]")
    base = "paper" if "=" in items[0] else items.pop(0)
    values: dict[str, object] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ValueError(f"item {item!r} in profile {text!r} is not field=value")
        key = key.strip()
        if key in values:
            raise ValueError(f"field {key!r} is set twice in profile {text!r}")
        values[key] = value.strip()
    if not values:
        return _preset(base, text)
    return profile_from_mapping(values, base=_preset(base, text), where=text)


def read_profile_file(path: str) -> Profile:
    """The law of a TOML file: an optional ``base = "PRESET[+exact]"`` (default ``"paper"``) and ``field =
    value`` lines for any :class:`Profile` field, e.g. ``base = "original"`` and ``normalize = "none"``.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        Not TOML, an unknown field or preset, a bad value (the message names the file).
    """
    import tomllib

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not TOML: {exc}") from None
    base = data.pop("base", "paper")
    if not isinstance(base, str):
        raise ValueError(f"{path}: base must be a preset name, got {base!r}")
    try:
        return profile_from_mapping(data, base=base, where=path)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{path}: {exc}") from None


def _preset(name: str, where: str) -> Profile:
    base, *mods = name.split("+")
    if base not in PRESETS:
        raise ValueError(f"unknown profile {where!r}; presets are {', '.join(PRESETS)}")
    prof = PRESETS[base]
    for mod in mods:
        if mod == "exact":
            prof = prof.replace(gamma_rule="exact", name=f"{prof.name}+exact")
        elif mod == "noise":  # timm's with_noise=True: dropped units hold N(0, 1) noise, no rescaling
            prof = prof.replace(fill="noise", normalize="none", name=f"{prof.name}+noise")
        else:
            raise ValueError(f"unknown profile modifier {mod!r} in {where!r}; known: 'exact', 'noise'")
    return prof


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def format_profile(profile: Profile) -> str:
    """The shortest law string naming ``profile``: the preset (or ``preset+exact``) differing from it in the
    fewest fields, then those fields, e.g. ``"paper,sharing=channel"``. ``parse_profile`` of it gives back a
    profile with the same law (:meth:`Profile.law_fields`)."""
    target = profile.law_fields()
    best: tuple[int, int, str, list[str]] | None = None
    for order, name in enumerate([*PRESETS, *(f"{n}+{m}" for m in ("exact", "noise") for n in PRESETS)]):
        base = _preset(name, name).law_fields()
        diff = [f"{k}={_format_value(v)}" for k, v in target.items() if base.get(k) != v]
        cand = (len(diff), order, name, diff)
        if best is None or cand[:2] < best[:2]:
            best = cand
    assert best is not None
    return ",".join([best[2], *best[3]])


def get_profile(profile: str | Profile) -> Profile:
    """Resolve a law string or pass a :class:`Profile` through.

    A string is a preset name with optional modifiers and field overrides (:func:`parse_profile`):
    ``"paper+exact"`` selects ``gamma_rule="exact"`` on top of ``paper``, ``"timm+noise"`` selects
    ``fill="noise"`` with ``normalize="none"`` (timm's ``with_noise=True``); ``"paper,sharing=channel"``
    changes one field.

    Raises
    ------
    TypeError
        If ``profile`` is neither a string nor a :class:`Profile`.
    ValueError
        If the string is not a law string (the message names the bad part and lists the presets or fields).
    """
    if isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str):
        raise TypeError(f"profile must be a preset name or a Profile, got {type(profile).__name__}")
    return parse_profile(profile)
