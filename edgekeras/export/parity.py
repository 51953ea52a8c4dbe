"""Parity: does an exported file compute what the Keras model computes? TensorFlow-free.

Float32 files must match on every output element within `atol + rtol * |keras|` (as numpy.allclose), so
outputs in the thousands pass on float32 rounding while small outputs are held to `atol`; a larger
difference raises `ParityError` naming the output and the worst element.

Quantized files (and float16, dynamic) cannot match exactly; they are judged, per output, by:
- class scores (the outputs of a classification task): top-1 agreement with Keras, where a sample whose
  largest score is shared by several classes (a tie) counts as a disagreement — below 99% is a problem;
- every output: a collapsed output (its spread of values under 10% of Keras', or the same value for every
  sample while Keras' varies) and a mean |diff| above half the Keras output's mean magnitude are problems;
- other outputs: a mean |diff| above 5% of the Keras output's spread (std) is a problem.
Each problem is named in the card (`parity.problems`, `passed: false`) and the report, loudly.
"""

from __future__ import annotations

import numpy as np

from ..card import OutputParity, Parity
from ..errors import ParityError, UnsupportedModel

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-5
MIN_AGREEMENT = 0.99
MAX_RELATIVE_MEAN_DIFF = 0.05  # of the Keras output's std (non-class outputs)
MAX_MEAN_DIFF_OF_SIGNAL = 0.5  # of the Keras output's mean |value| (every output)
MIN_SPREAD_RATIO = 0.1
NEAR_TIE = 0.01


