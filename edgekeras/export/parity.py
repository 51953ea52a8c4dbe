"""Parity: does an exported file compute what the Keras model computes? TensorFlow-free (numpy only).

One policy for every mode: `compare` never raises for a file that breaks a rule; it returns the `Parity` record
with `passed: false` and one message per broken rule (`problems`), and the caller writes the file, marks it and
ends the run with its own status.

Float32 files must match on every output element within `atol + rtol * |keras|` (as numpy.allclose), so
outputs in the thousands pass on float32 rounding while small outputs are held to `atol`; or, where float
rounding through a deep graph goes past that near zero, within `ROUNDING_OF_SPREAD` of the output's spread with
every decision the same (a note in the record says so). When they do not, the
message says how large the deviation is against the output's spread and whether the decisions (top-1 of class
scores, the 0.5 threshold of sigmoid outputs) still agree: a small deviation with the same decisions is float
kernels rounding differently (the fix is a larger tolerance), a large one or different decisions is a conversion
bug worth reporting.

Quantized files (and float16, dynamic) cannot match exactly; they are judged, per output, by:
- class scores: top-1 agreement with Keras, where a tie in the file's top score is a disagreement. A
  disagreement on a sample whose Keras top two scores lie within `NEAR_TIE` of its largest output is a near-tie
  (a coin toss no file can be expected to call the same way) and is not evidence; the file fails when its
  decisive disagreements are more than `MAX_DISAGREEMENT` of the samples and more than chance allows for a file
  that agrees that well (one-sided binomial test at `AGREEMENT_SIGNIFICANCE`): one decisive disagreement in 32
  samples is no evidence, two are; six in 200 are, seven in 300;
- every output: a collapsed output (its spread of values under 10% of Keras', or the same value for every
  sample while Keras' varies) and a mean |diff| above half the Keras output's mean magnitude are problems;
- other outputs: a mean |diff| above 5% of the Keras output's spread (std) is a problem;
- saturation: an integer output (or the integer tensor a float output is dequantized from) that sits at the end
  of its range where Keras lies beyond it, by more than `CLIP_STEPS` quantization steps and `CLIP_OF_RANGE` of
  the range (5 int8 steps: what int8 is off by anyway), on any sample; the
  same for integer inputs fed values beyond their range, when more than `MAX_CLIPPED_INPUT_SHARE` of their
  values are (fewer are noted in the record).
Each problem is named in the card (`parity.problems`, `passed: false`) and the report, loudly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..card import OutputParity, Parity
from ..errors import UnsupportedModel

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-5
MIN_AGREEMENT = 0.99
MAX_DISAGREEMENT = 1 - MIN_AGREEMENT
AGREEMENT_SIGNIFICANCE = 0.05  # fail when a file agreeing MIN_AGREEMENT would show so many disagreements < 5%
MAX_RELATIVE_MEAN_DIFF = 0.05  # of the Keras output's std (non-class outputs)
MAX_MEAN_DIFF_OF_SIGNAL = 0.5  # of the Keras output's mean |value| (every output)
MIN_SPREAD_RATIO = 0.1
NEAR_TIE = 0.01
CLIP_STEPS = 1.5  # beyond the representable range by more than this many steps: not rounding, clipping ...
CLIP_OF_RANGE = 0.02  # ... and by more than this share of the range (5 int8 steps): more than int8 is off anyway
MAX_CLIPPED_INPUT_SHARE = 0.001  # of an integer input's values: more clipped is a failure, fewer a note
DRIFT_OF_SPREAD = 0.01  # float32 beyond the tolerance but within 1% of the output's spread, same decisions: drift
ROUNDING_OF_SPREAD = 1e-3  # ... within 0.1% of it: the float rounding of a deep graph, which passes


@dataclass(frozen=True)
class QuantRange:
    """The real values an integer tensor can hold: [low, high], in steps of `step` (its scale)."""

    low: float
    high: float
    step: float

    @classmethod
    def of(cls, dtype: str, scale: float, zero_point: int) -> "QuantRange":
        """The range of an affine-quantized tensor of integer `dtype`."""
        info = np.iinfo(np.dtype(dtype))
        return cls(low=(info.min - zero_point) * scale, high=(info.max - zero_point) * scale, step=scale)

    def clipped(self, reference: np.ndarray, got: np.ndarray | None = None) -> np.ndarray:
        """Elements where `reference` lies beyond the range by more than `CLIP_STEPS` steps and `CLIP_OF_RANGE` of
        the range (and, when given, `got` sits at that end of the range): values the tensor could not hold, by more
        than the few steps an int8 file is off anyway."""
        margin = max(CLIP_STEPS * self.step, CLIP_OF_RANGE * (self.high - self.low))
        above, below = reference > self.high + margin, reference < self.low - margin
        if got is not None:
            above &= got >= self.high - self.step / 2
            below &= got <= self.low + self.step / 2
        return above | below


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), summed in log space (exact enough for any n a data set has)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for j in range(k, n + 1):
        term = math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p
                        + (n - j) * log_q)
        total += term
        if term < 1e-17 * total and j > n * p:
            break
    return min(total, 1.0)


def agreement_fails(decisive_disagreements: int, n: int) -> bool:
    """Whether `decisive_disagreements` in `n` samples show the file agrees with Keras less than MIN_AGREEMENT."""
    if n == 0 or decisive_disagreements <= MAX_DISAGREEMENT * n:
        return False
    return binomial_tail(decisive_disagreements, n, MAX_DISAGREEMENT) < AGREEMENT_SIGNIFICANCE


def _near_ties(ref: np.ndarray) -> np.ndarray:
    """Samples whose Keras top-2 margin is under NEAR_TIE of the largest output (coin tosses)."""
    top2 = np.sort(ref, axis=1)[:, -2:]
    scale = float(np.abs(ref).max()) or 1.0
    return (top2[:, 1] - top2[:, 0]) < NEAR_TIE * scale


def top1(ref: np.ndarray, out: np.ndarray) -> tuple[float, int, np.ndarray]:
    """(agreement, ties, disagreeing mask): a sample agrees only when the file's largest score is unique and at
    Keras' top class."""
    ref2, out2 = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    best = out2.max(axis=1, keepdims=True)
    tied = (out2 == best).sum(axis=1) > 1
    agree = (out2.argmax(axis=1) == ref2.argmax(axis=1)) & ~tied
    return float(agree.mean()), int(tied.sum()), ~agree


