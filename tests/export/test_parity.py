"""Parity rules: float files within a tolerance (else ParityError), quantized files by agreement."""

from __future__ import annotations

import numpy as np
import pytest

from edgekeras import ParityError
from edgekeras.export.parity import compare

RNG = np.random.default_rng(0)


def scores(n=100, k=5):
    x = RNG.random((n, k)).astype(np.float32)
    return x / x.sum(axis=1, keepdims=True)


def run(ref, got, exact, **kw):
    return compare(ref, got, exact=exact, file="m.tflite", runtime="litert", kernels="xnnpack", data="d", **kw)


def test_float_within_tolerance_passes():
    ref = {"probs": scores()}
    parity, warnings = run(ref, {"probs": ref["probs"] + 5e-5}, exact=True)
    assert parity.passed and not warnings
    assert parity.outputs["probs"].max_abs_diff == pytest.approx(5e-5, rel=1e-3)


def test_float_drift_raises_naming_each_output_and_difference():
    ref = {"probs": scores(), "box": RNG.random((100, 4)).astype(np.float32)}
    got = {"probs": ref["probs"] + 3e-3, "box": ref["box"]}
    with pytest.raises(ParityError, match=r"output 'probs': 500 of 500 values beyond the tolerance, the worst "
                                          r"\|diff\| 0\.003") as e:
        run(ref, got, exact=True)
    assert set(e.value.max_abs_diff) == {"probs"}
    parity, _ = run(ref, got, exact=True, atol=1e-2)
    assert parity.passed and parity.atol == 1e-2 and parity.rtol == 1e-5


def test_float_tolerance_scales_with_the_output():
    """A price near 1.7e4 off by 0.0024 is float32 rounding (1.5e-7 relative), not a conversion bug."""
    ref = {"price": RNG.uniform(1.6e4, 1.8e4, (50, 1)).astype(np.float32)}
    got = {"price": ref["price"] + np.float32(0.0024)}
    parity, _ = run(ref, got, exact=True)
    assert parity.passed and 0.0019 <= parity.outputs["price"].max_abs_diff <= 0.004  # float32 steps of 0.002 here
    assert "1e-05 * |keras|" in parity.criterion
    small = {"p": np.full((5, 1), 0.01, np.float32)}
    with pytest.raises(ParityError, match="allowed 0.0001"):  # small outputs are still held to atol
        run(small, {"p": small["p"] + np.float32(0.0024)}, exact=True)


def test_quantized_agreement_warns_below_99_percent():
    ref = scores(200)
    got = ref.copy()
    flip = np.arange(3)  # 3 of 200 samples get another top-1: 98.5%
    got[flip, (ref[flip].argmax(axis=1) + 1) % 5] = 2.0
    parity, warnings = run({"probs": ref}, {"probs": got}, exact=False, class_outputs={"probs"})
    assert parity.outputs["probs"].top1_agreement == pytest.approx(0.985)
    assert not parity.passed and "197 of 200 samples (98.5%, below 99%)" in warnings[0]
    assert parity.problems == warnings


def test_ties_are_not_agreement():
    ref = scores(100)
    got = np.zeros_like(ref)  # every class equal: argmax would say class 0
    got[:, 0] = got[:, 1] = 0.5
    agreeing = ref.argmax(axis=1) == 0
    parity, warnings = run({"probs": ref}, {"probs": got}, exact=False, class_outputs={"probs"})
    assert agreeing.sum() > 0  # plain argmax would have counted these as agreement
    assert parity.outputs["probs"].top1_agreement == 0.0 and parity.outputs["probs"].ties == 100
    assert not parity.passed and "tied between classes" in warnings[0]


def test_collapsed_output_fails_even_when_argmax_would_match():
    """MobileNetV3Small(weights=None) in int8: every class dequantizes to 0 where Keras gives ~0.001."""
    ref = np.full((40, 1000), 0.001, np.float32) + RNG.normal(0, 1e-6, (40, 1000)).astype(np.float32)
    ref[:, 0] += 1e-5
    got = np.zeros_like(ref)
    parity, warnings = run({"probs": ref}, {"probs": got}, exact=False, class_outputs={"probs"})
    assert not parity.passed
    text = " ".join(warnings)
    assert "COLLAPSED" in text and "100% of the output's mean magnitude" in text
    assert parity.outputs["probs"].top1_agreement == 0.0 and parity.outputs["probs"].spread_ratio == 0.0


def test_wide_regression_outputs_are_not_judged_by_argmax():
    ref = {"xy": RNG.normal(size=(100, 2)).astype(np.float32)}
    parity, warnings = run(ref, {"xy": ref["xy"] + 0.01}, exact=False)
    assert parity.passed and parity.outputs["xy"].top1_agreement is None


def test_quantized_regression_output_judged_by_mean_difference():
    ref = {"value": RNG.normal(3.0, 1.0, size=(100, 1)).astype(np.float32)}
    parity, warnings = run(ref, {"value": ref["value"] + 0.01}, exact=False)
    assert parity.passed and parity.outputs["value"].top1_agreement is None
    parity, warnings = run(ref, {"value": ref["value"] + 0.5}, exact=False)
    assert not parity.passed and len(warnings) == 1 and "of the output's spread" in warnings[0]


def test_shape_mismatch_is_a_parity_error():
    with pytest.raises(ParityError, match="has shape"):
        run({"p": scores()}, {"p": scores()[:, :3]}, exact=False)


def test_disagreements_on_near_ties_are_called_so():
    ref = np.full((100, 4), 0.25, np.float32)
    ref[:, 0] += 0.001  # an untrained model: every output nearly uniform
    ref += RNG.normal(0, 1e-5, ref.shape).astype(np.float32)
    got = ref.copy()
    got[:10, 1] += 0.002  # ten samples flip between two almost equal classes
    _, warnings = run({"probs": ref}, {"probs": got}, exact=False, class_outputs={"probs"})
    assert "10 of the 10 disagreements are near-ties" in warnings[0]


def test_nan_outputs():
    from edgekeras import UnsupportedModel

    ref = scores()
    bad = ref.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ParityError, match="NaN or infinite values on 1 of 100 samples"):
        run({"probs": ref}, {"probs": bad}, exact=False)
    with pytest.raises(UnsupportedModel, match="the Keras model itself outputs NaN"):
        run({"probs": bad}, {"probs": ref}, exact=True)
