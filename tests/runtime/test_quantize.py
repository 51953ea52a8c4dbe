"""The runtime quantizes inputs exactly as LiteRT's default kernels do (the card's `rounding`), and the one image
reader resizes as the card says."""

from __future__ import annotations

import numpy as np
import pytest

from edgekeras.card import ROUNDING, Quantization
from edgekeras.preprocess import quantize, resize_bilinear, to_grayscale


@pytest.fixture(scope="module")
def float_io_int8_file(tmp_path_factory, keras):
    """An int8 file with float input: its first op is LiteRT's own QUANTIZE kernel."""
    from edgekeras._keras import tf

    inp = keras.Input((4096,), name="x")
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.uniform(-3, 3, (1, 4096)).astype(np.float32)] for _ in range(20))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    path = tmp_path_factory.mktemp("q") / "m.tflite"
    path.write_bytes(conv.convert())
    return path


@pytest.mark.parametrize("resolver", ["AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"])
def test_quantize_matches_litert_on_rounding_boundaries(float_io_int8_file, resolver):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(float_io_int8_file), experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=getattr(OpResolverType, resolver))
    it.allocate_tensors()
    op = next(o for o in it._get_ops_details() if o["op_name"] == "QUANTIZE")
    out = op["outputs"][0]
    scale, zp = next(t for t in it.get_tensor_details() if t["index"] == out)["quantization"]
    rng = np.random.default_rng(1)
    s = np.float32(scale)
    x = (rng.integers(-60, 60, 4096) + 0.5).astype(np.float32) * s  # values on k + 0.5 steps ...
    x = np.nextafter(x, x + rng.choice([-1, 0, 1], 4096).astype(np.float32)).astype(np.float32)  # ... and 1 ulp off
    it.set_tensor(it.get_input_details()[0]["index"], x[None])
    it.invoke()
    litert = it.get_tensor(out)[0]
    ours = quantize(x, np.int8, Quantization(float(scale), int(zp)))
    assert np.array_equal(ours, litert)
    # the rules the card warns against would differ here
    away = np.trunc(x / s) + np.sign(x) * (np.abs(x / s - np.trunc(x / s)) >= 0.5)
    assert not np.array_equal(np.clip(away + zp, -128, 127).astype(np.int8), litert)
    assert ROUNDING["mode"] == "half_to_even"


def test_resize_matches_tensorflow_bilinear_without_antialiasing():
    from edgekeras._keras import tf

    rng = np.random.default_rng(0)
    for (h, w, oh, ow) in [(37, 53, 8, 8), (8, 8, 37, 53), (5, 9, 5, 12), (64, 48, 32, 32)]:
        a = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
        ours = resize_bilinear(a, oh, ow)
        theirs = tf.image.resize(a.astype(np.float32), (oh, ow), "bilinear", antialias=False).numpy()
        assert np.abs(ours - theirs).max() < 1e-3, (h, w, oh, ow)
    same = rng.integers(0, 256, (6, 7, 3)).astype(np.float64)
    assert np.array_equal(resize_bilinear(same, 6, 7), same)


def test_grayscale_is_the_float64_bt601_luma():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    assert to_grayscale(rgb)[0, :, 0].tolist() == [0.299 * 255, 0.587 * 255, 0.114 * 255,
                                                   0.299 * 10 + 0.587 * 20 + 0.114 * 30]