def _near_ties(ref: np.ndarray, disagree: np.ndarray) -> int:
    """Disagreeing samples whose Keras top-2 margin is under NEAR_TIE of the largest output (coin tosses)."""
    top2 = np.sort(ref, axis=1)[:, -2:]
    scale = float(np.abs(ref).max()) or 1.0
    return int(np.sum(disagree & ((top2[:, 1] - top2[:, 0]) < NEAR_TIE * scale)))


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


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], *, exact: bool, file: str,
            runtime: str, kernels: str, data: str, note: str = "", atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL, class_outputs: set[str] | frozenset = frozenset()) -> tuple[Parity, list[str]]:
    """Compare a file's outputs with the Keras model's on the same inputs.

    Args:
        reference: Keras outputs by name.
        got: the file's outputs by name (dequantized to float).
        exact: True for float32 files (tolerance rule), False for the others (agreement rules).
        file: the file's name, for messages.
        runtime, kernels, data, note: recorded in the returned Parity.
        atol, rtol: tolerance of the float rule: |diff| <= atol + rtol * |keras|.
        class_outputs: names of the outputs that hold class scores (judged by top-1 agreement).

    Returns:
        (Parity, problems as warning messages)

    Raises:
        ParityError: a float32 file differs beyond the tolerance on some output; any file outputs NaN/inf.
        UnsupportedModel: the Keras outputs themselves hold NaN/inf.

    Example:
        parity, problems = compare(keras_out, file_out, exact=False, file="m.int8.tflite", runtime="litert",
                                   kernels="xnnpack", data="test.npz", class_outputs={"probs"})
    """
    outputs: dict[str, OutputParity] = {}
    problems: list[str] = []
    failed: dict[str, float] = {}
    details: list[str] = []
    n = 0
    for name, ref in reference.items():
        out = got[name]
        if out.shape != ref.shape:
            raise ParityError(f"{file}: output {name!r} has shape {out.shape}, the Keras model's has {ref.shape}",
                              path=file, max_abs_diff={name: float("inf")})
        n = len(ref)
        if not np.isfinite(ref).all():
            bad = int((~np.isfinite(ref.reshape(n, -1))).any(axis=1).sum())
            raise UnsupportedModel(f"the Keras model itself outputs NaN or infinite values on {bad} of {n} samples "
                                   f"(output {name!r}), so no file can be checked against it",
                                   fix="check the model's weights and that the data is scaled as it was trained")
        if not np.isfinite(out).all():
            bad = int((~np.isfinite(out.reshape(n, -1))).any(axis=1).sum())
            raise ParityError(f"{file} outputs NaN or infinite values on {bad} of {n} samples (output {name!r}) "
                              "where the Keras model does not", path=file, max_abs_diff={name: float("inf")},
                              fix="rerun with --debug; for integer modes, check the calibration data")
        r64, o64 = ref.astype(np.float64), out.astype(np.float64)
        diff = np.abs(o64 - r64)
        is_class = name in class_outputs and ref.ndim == 2 and ref.shape[1] >= 2
        ref_spread, out_spread = _spread(r64, is_class), _spread(o64, is_class)
        magnitude = float(np.abs(r64).mean())
        op = OutputParity(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                          spread_ratio=out_spread / ref_spread if ref_spread > 0 else None,
                          relative_mean_diff=float(diff.mean()) / magnitude if magnitude > 0 else None)
        if is_class:
            op.top1_agreement, op.ties, disagree = top1(r64, o64)
        outputs[name] = op
        if exact:
            tolerance = atol + rtol * np.abs(r64)
            over = diff > tolerance
            if over.any():
                i = int(np.argmax(diff - tolerance))
                failed[name] = op.max_abs_diff
                details.append(f"output {name!r}: {int(over.sum())} of {diff.size} values beyond the tolerance, the "
                               f"worst |diff| {diff.flat[i]:.3g} where Keras gives {r64.flat[i]:.6g} (allowed "
                               f"{tolerance.flat[i]:.3g})")
            continue
        problems += _problems(file, name, n, op, r64, o64, ref_spread, is_class, disagree if is_class else None)
    if exact:
        criterion = f"|diff| <= {atol:g} + {rtol:g} * |keras| on every output value"
    else:
        criterion = (f"top-1 agreement >= {MIN_AGREEMENT:.0%} with ties counted as disagreement (class scores); "
                     f"mean |diff| <= {MAX_RELATIVE_MEAN_DIFF:.0%} of the output's std (other outputs); no collapsed "
                     f"output (spread >= {MIN_SPREAD_RATIO:.0%} of Keras'); mean |diff| <= "
                     f"{MAX_MEAN_DIFF_OF_SIGNAL:.0%} of the output's mean magnitude")
    parity = Parity(reference="keras", runtime=runtime, kernels=kernels, samples=n, data=data, criterion=criterion,
                    passed=not failed and not problems, outputs=outputs, note=note, atol=atol, rtol=rtol,
                    problems=list(problems))
    if failed:
        raise ParityError(f"{file} does not match the Keras model on {n} samples: {'; '.join(details)}",
                          path=file, max_abs_diff=failed,
                          fix="this is a conversion bug worth reporting; rerun with --debug, or pass a larger --atol "
                              "/ --rtol if such differences are acceptable for your model")
    return parity, problems


def _problems(file, name, n, op: OutputParity, ref, out, ref_spread, is_class, disagree) -> list[str]:
    found = []
    what = f"{file}: output {name!r}"
    if is_class and op.top1_agreement < MIN_AGREEMENT:
        agree = int(round(op.top1_agreement * n))
        ties = _near_ties(ref, disagree)
        found.append(f"{what} agrees with Keras on top-1 for {agree} of {n} samples ({op.top1_agreement:.1%}, below "
                     f"{MIN_AGREEMENT:.0%}); mean |diff| {op.mean_abs_diff:.3g}"
                     + (f"; in {op.ties} sample(s) the file's top score is tied between classes" if op.ties else "")
                     + (f"; {ties} of the {n - agree} disagreements are near-ties (Keras' top two scores within "
                        f"{NEAR_TIE:.0%} of its largest output)" if ties else "")
                     + ("" if n >= 200 else "; check on more data with --eval (or --parity-samples)"))
    varies = float(ref.reshape(n, -1).std(axis=0).max()) > 0 if n > 1 else False
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
                     f"{op.mean_abs_diff / ref_spread:.0%} of the output's spread (std {ref_spread:.3g})")
    return found
