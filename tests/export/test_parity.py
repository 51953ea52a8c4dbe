"""Parity rules: float files within a tolerance, quantized files by agreement, saturation, collapse; a file that
breaks a rule is reported (`passed: false`, one message per rule), never raised."""

from __future__ import annotations

import numpy as np
import pytest

from edgekeras.export.parity import QuantRange, agreement_fails, binomial_tail, compare

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


def test_float_deviation_names_each_output_and_difference():
    ref = {"probs": scores(), "box": RNG.random((100, 4)).astype(np.float32)}
    got = {"probs": ref["probs"] + 3e-3, "box": ref["box"]}
    parity, problems = run(ref, got, exact=True, class_outputs={"probs"})
    assert not parity.passed and len(problems) == 1 and parity.problems == problems
    assert "output 'probs': 500 of 500 values beyond the tolerance, the worst |diff| 0.003" in problems[0]
    assert parity.outputs["box"].max_abs_diff == 0.0
    parity, _ = run(ref, got, exact=True, atol=1e-2)
    assert parity.passed and parity.atol == 1e-2 and parity.rtol == 1e-5


def test_float_drift_with_the_same_decisions_is_not_called_a_conversion_bug():
    """Deep sigmoid nets: off by ~1e-3 on outputs that spread over [0, 1], every decision the same."""
    ref = {"note": RNG.uniform(0, 1, (40, 20, 8)).astype(np.float32)}
    drift = RNG.uniform(-1.6e-3, 1.6e-3, ref["note"].shape).astype(np.float32)
    got = {"note": np.clip(ref["note"] + drift, 0, 1)}
    got["note"][np.abs(ref["note"] - 0.5) < 2e-3] = ref["note"][np.abs(ref["note"] - 0.5) < 2e-3]  # no flip at 0.5
    parity, problems = run(ref, got, exact=True, binary_outputs={"note"})
    assert not parity.passed
    o = parity.outputs["note"]
    assert o.decisions_agree == 1.0 and o.relative_max_diff < 0.01
    assert "decisions (the 0.5 threshold) agree on every value" in problems[0]
    assert "not a conversion bug" in problems[0] and "--atol 0.002" in problems[0]
    assert "conversion bug worth reporting" not in problems[0]
    parity, _ = run(ref, got, exact=True, binary_outputs={"note"}, atol=0.002)
    assert parity.passed


def test_float_deviation_that_changes_decisions_is_a_conversion_bug():
    ref = scores(50)
    got = ref.copy()
    got[0] = got[0][::-1]  # one sample's scores reordered: its top class changes
    parity, problems = run({"probs": ref}, {"probs": got}, exact=True, class_outputs={"probs"})
    assert parity.outputs["probs"].decisions_agree == pytest.approx(0.98)
    assert "decisions (top-1) agree on 98.0% of the samples" in problems[0]
    assert "conversion bug worth reporting" in problems[0]


def test_float_tolerance_scales_with_the_output():
    """A price near 1.7e4 off by 0.0024 is float32 rounding (1.5e-7 relative), not a conversion bug."""
    ref = {"price": RNG.uniform(1.6e4, 1.8e4, (50, 1)).astype(np.float32)}
    got = {"price": ref["price"] + np.float32(0.0024)}
    parity, _ = run(ref, got, exact=True)
    assert parity.passed and 0.0019 <= parity.outputs["price"].max_abs_diff <= 0.004  # float32 steps of 0.002 here
    assert "1e-05 * |keras|" in parity.criterion
    small = {"p": np.full((5, 1), 0.01, np.float32)}
    parity, problems = run(small, {"p": small["p"] + np.float32(0.0024)}, exact=True)
    assert not parity.passed and "allowed 0.0001" in problems[0]  # small outputs are still held to atol


