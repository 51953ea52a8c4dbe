"""Parity: does an exported file compute what the Keras model computes?

Float32 files must match within an absolute tolerance (default 1e-4) on every output; a larger
difference raises `ParityError` naming each output and its max |diff|. Quantized files cannot match
exactly, so they are judged by top-1 agreement on class-score outputs (a warning below 99%) and by
mean |diff| relative to the spread of the Keras output on other outputs (a warning above 5%).
TensorFlow-free: it compares arrays that a runtime `Session` produced.
"""

from __future__ import annotations

import numpy as np

from ..card import OutputParity, Parity
from ..errors import ParityError, UnsupportedModel

DEFAULT_ATOL = 1e-4
MIN_AGREEMENT = 0.99
MAX_RELATIVE_MEAN_DIFF = 0.05
NEAR_TIE = 0.01


def _near_ties(ref: np.ndarray, out: np.ndarray) -> int:
    """Disagreeing samples whose Keras top-2 margin is under NEAR_TIE of the largest output (coin tosses)."""
    disagree = out.argmax(axis=1) != ref.argmax(axis=1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    scale = float(np.abs(ref).max()) or 1.0
    return int(np.sum(disagree & ((top2[:, 1] - top2[:, 0]) < NEAR_TIE * scale)))


def is_class_scores(a: np.ndarray) -> bool:
    """True for (batch, classes) outputs with at least 2 classes."""
    return a.ndim == 2 and a.shape[1] >= 2


def compare(reference: dict[str, np.ndarray], got: dict[str, np.ndarray], *, exact: bool, file: str,
            runtime: str, kernels: str, data: str, note: str = "", atol: float = DEFAULT_ATOL
            ) -> tuple[Parity, list[str]]:
    """Compare a file's outputs with the Keras model's on the same inputs.

    Args:
        reference: Keras outputs by name.
        got: the file's outputs by name (dequantized to float).
        exact: True for float32 files (tolerance rule), False for quantized ones (agreement rule).
        file: the file's name, for messages.
        runtime, kernels, data, note: recorded in the returned Parity.
        atol: tolerance of the float rule.

    Returns:
        (Parity, warnings)

    Raises:
        ParityError: a float32 file differs by more than `atol` on some output; any file outputs NaN/inf.
        UnsupportedModel: the Keras outputs themselves hold NaN/inf.
    """
    outputs: dict[str, OutputParity] = {}
    warnings: list[str] = []
    failed: dict[str, float] = {}
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
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        op = OutputParity(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()))
        if is_class_scores(ref):
            op.top1_agreement = float(np.mean(out.argmax(axis=1) == ref.argmax(axis=1)))
        outputs[name] = op
        if exact:
            if not op.max_abs_diff <= atol:
                failed[name] = op.max_abs_diff
        elif op.top1_agreement is not None:
            if op.top1_agreement < MIN_AGREEMENT:
                agree = int(round(op.top1_agreement * n))
                ties = _near_ties(ref, out)
                warnings.append(f"{file}: output {name!r} agrees with Keras on top-1 for {agree} of {n} samples "
                                f"({op.top1_agreement:.1%}, below {MIN_AGREEMENT:.0%}); mean |diff| "
                                f"{op.mean_abs_diff:.3g}"
                                + (f"; {ties} of the {n - agree} disagreements are near-ties (Keras' top two "
                                   f"scores within {NEAR_TIE:.0%} of its largest output)" if ties else "")
                                + ("" if n >= 200 else "; check on more data with --eval (or --parity-samples)"))
        else:
            spread = float(ref.std()) or 1.0
            if op.mean_abs_diff > MAX_RELATIVE_MEAN_DIFF * spread:
                warnings.append(f"{file}: output {name!r} differs from Keras by mean |diff| {op.mean_abs_diff:.3g}, "
                                f"{op.mean_abs_diff / spread:.0%} of the output's spread (std {spread:.3g})")
    if exact:
        criterion = f"max |diff| <= {atol:g} on every output"
    else:
        criterion = (f"top-1 agreement >= {MIN_AGREEMENT:.0%} (class scores); mean |diff| <= "
                     f"{MAX_RELATIVE_MEAN_DIFF:.0%} of the output's std (other outputs)")
    parity = Parity(reference="keras", runtime=runtime, kernels=kernels, samples=n, data=data,
                    criterion=criterion, passed=not failed and not warnings, outputs=outputs, note=note)
    if failed:
        detail = "; ".join(f"output {k!r}: max |diff| {v:.3g}" for k, v in failed.items())
        raise ParityError(f"{file} does not match the Keras model: {detail} (tolerance {atol:g}, {n} samples)",
                          path=file, max_abs_diff=failed,
                          fix="this is a conversion bug worth reporting; rerun with --debug, or pass a larger "
                              "--atol if such differences are acceptable for your model")
    return parity, warnings
