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


def test_unknown_dimensions_are_named_by_position_not_by_tf2onnxs_process_counter():
    """tf2onnx numbers unknown dimensions with a counter of the whole process (`unk__80` in one fresh process,
    `unk__79` in the next): renamed in order of appearance, two exports of one model give the same bytes."""
    from onnx import TensorProto, helper

    from edgekeras.export.onnx import canonical_dim_names

    def exported(start):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [f"unk__{start}", 28])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"unk__{start + 1}", f"unk__{start + 2}"])
        body_in = helper.make_tensor_value_info("b", TensorProto.FLOAT, [f"unk__{start + 3}"])
        body = helper.make_graph([helper.make_node("Identity", ["b"], ["c"])], "body", [body_in],
                                 [helper.make_tensor_value_info("c", TensorProto.FLOAT, [f"unk__{start + 3}"])])
        loop = helper.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=body)
        graph = helper.make_graph([loop], "g", [x], [y])
        canonical_dim_names(graph)
        return graph

    a, b = exported(79), exported(80)
    assert a.SerializeToString() == b.SerializeToString()
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(a.input) + list(a.output)]
    assert dims == [["unk__0", 28], ["unk__1", "unk__2"]]
    assert a.node[0].attribute[0].g.input[0].type.tensor_type.shape.dim[0].dim_param == "unk__3"