def flipped(n: int, decisive: int, near: int = 0):
    """Clear class scores of n samples, the first `near` of them nearly tied between classes 0 and 1, and a copy
    whose top class differs on those `near` samples and on the next `decisive` ones."""
    ref = np.full((n, 5), 0.1, np.float32)
    ref[np.arange(n), RNG.integers(0, 5, n)] = 0.6
    ref[:near] = [0.301, 0.3, 0.133, 0.133, 0.133]
    got = ref.copy()
    flip = np.arange(near + decisive)
    got[flip, (ref[flip].argmax(axis=1) + 1) % 5] = 0.9
    return ref, got


@pytest.mark.parametrize("n, decisive, near, fails", [
    (32, 0, 1, False),   # one near-tie in 32: a coin toss, no evidence
    (32, 1, 0, False),   # one clear disagreement in 32: 96.9%, but a 99% file shows it 27% of the time
    (32, 2, 0, True),    # two in 32: a 99% file shows that 4% of the time
    (200, 5, 0, False),  # 97.5% on 200: a 99% file shows that 5% of the time
    (200, 6, 0, True),   # 97% on 200
    (200, 1, 10, False),  # many near-ties (an almost undecided model) are not held against the file
    (1000, 17, 0, True),  # 98.3% on 1000: a large sample holds the file to about 99%
])
def test_quantized_agreement_is_judged_by_evidence_not_by_one_sample(n, decisive, near, fails):
    ref, got = flipped(n, decisive, near)
    parity, problems = run({"probs": ref}, {"probs": got}, exact=False, class_outputs={"probs"},
                           advice="Next: check on labelled data with --eval")
    o = parity.outputs["probs"]
    assert o.top1_agreement == pytest.approx(1 - (decisive + near) / n)
    assert o.near_ties == near
    assert parity.passed is not fails
    if fails:
        assert f"{decisive} of the disagreements are decisive" in problems[0]
        assert problems[0].endswith("Next: check on labelled data with --eval")


def test_binomial_tail_matches_the_exact_sum():
    from math import comb

    for n, k, p in ((32, 2, 0.01), (200, 5, 0.01), (50, 0, 0.3), (10, 11, 0.5), (1000, 14, 0.01)):
        exact = sum(comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1)) if k <= n else 0.0
        assert binomial_tail(k, n, p) == pytest.approx(exact, rel=1e-9, abs=1e-300)
    assert not agreement_fails(0, 0) and agreement_fails(2, 32) and not agreement_fails(1, 32)


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


def test_shape_mismatch_is_a_problem():
    parity, problems = run({"p": scores()}, {"p": scores()[:, :3]}, exact=False)
    assert not parity.passed and "has shape (100, 3)" in problems[0]


def test_a_missing_output_is_a_problem_not_a_crash():
    parity, problems = run({"predictions": scores()}, {"Identity": scores()}, exact=True)
    assert not parity.passed and "has no output named 'predictions' (its outputs: Identity)" in problems[0]


def test_near_ties_are_named_beside_decisive_disagreements():
    ref, got = flipped(100, 5, 10)
    _, problems = run({"probs": ref}, {"probs": got}, exact=False, class_outputs={"probs"})
    assert "5 of the disagreements are decisive" in problems[0] and "10 more are near-ties" in problems[0]


def test_nan_outputs():
    from edgekeras import UnsupportedModel

    ref = scores()
    bad = ref.copy()
    bad[7, 2] = np.nan
    parity, problems = run({"probs": ref}, {"probs": bad}, exact=False)
    assert not parity.passed and "NaN or infinite on 1 of 100 samples" in problems[0]
    with pytest.raises(UnsupportedModel, match="the Keras model itself outputs NaN"):
        run({"probs": bad}, {"probs": ref}, exact=True)