def _spread(a: np.ndarray, per_sample: bool) -> float:
    a = a.reshape(len(a), -1).astype(np.float64)
    return float(a.std(axis=1).mean()) if per_sample else float(a.std())


def criterion(exact: bool, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL) -> str:
    """The rule `compare` applies, in words (recorded in every card)."""
    if exact:
        return (f"|diff| <= {atol:g} + {rtol:g} * |keras| on every output value, or (float rounding through a deep "
                f"graph) max |diff| <= {ROUNDING_OF_SPREAD:.1%} of the output's spread with every decision (top-1, the "
                "0.5 threshold of sigmoid outputs) the same")
    return (f"class scores: top-1 agreement, a tie counted as a disagreement, failing when the disagreements that "
            f"are not near-ties (Keras' top two within {NEAR_TIE:.0%} of its largest output) exceed "
            f"{MAX_DISAGREEMENT:.0%} of the samples by more than chance allows (one-sided binomial test at "
            f"{AGREEMENT_SIGNIFICANCE:.0%}); other outputs: mean |diff| <= {MAX_RELATIVE_MEAN_DIFF:.0%} of the "
            f"output's std; no collapsed output (spread >= {MIN_SPREAD_RATIO:.0%} of Keras'); mean |diff| <= "
            f"{MAX_MEAN_DIFF_OF_SIGNAL:.0%} of the output's mean magnitude; no integer output or input clipped where "
            f"Keras lies beyond its range by more than {CLIP_STEPS:g} steps and {CLIP_OF_RANGE:.0%} of the range")


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], *, exact: bool, file: str,
            runtime: str, kernels: str, data: str, note: str = "", atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL, class_outputs: set[str] | frozenset = frozenset(),
            binary_outputs: set[str] | frozenset = frozenset(), ranges: dict[str, QuantRange] | None = None,
            inputs: dict[str, np.ndarray] | None = None, input_ranges: dict[str, QuantRange] | None = None,
            advice: str = "") -> tuple[Parity, list[str]]:
    """Compare a file's outputs with the Keras model's on the same inputs.

    Args:
        reference: Keras outputs by name.
        got: the file's outputs by name (dequantized to float).
        exact: True for float32 files (tolerance rule), False for the others (agreement rules).
        file: the file's name, for messages.
        runtime, kernels, data, note: recorded in the returned Parity.
        atol, rtol: tolerance of the float rule: |diff| <= atol + rtol * |keras|.
        class_outputs: names of the outputs that hold class scores (judged by top-1 agreement).
        binary_outputs: names of the outputs that hold sigmoid probabilities (their decision: the 0.5 threshold).
        ranges: {output name: the range of the integer tensor the output comes from} (saturation).
        inputs, input_ranges: the inputs fed and the ranges of the file's integer inputs (saturation).
        advice: what to try next, appended to the agreement problems (the caller knows what was tried).

    Returns:
        (Parity, problems as messages); `parity.passed` is False when there is any problem.

    Raises:
        UnsupportedModel: the Keras outputs themselves hold NaN/inf (no file can be checked against them).

    Example:
        parity, problems = compare(keras_out, file_out, exact=False, file="m.int8.tflite", runtime="litert",
                                   kernels="xnnpack", data="test.npz", class_outputs={"probs"})
    """
    outputs: dict[str, OutputParity] = {}
    problems: list[str] = []
    notes: list[str] = []
    n = 0
    for name, ref in reference.items():
        n = len(ref)
        if name not in got:
            problems.append(f"{file}: has no output named {name!r} (its outputs: {', '.join(sorted(got))}); the "
                            "converter lost the model's signature, a conversion bug worth reporting")
            outputs[name] = OutputParity(max_abs_diff=0.0, mean_abs_diff=0.0)
            continue
        out = got[name]
        if not np.isfinite(ref).all():
            bad = int((~np.isfinite(ref.reshape(n, -1))).any(axis=1).sum())
            raise UnsupportedModel(f"the Keras model itself outputs NaN or infinite values on {bad} of {n} samples "
                                   f"(output {name!r}), so no file can be checked against it",
                                   fix="check the model's weights and that the data is scaled as it was trained")
        if out.shape != ref.shape:
            problems.append(f"{file}: output {name!r} has shape {out.shape}, the Keras model's has {ref.shape}")
            outputs[name] = OutputParity(max_abs_diff=0.0, mean_abs_diff=0.0)
            continue
        r64, o64 = ref.astype(np.float64), out.astype(np.float64)
        finite = np.isfinite(o64)
        if not finite.all():
            bad = int((~finite.reshape(n, -1)).any(axis=1).sum())
            problems.append(f"{file}: output {name!r} is NaN or infinite on {bad} of {n} samples where the Keras "
                            "model's is finite" + ("; for integer modes, check the calibration data" if not exact
                                                   else ""))
            o64 = np.where(finite, o64, 0.0)
        diff = np.abs(o64 - r64)
        is_class = name in class_outputs and ref.ndim == 2 and ref.shape[1] >= 2
        ref_spread, out_spread = _spread(r64, is_class), _spread(o64, is_class)
        magnitude, std = float(np.abs(r64).mean()), _spread(r64, False)
        op = OutputParity(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                          spread_ratio=out_spread / ref_spread if ref_spread > 0 else None,
                          relative_mean_diff=float(diff.mean()) / magnitude if magnitude > 0 else None,
                          relative_max_diff=float(diff.max()) / std if std > 0 else None)
        disagree = None
        if is_class:
            op.top1_agreement, op.ties, disagree = top1(r64, o64)
            op.decisions_agree = op.top1_agreement
        elif name in binary_outputs:
            op.decisions_agree = float(np.mean((r64 > 0.5) == (o64 > 0.5)))
        rng = (ranges or {}).get(name)
        if rng is not None and not exact:
            clipped = rng.clipped(r64, o64).reshape(n, -1)
            op.range = [rng.low, rng.high]
            op.clipped_samples = int(clipped.any(axis=1).sum())
            if op.clipped_samples:
                problems.append(_clipping(file, name, op, rng, r64, clipped, n))
        outputs[name] = op
        if exact:
            tolerance = atol + rtol * np.abs(r64)
            over = diff > tolerance
            rounding = (op.relative_max_diff is not None and op.relative_max_diff <= ROUNDING_OF_SPREAD
                        and op.decisions_agree in (None, 1.0))
            if over.any() and rounding:  # e.g. logits spread over +-10, off by 2e-4 near 0 after 20 layers
                notes.append(f"{file}: output {name!r}: {int(over.sum())} of {diff.size} values beyond |diff| <= "
                             f"{atol:g} + {rtol:g} * |keras|, by at most {op.max_abs_diff:.3g}, "
                             f"{op.relative_max_diff:.3%} of the output's spread: float rounding, passed")
            elif over.any():
                problems.append(_float_deviation(file, name, op, diff, tolerance, over, r64, n, atol))
            continue
        problems += _problems(file, name, n, op, r64, o64, ref_spread, is_class, disagree, advice)
    for name, x in (inputs or {}).items():
        rng = (input_ranges or {}).get(name)
        if rng is None or x.dtype.kind != "f":
            continue
        clipped = rng.clipped(x.astype(np.float64)).reshape(len(x), -1)
        if clipped.any():
            k, share = int(clipped.any(axis=1).sum()), float(clipped.mean())
            text = (f"{file}: input {name!r} is SATURATED: {int(clipped.sum())} of {clipped.size} values "
                    f"({share:.2%}, on {k} of {len(x)} samples) lie outside the integer range the file was calibrated "
                    f"to ([{rng.low:.4g}, {rng.high:.4g}]; the data spans [{float(x.min()):.4g}, "
                    f"{float(x.max()):.4g}]), and the file clips them. Fix: calibrate on data that covers the inputs' "
                    "whole range (--calib), or keep float input and output (--float-io)")
            # A stray value or two beyond a range calibrated on other samples changes nothing the output rules do
            # not already judge; a clipped share of the signal is a failure of its own.
            (problems if share > MAX_CLIPPED_INPUT_SHARE else notes).append(text)
    note = "; ".join(x for x in [note] + [t.split(": ", 1)[1] for t in notes] if x)
    parity = Parity(reference="keras", runtime=runtime, kernels=kernels, samples=n, data=data,
                    criterion=criterion(exact, atol, rtol), passed=not problems, outputs=outputs, note=note,
                    atol=atol, rtol=rtol, problems=list(problems))
    return parity, problems


