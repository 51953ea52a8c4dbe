"""The runtime runs exported files without TensorFlow, quantizes by the file, and survives XNNPACK refusals."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import edgekeras
from edgekeras.card import Quantization
from edgekeras.runtime import dequantize, open_session, quantize


@pytest.fixture(scope="module")
def files(digits_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("rt")
    edgekeras.compress(digits_model["model"], ["int8"], calib=digits_model["calib"], onnx=True, output_dir=out)
    return out


def test_runtime_never_imports_tensorflow(files, digits_model):
    code = (
        "import sys, numpy as np\n"
        "from edgekeras.runtime import open_session\n"
        "from edgekeras import ModelCard\n"
        f"x = np.load(r'{digits_model['eval']}')['x'][:4]\n"
        f"for name in ('digits.int8.tflite', 'digits.float32.tflite', 'digits.onnx', 'digits.int8.onnx'):\n"
        f"    card = ModelCard.read(r'{files}/' + name + '.edgekeras.json')\n"
        f"    out = open_session(r'{files}/' + name).run({{'image': x}})['probs']\n"
        "    assert out.shape == (4, 10)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', 'tf2onnx')]\n"
        "print('TF_MODULES', bad)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "TF_MODULES []" in p.stdout


def test_quantize_round_trip_and_clipping():
    q = Quantization(scale=0.5, zero_point=-10)
    x = np.array([0.0, 1.0, -200.0, 200.0], np.float32)
    xq = quantize(x, np.int8, q)
    assert xq.tolist() == [-10, -8, -128, 127]
    assert dequantize(xq, q).tolist() == [0.0, 1.0, -59.0, 68.5]


def test_session_reports_int8_io_and_runs_by_name(files, digits_model):
    s = open_session(files / "digits.int8.tflite")
    assert [t.name for t in s.inputs] == ["image"] and s.inputs[0].dtype == "int8"
    assert s.inputs[0].shape == [None, 8, 8, 1]
    assert s.kernels == "xnnpack" and s.note == ""
    x = np.load(digits_model["eval"])["x"][:6]
    by_name = s.run({"image": x})
    assert list(by_name) == ["probs"] and by_name["probs"].shape == (6, 10)
    np.testing.assert_array_equal(s.run(x)["probs"], by_name["probs"])  # one input: a bare array works too
    assert np.allclose(by_name["probs"].sum(axis=1), 1.0, atol=0.02)


def test_wrong_input_shapes_are_bad_input_naming_the_expected_shape(files):
    s = open_session(files / "digits.int8.tflite")
    with pytest.raises(edgekeras.BadInput, match=r"got shape \(8, 8, 1\), expected \(N, 8, 8, 1\)") as e:
        s.run(np.zeros((8, 8, 1), np.float32))
    assert "x[None]" in str(e.value)
    with pytest.raises(edgekeras.BadInput, match=r"expected \(N, 8, 8, 1\)"):
        open_session(files / "digits.onnx").run(np.zeros((2, 8, 8), np.float32))


def test_xnnpack_refusal_falls_back_to_builtin_kernels(files, monkeypatch):
    """LiteRT's XNNPACK refuses some int8 graphs at allocate time; the session must rerun on builtin kernels."""
    import ai_edge_litert.interpreter as litert

    real = litert.Interpreter

    class Refusing(real):
        def __init__(self, *a, **kw):
            self._refuse = "experimental_op_resolver_type" not in kw
            super().__init__(*a, **kw)

        def allocate_tensors(self):
            if self._refuse:
                raise RuntimeError("Node number 3 (TfLiteXNNPackDelegate) failed to prepare.")
            return super().allocate_tensors()

    x = np.random.default_rng(0).uniform(0, 255, (16, 8, 8, 1)).astype(np.float32)
    normal = open_session(files / "digits.int8.tflite").run({"image": x})["probs"]
    monkeypatch.setattr(litert, "Interpreter", Refusing)
    s = open_session(files / "digits.int8.tflite")
    assert s.kernels == "builtin" and "XNNPACK refused" in s.note and "failed to prepare" in s.note
    fallback = s.run({"image": x})["probs"]
    # the builtin int8 kernels compute what XNNPACK computes, up to a few rounding steps of the output
    step = s.outputs[0].quantization.scale
    assert np.abs(fallback - normal).max() <= 8 * step and np.abs(fallback - normal).mean() <= step
    assert (fallback.argmax(axis=1) == normal.argmax(axis=1)).mean() >= 0.9


def test_unknown_format_and_missing_input(files, tmp_path):
    (tmp_path / "m.pt").write_bytes(b"x")
    with pytest.raises(edgekeras.BadInput, match="runs .tflite and .onnx"):
        open_session(tmp_path / "m.pt")
    s = open_session(files / "digits.onnx")
    with pytest.raises(edgekeras.BadInput, match="missing"):
        s.run({"img": np.zeros((1, 8, 8, 1), np.float32)})


def test_weight_stats_count_distinct_values_per_output_channel_of_a_depthwise_conv(tmp_path, keras):
    """TFLite keeps a depthwise kernel as [1, H, W, channels]: its output channels are the last axis."""
    import tensorflow as tf

    from edgekeras.runtime.session import tflite_weight_stats

    inputs = keras.Input((8, 8, 4))
    dw = keras.layers.DepthwiseConv2D(3, name="dw")
    m = keras.Model(inputs, dw(inputs))
    k = np.zeros((3, 3, 4, 1), np.float32)
    for c in range(4):  # channel c: 3 values of its own (12 over the whole kernel)
        k[..., c, 0] = np.resize(np.array([1, 2, 3], np.float32) + 10 * c, (3, 3))
    dw.set_weights([k, np.zeros(4, np.float32)])
    stats = tflite_weight_stats(tf.lite.TFLiteConverter.from_keras_model(m).convert())
    (layer,) = [s for s in stats if s["op"] == "DEPTHWISE_CONV_2D"]
    assert layer["params"] == 36 and layer["distinct_values"] == 3 and layer["sparsity"] == 0.0