def test_a_clipped_int8_regression_is_a_parity_failure():
    """Calibrated on outputs below ~4.7, evaluated where Keras reaches 5.9: the file clips at its range's end."""
    rng = QuantRange.of("int8", 0.0186, -127)  # [-0.0186, 4.72]
    ref = RNG.uniform(0, 4.5, (300, 1)).astype(np.float32)
    ref[:4, 0] = [5.0, 5.3, 5.6, 5.9]
    got = np.clip(np.round(ref / rng.step) * rng.step, rng.low, rng.high).astype(np.float32)
    parity, problems = run({"price": ref}, {"price": got}, exact=False, ranges={"price": rng})
    o = parity.outputs["price"]
    assert o.mean_abs_diff < 0.05 * ref.std()  # the mean rule alone passes it
    assert not parity.passed and o.clipped_samples == 4 and o.range == [pytest.approx(-0.0186), pytest.approx(4.7244)]
    assert len(problems) == 1 and "SATURATED: on 4 of 300 samples (1.3%)" in problems[0]
    assert "[-0.0186, 4.724]" in problems[0] and "by up to 1.176" in problems[0] and "--calib" in problems[0]
    inside = np.clip(ref, 0, 4.7)
    parity, _ = run({"price": inside}, {"price": np.clip(inside, rng.low, rng.high)}, exact=False,
                    ranges={"price": rng})
    assert parity.passed and parity.outputs["price"].clipped_samples == 0


def test_softmax_ending_at_its_range_is_not_saturation():
    """An int8 softmax holds [0, 0.996]: Keras' 1.0 is one step beyond, rounding rather than clipping."""
    rng = QuantRange.of("int8", 1 / 256, -128)
    ref = scores(50)
    ref[0] = [1.0, 0, 0, 0, 0]
    got = np.clip(np.round(ref / rng.step) * rng.step - 0.0, rng.low, rng.high)
    parity, _ = run({"probs": ref}, {"probs": got}, exact=False, class_outputs={"probs"}, ranges={"probs": rng})
    assert parity.passed and parity.outputs["probs"].clipped_samples == 0


def test_inputs_beyond_the_calibrated_range_are_named():
    rng = QuantRange.of("int8", 1 / 255, -128)  # [0, 1]
    x = RNG.uniform(0, 1, (20, 4)).astype(np.float32)
    x[3, 1] = 1.5
    ref = {"p": scores(20)}
    parity, problems = run(ref, dict(ref), exact=False, inputs={"x": x}, input_ranges={"x": rng})
    assert not parity.passed and "input 'x' is SATURATED" in problems[0]
    assert "1 of 80 values (1.25%, on 1 of 20 samples)" in problems[0]


def test_a_stray_input_value_beyond_the_range_is_noted_not_failed():
    """Gaussian data calibrated on other samples: a value or two beyond the range changes nothing material."""
    rng = QuantRange.of("int8", 8 / 255, 0)  # about [-4, 4]
    x = np.clip(RNG.normal(size=(60, 172, 16)), -3.9, 3.9).astype(np.float32)
    x[5, 3, 2] = 4.7
    ref = {"p": scores(60)}
    parity, problems = run(ref, dict(ref), exact=False, inputs={"audio": x}, input_ranges={"audio": rng})
    assert parity.passed and not problems
    assert "input 'audio' is SATURATED: 1 of 165120 values" in parity.note


def test_float_rounding_through_a_deep_graph_passes_with_a_note():
    """Logits spread over +-10, off by 2e-4 near zero (RegNetX002 at 32 px): 0.002% of the spread, same top-1."""
    ref = RNG.normal(0, 10, (50, 10)).astype(np.float32)
    got = ref + RNG.uniform(-2.2e-4, 2.2e-4, ref.shape).astype(np.float32)
    parity, problems = run({"logits": ref}, {"logits": got}, exact=True, class_outputs={"logits"})
    assert parity.passed and not problems
    assert "float rounding, passed" in parity.note and "of the output's spread" in parity.note
    assert "0.1% of the output's spread" in parity.criterion


def test_a_file_as_constant_as_an_untrained_keras_model_has_not_collapsed():
    """Keras' scores vary from sample to sample by 1e-29 (a barely trained model): the file is not collapsed."""
    ref = np.full((20, 10), 0.1, np.float32)
    ref[0, 0] += np.float32(1e-29)
    parity, problems = run({"probs": ref}, {"probs": np.full_like(ref, 0.1)}, exact=False)
    assert not any("COLLAPSED" in p for p in problems)