def _float_deviation(file, name, op: OutputParity, diff, tolerance, over, ref, n, atol) -> str:
    """A float32 output beyond the tolerance: drift (small against its spread, same decisions) or a bug."""
    i = int(np.argmax(diff - tolerance))
    what = (f"{file}: output {name!r}: {int(over.sum())} of {diff.size} values beyond the tolerance, the worst "
            f"|diff| {diff.flat[i]:.3g} where Keras gives {ref.flat[i]:.6g} (allowed {tolerance.flat[i]:.3g})")
    spread = op.relative_max_diff
    size = f"; that is {spread:.2%} of the output's spread (std)" if spread is not None else ""
    decided = op.decisions_agree
    unit = "sample" if op.top1_agreement is not None else "value"
    decisions = ("" if decided is None else
                 f"; decisions ({'top-1' if op.top1_agreement is not None else 'the 0.5 threshold'}) agree on "
                 + (f"every {unit}" if decided == 1.0 else f"{decided:.1%} of the {unit}s"))
    drift = spread is not None and spread <= DRIFT_OF_SPREAD and decided in (None, 1.0)
    if drift:
        suggested = _round_up(float(diff.max()))
        return (what + size + decisions + ": the file's float kernels round differently from TensorFlow's (deep "
                "graphs accumulate it), not a conversion bug; if differences of this size are acceptable for this "
                f"model, pass --atol {suggested:g} (atol={suggested:g})")
    return (what + size + decisions + ": more than float rounding explains; this is a conversion bug worth "
            "reporting (rerun with --debug and keep the file)")


