"""ONNX export of graphs with loops: a recurrent layer that is not unrolled (a While over TensorList ops) becomes an
ONNX Loop that ONNX Runtime runs and that matches Keras, in Keras 3 and tf_keras, as Keras 3's own ONNX export does."""

from __future__ import annotations

import numpy as np
import pytest

import edgekeras
from edgekeras._keras import keras as tf_keras
from edgekeras._keras import keras3
from edgekeras.export.onnx import to_onnx
from edgekeras.runtime.session import open_session
from edgekeras.source import source_from_object

X = np.random.default_rng(0).uniform(0, 1, (24, 12, 5)).astype(np.float32)


def rolled(k, cell: str, batch_size=None):
    L = k.layers
    x = k.Input((12, 5), batch_size=batch_size, name="sequence")
    return k.Model(x, L.Dense(4, activation="softmax", name="probs")(getattr(L, cell)(8)(x)), name=f"rolled_{cell}")


@pytest.mark.parametrize("keras_module, cell", [(keras3, "LSTM"), (keras3, "GRU"), (lambda: tf_keras, "LSTM")],
                         ids=["keras3-lstm", "keras3-gru", "tf_keras-lstm"])
def test_a_rolled_recurrent_layer_exports_to_onnx_that_runs_and_matches_keras(keras_module, cell, tmp_path):
    model = rolled(keras_module(), cell)
    source = source_from_object(model)
    data, settings = to_onnx(source)
    (tmp_path / "m.onnx").write_bytes(data)
    got = open_session(tmp_path / "m.onnx").run(X)["probs"]
    assert np.max(np.abs(got - model.predict(X, verbose=0))) < 1e-5
    assert settings["mode"] == "float32"
    import onnx

    ops = {n.op_type for n in onnx.load(tmp_path / "m.onnx").graph.node}
    assert ops & {"Loop", "LSTM", "GRU"}  # the loop kept (tf2onnx makes an ONNX LSTM or GRU of it), not lowered


def test_graphs_without_control_flow_are_frozen_once():
    from edgekeras.export.onnx import frozen_for_onnx

    k = keras3()
    model = k.Sequential([k.Input((5,)), k.layers.Dense(3)])
    source = source_from_object(model)
    assert frozen_for_onnx(source) is source.frozen_function()


def test_compress_writes_the_onnx_file_of_a_rolled_lstm(tmp_path):
    """Batch fixed at 1 (the float32 TFLite file lowers the loop then); before, the ONNX file was not written
    ("ONNX Runtime cannot load ... Invalid tensor data type 0")."""
    k = keras3()
    rolled(k, "LSTM", batch_size=1).save(tmp_path / "lstm.keras")
    np.save(tmp_path / "seq.npy", X)
    report = edgekeras.compress(tmp_path / "lstm.keras", ["float32"], calib=tmp_path / "seq.npy", onnx=True,
                                output_dir=tmp_path / "out")
    f = report.file("float32", "onnx")
    assert f.written and f.parity.passed
    assert f.parity.outputs["probs"].max_abs_diff < 1e-5
