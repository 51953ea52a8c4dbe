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
    with pytest.raises(ParityError, match=r"output 'probs': max \|diff\| 0\.003") as e:
        run(ref, got, exact=True)
    assert set(e.value.max_abs_diff) == {"probs"}
    parity, _ = run(ref, got, exact=True, atol=1e-2)
    assert parity.passed


def test_quantized_agreement_warns_below_99_percent():
    ref = scores(200)
    got = ref.copy()
    flip = np.arange(3)  # 3 of 200 samples get another top-1: 98.5%
    got[flip] = np.roll(got[flip], 1, axis=1)
    got[flip, (ref[flip].argmax(axis=1) + 1) % 5] = 2.0
    parity, warnings = run({"probs": ref}, {"probs": got}, exact=False)
    assert parity.outputs["probs"].top1_agreement == pytest.approx(0.985)
    assert not parity.passed and "197 of 200 samples (98.5%, below 99%)" in warnings[0]


def test_quantized_regression_output_judged_by_mean_difference():
    ref = {"value": RNG.normal(size=(100, 1)).astype(np.float32)}
    parity, warnings = run(ref, {"value": ref["value"] + 0.01}, exact=False)
    assert parity.passed and parity.outputs["value"].top1_agreement is None
    parity, warnings = run(ref, {"value": ref["value"] + 0.5}, exact=False)
    assert not parity.passed and "of the output's spread" in warnings[0]


def test_shape_mismatch_is_a_parity_error():
    with pytest.raises(ParityError, match="has shape"):
        run({"p": scores()}, {"p": scores()[:, :3]}, exact=False)


def test_disagreements_on_near_ties_are_called_so():
    ref = np.full((100, 4), 0.25, np.float32)
    ref[:, 0] += 0.001  # an untrained model: every output nearly uniform
    got = ref.copy()
    got[:10, 1] += 0.002  # ten samples flip between two almost equal classes
    _, warnings = run({"probs": ref}, {"probs": got}, exact=False)
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