def _round_up(x: float) -> float:
    """1.63e-3 -> 2e-3: a tolerance to suggest, just above what was measured."""
    if x <= 0:
        return DEFAULT_ATOL
    exp = math.floor(math.log10(x))
    lead = math.floor(x / 10 ** exp) + 1  # strictly above what was measured
    return float(f"{lead}e{exp}") if lead < 10 else float(f"1e{exp + 1}")


def _clipping(file, name, op: OutputParity, rng: QuantRange, ref, clipped, n) -> str:
    k = op.clipped_samples
    beyond = ref.reshape(n, -1)[clipped]
    worst = float(np.max(np.maximum(beyond - rng.high, rng.low - beyond)))
    return (f"{file}: output {name!r} is SATURATED: on {k} of {n} samples ({k / n:.1%}) Keras gives values beyond "
            f"the integer range the file was calibrated to ([{rng.low:.4g}, {rng.high:.4g}]; Keras reaches "
            f"[{float(ref.min()):.4g}, {float(ref.max()):.4g}]) and the file clips them, by up to {worst:.4g}. Fix: "
            "calibrate on data whose outputs cover their whole range (--calib), or use 16-bit activations "
            "(--int16x8), or keep the last layers in float (--max-accuracy-drop with --eval)")


def _problems(file, name, n, op: OutputParity, ref, out, ref_spread, is_class, disagree, advice) -> list[str]:
    found = []
    what = f"{file}: output {name!r}"
    if is_class:
        near = _near_ties(ref) & disagree
        decisive = int(disagree.sum() - near.sum())
        op.near_ties = int(near.sum())
        if agreement_fails(decisive, n):
            agree = n - int(disagree.sum())
            found.append(f"{what} agrees with Keras on top-1 for {agree} of {n} samples ({op.top1_agreement:.1%}); "
                         f"{decisive} of the disagreements are decisive (not near-ties), more than a file agreeing "
                         f"{MIN_AGREEMENT:.0%} would show (one-sided binomial test, p < {AGREEMENT_SIGNIFICANCE:g}); "
                         f"mean |diff| {op.mean_abs_diff:.3g}"
                         + (f"; in {op.ties} sample(s) the file's top score is tied between classes" if op.ties else "")
                         + (f"; {op.near_ties} more are near-ties (Keras' top two scores within {NEAR_TIE:.0%} of its "
                            "largest output)" if op.near_ties else "")
                         + (f". {advice}" if advice else ""))
    # Keras' outputs vary from sample to sample by more than float32 noise (a barely trained model can give the same
    # scores to every sample, give or take 1e-29: then a file that does the same has not collapsed)
    scale = float(np.abs(ref).max()) or 1.0
    varies = float(ref.reshape(n, -1).std(axis=0).max()) > 1e-6 * scale if n > 1 else False
    constant = n > 1 and varies and float(out.reshape(n, -1).std(axis=0).max()) == 0.0
    if constant:
        found.append(f"{what} is COLLAPSED: the same values for every sample, where Keras' vary")
    elif op.spread_ratio is not None and op.spread_ratio < MIN_SPREAD_RATIO:
        found.append(f"{what} is COLLAPSED: its values spread {op.spread_ratio:.1%} as much as Keras' (the "
                     "quantization scale cannot represent this output)")
    if op.relative_mean_diff is not None and op.relative_mean_diff > MAX_MEAN_DIFF_OF_SIGNAL:
        found.append(f"{what} differs from Keras by mean |diff| {op.mean_abs_diff:.3g}, "
                     f"{op.relative_mean_diff:.0%} of the output's mean magnitude")
    if not is_class and ref_spread > 0 and op.mean_abs_diff > MAX_RELATIVE_MEAN_DIFF * ref_spread:
        found.append(f"{what} differs from Keras by mean |diff| {op.mean_abs_diff:.3g}, "
                     f"{op.mean_abs_diff / ref_spread:.0%} of the output's spread (std {ref_spread:.3g})"
                     + (f". {advice}" if advice else ""))
    return found
