"""Plain-language texts about the checks, for the reports and the documentation.

Four tables, read by :mod:`reports` and by the documentation's check catalogue:

- :data:`FAMILIES`: per check family (``T0`` .. ``T7``, ``P``, ``S``), its name, what it tests in one plain
  sentence, and its null hypothesis H0;
- :data:`CHECKS`: per check id, what it tests and what to do when it fails;
- :data:`EFFECTS`: per check id, the unit of its ``effect`` and of its ``mde`` (minimum detectable effect);
- :data:`CHECK_VERDICT_TEXT`, :data:`IMPL_VERDICT_TEXT`: what each verdict means.

The formulas behind the texts are those of :mod:`verification.theory` (Ghiasi, Lin & Le 2018, Eq. 1 and
Alg. 1, with the exact law of the mask under each profile).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAMILIES", "CHECKS", "EFFECTS", "FAILURE_ADVICE", "VERDICT_ADVICE", "CLOSEST_PROFILE_ADVICE",
           "DETERMINISTIC_FIRST",
           "CHECK_VERDICT_TEXT", "IMPL_VERDICT_TEXT", "family_of", "effect_units"]

#: family -> {"name", "tests" (one plain sentence), "h0" (null hypothesis; "none" for exact checks)}
FAMILIES: dict[str, dict[str, str]] = {
    "T0": {"name": "output contract",
           "tests": "Each single output obeys the rules every DropBlock must: shape, dtype and device kept, the input "
                    "returned unchanged in eval mode and at drop_prob 0, every unit either 0 or the input times one "
                    "scale, masks made of whole blocks, same seed same mask, input not modified.",
           "h0": "none: exact properties, a single violation fails (no statistics, no alpha spent)"},
    "P": {"name": "precision and extreme inputs",
          "tests": "Half precision and extreme inputs: the normalising sum does not overflow in float16, dropping "
                   "everything gives zeros rather than NaN, and the drop rate stays right in float16 and bfloat16 "
                   "with a small gamma.",
          "h0": "P.half_rate: as T1 (interior drop rate Binomial(n, p_u)); the other P checks are exact"},
    "T1": {"name": "drop rate",
           "tests": "The share of dropped units equals the exact value under the declared profile, at the "
                    "configured drop_prob and along a curve of drop_prob values.",
           "h0": "the dropped count of mutually independent interior units is Binomial(n, p_u) with "
                 "p_u = 1 - (1 - gamma)^n(u); for the curve, the mean drop fraction per map equals its exact "
                 "expectation at every drop_prob"},
    "T2": {"name": "per-position profile",
           "tests": "Every position of a non-square map, borders included, drops as often as the declared seed "
                    "region and block placement imply (also with an even block and a block larger than the map).",
           "h0": "at each position u, the number of the M independent maps that drop u is Binomial(M, p_u)"},
    "T3": {"name": "block shape",
           "tests": "Two units at distance 1 to block_size + 1 drop together as often as square blocks of side "
                    "block_size imply.",
           "h0": "for each pair (u, v), the number of maps dropping both is Binomial(M, P(u and v dropped)) with "
                 "the exact pair probability of the declared law"},
    "T4": {"name": "mask sharing",
           "tests": "Channels of one sample, and samples of one batch, get independent or shared masks as declared.",
           "h0": "at independent units, two channels (two samples) co-drop with probability p_u if the mask is "
                 "shared and p_u^2 if it is independent"},
    "T5": {"name": "seed layer",
           "tests": "With block_size 1 the mask is the seed field itself: every unit drops on its own with "
                    "probability gamma.",
           "h0": "the dropped count of each map is Binomial(H x W, gamma)"},
    "T6": {"name": "whole mask law",
           "tests": "On a tiny map, where every possible mask can be listed, each mask appears as often as its "
                    "exact probability says and no impossible mask appears.",
           "h0": "the masks are drawn from the enumerated mask distribution of the declared profile"},
    "T7": {"name": "count distribution",
           "tests": "The number of dropped units per map, spread included, is distributed as under the reference "
                    "sampler (and, on CUDA, as on the CPU).",
           "h0": "the two samples of per-map dropped counts come from one distribution"},
    "T8": {"name": "noise fill",
           "tests": "Under a profile whose dropped units hold noise (timm's with_noise), those values are standard "
                    "normal.",
           "h0": "the values of the dropped units, one per unit of each independent mask, are i.i.d. N(0, 1)"},
    "S": {"name": "scheduler",
          "tests": "The linear scheduler moves drop_prob from its start to its stop value in nr_steps equal steps, "
                   "then holds it (measured on the mutant zoo).",
          "h0": "none: exact sequence of values"},
}

#: check id -> {"tests": one plain sentence, "advice": what to do when it fails}
CHECKS: dict[str, dict[str, str]] = {
    "T0.output_contract": {
        "tests": "The output has the input's shape, device and the declared dtype; the input is left untouched; no "
                 "NaN; every unit is 0 or the input times one common scale; masks are shared as declared; eval "
                 "mode and drop_prob 0 return the input.",
        "advice": "Return a new tensor of the input's shape on the input's device (for half inputs in the declared "
                  "output dtype), zero the dropped units and multiply the kept ones by one scale; return the input "
                  "unchanged when not training or at drop_prob 0, before drawing anything; never write into the "
                  "input unless in-place operation was asked for."},
    "T0.rescaling": {
        "tests": "The output is exactly x * keep * scale with scale = numel(mask) / (kept + eps) over the declared "
                 "mask tensor, and the input gradient is grad * keep * scale, everything dropped included.",
        "advice": "Build the output as x * mask * scale from one mask and one scale computed as the profile "
                  "declares (global count, its eps); let autograd see that product (no detach, no in-place write "
                  "into a tensor that needs its gradient), also when every unit drops."},
    "T0.argument_validation": {
        "tests": "drop_prob outside [0, 1] or NaN, block_size < 1 and block sizes the profile rejects raise "
                 "ValueError.",
        "advice": "Check the arguments first and raise ValueError with a message naming the bad value (not an "
                  "error from deep inside torch, not a silent clip)."},
    "S.schedule": {
        "tests": "Along a declared schedule (a linear ramp driven by step(), or a gamma warm-up counted per call) "
                 "the drop rate at each checkpoint is the exact law's at that point of the ramp.",
        "advice": "Set drop_prob (or scale gamma) exactly as the schedule says at each step or call, and hold the "
                  "last value; or declare the schedule the implementation really follows."},
    "T0.rejections": {
        "tests": "Each call the implementation declares it rejects (an even block, a block larger than the map, "
                 "drop_prob = 0) raises one of the exception types it declares.",
        "advice": "Reject those calls at the top with a clear error of the declared type, or declare what really "
                  "happens (accept the input, or the exception type it raises: --contract raises=...)."},
    "T0.opening": {
        "tests": "Every mask is a union of whole block_size x block_size blocks placed in the declared seed region.",
        "advice": "Put seeds only where the declared seed region allows (valid: the whole block fits in the map) and "
                  "drop exactly the block around each seed: check the max-pool padding and the offset for even "
                  "sizes."},
    "T0.determinism": {
        "tests": "The same torch seed gives the same mask.",
        "advice": "Draw every random number from torch's generator, so that torch.manual_seed fixes the mask (no "
                  "numpy or Python random state, no seeding from the clock)."},
    "T0.input_independence": {
        "tests": "Under one seed, the mask and the scale do not depend on the input's values (all-ones input, then a "
                 "signed input with exact zeros and large values).",
        "advice": "Draw the mask from the shape and the generator only, never from the values (no x > 0 tests, no "
                  "scale counted from the non-zero outputs): a zero or negative activation must be dropped like any "
                  "other."},
    "T0.memory": {
        "tests": "Repeated calls on CUDA do not grow the allocated memory.",
        "advice": "Free per-call buffers and do not keep masks or tensors alive between calls."},
    "P.half_overflow": {
        "tests": "In float16 and bfloat16 the normalising sum does not overflow (no all-zero or inf output).",
        "advice": "The normalising sum overflows in float16: accumulate it in float32 (mask.sum(dtype=torch.float32)) "
                  "and cast only the final scale back."},
    "P.all_dropped": {
        "tests": "When every unit drops, the output is zeros, never NaN.",
        "advice": "Guard the scale against a kept count of 0 (an eps, or torch.where(kept > 0, numel / kept, 0)), so "
                  "that 0 / 0 cannot give NaN."},
    "P.half_rate": {
        "tests": "In half precision with a small gamma (28 x 28 maps with block 7, 56 x 56 with block 5) the drop "
                 "rate is still right.",
        "advice": "Draw the seeds in float32 (torch.bernoulli on a float32 tensor, or a float32 uniform compared "
                  "with gamma): a float16 or bfloat16 uniform compared with a small gamma is biased."},
    "T1.lattice_rate": {
        "tests": "Interior units drop as often as the exact law of the declared profile says, on 14 x 14, 56 x 56, "
                 "28 x 28 and 7 x 7 maps (and the points given with --config).",
        "advice": "Check gamma against the declared gamma rule (the paper's Eq. 1 divides by the size of the valid "
                  "seed region) and the seed region itself; the closest profile in the report names the law the "
                  "implementation follows."},
    "T1.rate_curve": {
        "tests": "The mean drop fraction follows the exact curve for drop_prob 0.05, 0.1, 0.2 and 0.3.",
        "advice": "The same factor off at every drop_prob points to the gamma rule; a gap that grows with drop_prob "
                  "points to the block size or to how overlapping blocks are counted."},
    "T2.position_profile": {
        "tests": "Each position of a 9 x 12 and of a 14 x 7 map drops as often as the exact law says, borders "
                 "included.",
        "advice": "Compare the observed and exact heat maps: too many drops at the borders mean seeds outside the "
                  "declared region, a transposed pattern means height and width are swapped, a one-unit shift means "
                  "a wrong block offset."},
    "T2.even_block": {
        "tests": "With an even block_size (4, 2 and 6) each position drops as the declared even-size policy "
                 "implies.",
        "advice": "Put the seed at the corner of the block the profile declares (top-left or bottom-right), or "
                  "reject even sizes with a ValueError and declare that."},
    "T2.oversize_block": {
        "tests": "With a block larger than the map each position drops as the declared oversize policy implies.",
        "advice": "Clip the block to the map as the profile declares (per axis, or to the smallest side) or reject "
                  "it with a ValueError; never divide by the size of an empty seed region."},
    "T3.pair_profile": {
        "tests": "Pairs of units at distance 1 to block_size + 1 drop together as blocks of side block_size imply.",
        "advice": "A step at the wrong distance means blocks of the wrong side (k - 1 or k + 1: check the padding); a "
                  "difference at the border anchor only means shifted blocks."},
    "T4.sharing": {
        "tests": "Masks are independent or shared across channels and across samples as declared.",
        "advice": "Draw one mask per (sample, channel) for sharing 'none', one per sample broadcast over the channels "
                  "for 'channel'; or declare the sharing the implementation really uses."},
    "T4.map_independence": {
        "tests": "The maps of one call (every sample and channel) carry mutually independent masks.",
        "advice": "Draw every map's seeds from fresh random numbers: no map's mask derived from another's (copied, "
                  "mirrored, shifted) and no random field common to the whole call."},
    "T4.call_stream": {
        "tests": "Consecutive calls without reseeding give independent masks (no repeated or carried-over random "
                 "numbers).",
        "advice": "Draw from torch's global generator (or one that advances) on every call: do not cache a mask, "
                  "reseed from a fixed or initial seed, or reuse part of the last call's random numbers."},
    "T5.seed_layer": {
        "tests": "With block_size 1 every unit drops independently with probability gamma; with a block as large "
                 "as the map, the map drops whole with probability gamma.",
        "advice": "At block_size 1 DropBlock is dropout with rate gamma: check the gamma rule, and that seeds are "
                  "drawn independently for every unit."},
    "T6.tiny_mask_law": {
        "tests": "On a 5 x 5 map every possible mask appears with its exact probability, and no impossible mask.",
        "advice": "An impossible mask is printed in the message: compare it with the declared block shape and seed "
                  "region. Otherwise compare the most frequent masks with their exact probabilities (details)."},
    "T7.count_distribution": {
        "tests": "The number of dropped units per map has the distribution the reference sampler gives.",
        "advice": "A right mean with a wrong spread means dependence between blocks or maps (shared random numbers, "
                  "reused masks): compare the standard deviations in the message."},
    "T7.cpu_vs_cuda": {
        "tests": "On CUDA the per-map dropped counts follow the same law as on the CPU.",
        "advice": "Use one algorithm on both devices and draw on the input's device with torch's generator."},
    "T8.noise_law": {
        "tests": "Dropped units hold standard normal noise, one value per unit of the mask.",
        "advice": "Draw the noise with torch.randn in the mask's shape and put it in the dropped units only, "
                  "without the kept units' scale (a noise profile rescales nothing)."},
}

#: check id -> (unit of ``effect``, unit of ``mde``)
EFFECTS: dict[str, tuple[str, str]] = {
    "T1.lattice_rate": ("implied / declared gamma at the worst point", "relative gamma error"),
    "P.half_rate": ("implied / declared gamma at the worst point", "relative gamma error"),
    "T1.rate_curve": ("implied / declared gamma at the worst drop_prob", "relative gamma error"),
    "T2.position_profile": ("observed / exact drop rate at the worst position", "relative error per position"),
    "T2.even_block": ("observed / exact drop rate at the worst position", "relative error per position"),
    "T2.oversize_block": ("observed / exact drop rate at the worst position", "relative error per position"),
    "T3.pair_profile": ("observed / exact co-drop of the worst pair", "relative error of the co-drop"),
    "S.schedule": ("observed / exact drop rate at the worst checkpoint", "relative rate error at a checkpoint"),
    "T4.sharing": ("P(b | a) / P(b) of the worst pair kind (1: independent)",
                   "relative co-drop excess over independence"),
    "T4.map_independence": ("P(b | a) / P(b) of two maps of one call (1: independent)",
                            "relative co-drop excess over independence"),
    "T4.call_stream": ("P(b | a) / P(b) of one map in consecutive calls (1: independent)",
                       "relative co-drop excess over independence"),
    "T5.seed_layer": ("mean drop rate / gamma at k = 1", "relative gamma error"),
    "T6.tiny_mask_law": ("observed / exact frequency of the worst cell", "relative error of the most likely mask's "
                         "frequency"),
    "T7.count_distribution": ("sd of dropped count / reference sd", "ratio of count standard deviations"),
    "T7.cpu_vs_cuda": ("mean dropped count on CUDA / on the CPU", ""),
    "T8.noise_law": ("standard deviation of the dropped units' values", "noise sd ratio"),
}

#: ``details["failure"]`` of a check whose implementation call misbehaved -> what to do
FAILURE_ADVICE: dict[str, str] = {
    "raised": "The implementation raised: run the reproduction snippet to see the traceback. If it rejects this "
              "input on purpose, it should say so with a ValueError or TypeError naming the bad value.",
    "timeout": "The call did not return in time: run the reproduction snippet; check for a loop over elements or "
               "a deadlock. --timeout sets the limit per call.",
    "not-a-tensor": "Return a torch.Tensor.",
    "shape": "Return a tensor of the input's shape.",
    "device": "Return the output on the input's device.",
}

#: check verdict -> what to do, for the verdicts that say nothing about the check itself
VERDICT_ADVICE: dict[str, str] = {
    "crashed": "The process died while running this check: run the reproduction snippet on its own to see the "
               "crash (native code, or memory running out).",
    "timeout": FAILURE_ADVICE["timeout"],
    "not-run": "The run stopped before this check: run it again (--checks selects single checks).",
    "xpass": "This check passes now: remove it from the expected failures.",
}

#: added to the advice of a statistical or block-shape failure when the closest profile is not the declared one
CLOSEST_PROFILE_ADVICE = ("Its masks are closest to profile '{closest}': if that is the law it means to follow, "
                          "declare it (dropblock-verify run --impl {spec} --profile {closest}).")

#: put before the advice of a statistical failure when deterministic checks fail on the same device and dtype
DETERMINISTIC_FIRST = ("Fix {ids} ({dtype}) first: a wrong output (all zeros, NaN, a wrong scale) makes the "
                       "statistical checks fail too.")

#: check verdict -> meaning (every value of :data:`verification.results.CHECK_VERDICTS`)
CHECK_VERDICT_TEXT: dict[str, str] = {
    "pass": "the check ran and found nothing wrong",
    "fail": "the check ran and the implementation contradicts the declared profile",
    "error": "the implementation raised or hung, or the check could not decide",
    "crashed": "the process running the check died (signal or exit status in the message)",
    "timeout": "the check ran past its time limit and was stopped",
    "not-run": "the check was planned but never ran (the run was interrupted)",
    "skip": "the check does not apply to this implementation (a capability it does not declare)",
    "xfail": "the check failed, as an expectations file says it does",
    "xpass": "an expected failure passed: the expectation is stale and should be removed",
}

#: implementation verdict -> meaning (every value of :data:`verification.results.IMPL_VERDICTS`)
IMPL_VERDICT_TEXT: dict[str, str] = {
    "conforms": "every check that ran passed (or failed as expected)",
    "does-not-conform": "a check failed, an expected failure passed, or the implementation raised, crashed or hung "
                        "on some checks while passing others",
    "error": "nothing passed: the checks only errored, crashed or timed out",
    "incomplete": "nothing failed, but planned checks did not run",
    "unavailable": "requested, but it could not be loaded",
    "skipped": "nothing ran (not installed, or no check applies)",
}


def family_of(check_id: str) -> str:
    """``"T1"`` for ``"T1.lattice_rate"``."""
    return str(check_id).split(".", 1)[0]


def effect_units(check: dict[str, Any]) -> tuple[str, str]:
    """Units of a check result's ``effect`` and ``mde`` (``""`` when the check has none).

    A T6 check that found impossible masks reports the share of such masks as its effect.
    """
    cid = str(check.get("id", ""))
    if cid == "T6.tiny_mask_law" and (check.get("details") or {}).get("outside"):
        return "share of maps with an impossible mask", ""
    return EFFECTS.get(cid, ("", ""))
