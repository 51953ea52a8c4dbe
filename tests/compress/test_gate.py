"""The accuracy-gated int8 search (edgekeras.compress.gate), on a model built so that plain int8 fails.

The model: a Dense of small ReLU features concatenated with a frozen Dense whose outputs are ~1e4, a
Normalization that brings both to unit scale, then two wide Dense layers (most of the weight bytes) and a softmax.
In int8 the concatenation gets one scale (~860), the small features round to 0 and plain int8 falls to about
chance (~32% where Keras scores ~99.8%). Keeping the small Dense, the concatenation and the Normalization in float
restores it, with the wide layers (>95% of the weight bytes) still int8. Trained once per module (~2 s).
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from edgekeras.errors import BadInput

CENTERS = np.array([[2.5, 0, 0, 0], [0, 2.5, 0, 0], [0, 0, 2.5, 2.5]], np.float32)
ISLAND = {"small", "cat", "norm"}


def blobs(n: int, seed: int):
    """Three well separated classes in features 0-3; features 4-7 are noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 0.6, (n, 8)).astype(np.float32)
    x[:, :4] += CENTERS[y]
    return x, y


def huge_branch_model(keras):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,), name="features")
    small = keras.layers.Dense(32, activation="relu", name="small")(inputs)
    huge = keras.layers.Dense(4, name="huge", trainable=False,
                              kernel_initializer=keras.initializers.RandomNormal(0, 1e4))(inputs)
    x = keras.layers.Concatenate(name="cat")([small, huge])
    x = keras.layers.Normalization(mean=[0.0] * 36, variance=[1.0] * 32 + [1e8] * 4, name="norm")(x)
    x = keras.layers.Dense(256, activation="relu", name="hidden")(x)
    x = keras.layers.Dense(256, activation="relu", name="hidden2")(x)
    out = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, out, name="gate_net")
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def gate():
    from edgekeras.compress import gate

    return gate


@pytest.fixture(scope="module")
def setup(keras):
    from edgekeras.compress import ptq
    from edgekeras.metrics import score
    from edgekeras.source import source_from_object

    x, y = blobs(2000, 0)
    x_eval, y_eval = blobs(1000, 1)
    model = huge_branch_model(keras)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    src = source_from_object(model)
    calib = {"features": x[:200]}
    plain = ptq.convert(src, "int8", calibration=calib)
    keras_value = score("accuracy", src.predict({"features": x_eval})["probs"], y_eval, "probabilities")
    return {"src": src, "calib": calib, "eval_x": {"features": x_eval}, "eval_y": y_eval, "plain": plain,
            "keras_value": keras_value}


def run_tflite(gate, setup, **kwargs):
    args = dict(metric="accuracy", kind="probabilities", output="probs", keras_value=setup["keras_value"],
                max_drop=0.5)
    args.update(kwargs)
    return gate.search_tflite(setup["src"], setup["plain"].settings, setup["calib"], setup["eval_x"],
                              setup["eval_y"], **args)


@pytest.fixture(scope="module")
def searched(gate, setup, tmp_path_factory):
    """The search with a 0.5-point bound; every candidate file is copied aside as it is measured."""
    folder = tmp_path_factory.mktemp("gate_candidates")
    copies, calls = [], []
    measure = gate._measure_file

    def keep_copy(path, *args):
        copy = folder / f"{len(copies)}{path.suffix}"
        shutil.copy(path, copy)
        copies.append(copy)
        return measure(path, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gate, "_measure_file", keep_copy)
        result = run_tflite(gate, setup, progress=lambda i, n: calls.append((i, n)))
    return {"result": result, "copies": copies, "progress": calls}


def measured(path, setup) -> float:
    from edgekeras.metrics import score
    from edgekeras.runtime.session import open_session

    return score("accuracy", open_session(path).run(setup["eval_x"])["probs"], setup["eval_y"], "probabilities")


# ------------------------------------------------------------------------------------------------- TFLite
def test_keras_model_is_accurate_and_plain_int8_is_not(setup, searched):
    assert setup["keras_value"] >= 0.99
    plain = searched["result"].candidates[0]
    assert plain.float_layers == [] and plain.float_ops == []
    assert plain.drop >= 2.0 and plain.value < 0.5  # the small features round to 0: about chance
    assert math.isclose(plain.drop, 100 * (setup["keras_value"] - plain.value))


def test_gate_meets_the_bound_with_the_float_island_only(searched):
    r = searched["result"]
    assert r.met and r.max_drop == 0.5 and r.metric == "accuracy"
    assert r.chosen.drop <= 0.5
    assert set(r.chosen.float_layers) == ISLAND
    assert {name for name, _ in r.ranking[:3]} == ISLAND and r.ranking[3][1] < 0.2 < r.ranking[2][1]
    assert all(a[1] >= b[1] for a, b in zip(r.ranking, r.ranking[1:]))  # worst first
    assert {name for name, _ in r.ranking} == {"small", "huge", "cat", "norm", "hidden", "hidden2", "probs"}
    assert r.chosen.int8_weight_fraction >= 0.8
    assert set(r.reasons) == {name for name, _ in r.ranking} and "cannot be held in int8" in r.reasons["small"]
    assert any(n.startswith("kept in float: ") for n in r.notes)


def test_chosen_file_runs_on_litert_with_int8_io_and_the_candidates_value(gate, setup, searched, tmp_path):
    from edgekeras.runtime.session import float_ops, open_session

    r = searched["result"]
    path = tmp_path / "chosen.tflite"
    path.write_bytes(r.data)
    s = open_session(path)
    assert s.kernels == "xnnpack"  # LiteRT's default kernels
    assert [t.dtype for t in s.inputs] == ["int8"] and [t.dtype for t in s.outputs] == ["int8"]
    assert measured(path, setup) == r.chosen.value
    assert len(r.data) == r.chosen.bytes and float_ops(r.data) == r.chosen.float_ops
    assert any("gate_net/cat/concat" in op for op in r.chosen.float_ops)
    assert gate.tflite_int8_weight_fraction(r.data) == r.chosen.int8_weight_fraction
    # the wide layers stay int8, the small Dense is float
    from ai_edge_litert.interpreter import Interpreter

    kinds = {t["name"]: np.dtype(t["dtype"]).name for t in Interpreter(model_path=str(path)).get_tensor_details()}
    assert kinds["gate_net/hidden2/MatMul"] == "int8" and kinds["gate_net/hidden/MatMul"] == "int8"
    assert kinds["gate_net/small/MatMul"] == "float32"


def test_every_candidate_was_measured_in_order_starting_with_plain_int8(setup, searched):
    r, copies = searched["result"], searched["copies"]
    ranked = [name for name, _ in r.ranking]
    # doubling (1, 2, 4) then bisection (3), each a prefix of the ranking
    assert [len(c.float_layers) for c in r.candidates] == [0, 1, 2, 4, 3]
    assert all(c.float_layers == ranked[:len(c.float_layers)] for c in r.candidates)
    assert len(copies) == len(r.candidates)
    for c, copy in zip(r.candidates, copies):
        assert copy.stat().st_size == c.bytes
        assert measured(copy, setup) == c.value
        assert math.isclose(c.drop, 100 * (setup["keras_value"] - c.value))
        assert c.latency_ms > 0 and 0 < c.gzip_bytes < c.bytes
        assert len(c.float_ops) >= len(c.float_layers)
    # plain int8 is ptq.convert's int8 file, byte for byte (the same calibration, quantization and finish)
    assert copies[0].read_bytes() == setup["plain"].data
    assert [c.value >= setup["keras_value"] - 0.005 for c in r.candidates] == [False, False, False, True, True]
    assert r.chosen is r.candidates[-1]
    assert r.candidates[3].int8_weight_fraction < 0.8  # the 4th layer would have been a wide one
    assert searched["progress"][-1] == (5, 5) and all(i <= n for i, n in searched["progress"])
    assert [i for i, _ in searched["progress"][:-1]] == [1, 2, 3, 4, 5]


def test_settings_record_the_decisions_and_are_json(searched, setup):
    s = searched["result"].settings()
    json.dumps(s)
    assert s["mode"] == "int8" and s["inference_input_type"] == "int8"  # the int8 conversion's own settings
    assert set(s["float_layers"]) == ISLAND
    assert "gate_net/cat/concat" in s["denylisted_nodes"]
    g = s["accuracy_gate"]
    assert g["met"] is True and g["max_drop"] == 0.5 and g["drop_unit"] == "percentage points"
    assert g["plain_int8"]["drop"] >= 2 and g["drop"] <= 0.5
    assert [c["float_layers"] for c in g["candidates"]][0] == [] and len(g["candidates"]) == 5
    assert {f["layer"] for f in g["float_layers"]} == ISLAND and all(f["reason"] for f in g["float_layers"])
    assert g["ranking_measure"] == "relative_rmse_per_channel"


def test_unreachable_bound_keeps_the_best_candidate(gate, setup):
    r = run_tflite(gate, setup, max_drop=-1.0)  # one point better than Keras: impossible
    assert not r.met
    assert [len(c.float_layers) for c in r.candidates] == [0, 1, 2, 4, len(r.ranking)]
    best = min(r.candidates, key=lambda c: (c.drop, len(c.float_layers)))
    assert r.chosen is best and r.chosen.drop > -1.0 and len(r.data) == best.bytes
    assert any("cannot be met" in n for n in r.notes)
    assert r.settings()["accuracy_gate"]["met"] is False


def test_plain_int8_is_kept_when_it_keeps_the_bound(gate, setup):
    r = run_tflite(gate, setup, max_drop=90.0)
    assert r.met and len(r.candidates) == 1 and r.chosen.float_layers == [] and r.data == setup["plain"].data
    assert r.notes[0].startswith("plain int8 keeps the bound")


def test_float_io_keeps_float_input_and_output(gate, setup, tmp_path):
    from edgekeras.runtime.session import open_session

    from edgekeras.compress import ptq

    r = run_tflite(gate, setup, float_io=True)
    assert r.met and set(r.chosen.float_layers) == ISLAND
    plain = ptq.convert(setup["src"], "int8", calibration=setup["calib"], float_io=True)
    assert r.candidates[0].bytes == len(plain.data) and r.candidates[0].drop >= 2.0
    path = tmp_path / "float_io.tflite"
    path.write_bytes(r.data)
    s = open_session(path)
    assert [t.dtype for t in s.inputs] == ["float32"] and [t.dtype for t in s.outputs] == ["float32"]
    assert measured(path, setup) == r.chosen.value


# ------------------------------------------------------------------------------------------------- ONNX
@pytest.fixture(scope="module")
def onnx_searched(gate, setup, searched, tmp_path_factory):
    from edgekeras.export.onnx import to_onnx

    folder = tmp_path_factory.mktemp("gate_onnx")
    data, _ = to_onnx(setup["src"])
    (folder / "m.onnx").write_bytes(data)
    result = gate.search_onnx(folder / "m.onnx", folder / "m.int8.onnx", setup["calib"], setup["eval_x"],
                              setup["eval_y"], metric="accuracy", kind="probabilities", output="probs",
                              keras_value=setup["keras_value"], max_drop=0.5, inputs=setup["src"].inputs,
                              ranking=searched["result"].ranking, reasons=searched["result"].reasons)
    return {"result": result, "out": folder / "m.int8.onnx", "folder": folder}


def test_onnx_search_meets_the_bound(gate, setup, onnx_searched):
    from edgekeras.export.onnx import float_nodes, quantize_int8

    r, out = onnx_searched["result"], onnx_searched["out"]
    plain = r.candidates[0]
    assert plain.float_layers == [] and plain.drop >= 2.0
    assert r.met and r.chosen.drop <= 0.5 and set(r.chosen.float_layers) == ISLAND
    assert r.chosen.int8_weight_fraction >= 0.8 and r.runtime == "onnxruntime"
    assert out.read_bytes() == r.data and len(r.data) == r.chosen.bytes
    assert measured(out, setup) == r.chosen.value
    assert float_nodes(out) == r.chosen.float_ops and "gate_net/cat/concat" in r.excluded
    assert gate.onnx_int8_weight_fraction(out) == r.chosen.int8_weight_fraction
    # plain candidate = edgekeras.export.onnx.quantize_int8 (the same settings and calibration)
    folder = onnx_searched["folder"]
    quantize_int8(folder / "m.onnx", folder / "plain.int8.onnx", setup["calib"], setup["src"].inputs)
    assert measured(folder / "plain.int8.onnx", setup) == plain.value
    s = r.settings()
    json.dumps(s)
    assert s["reduce_range"] is True and s["activation_type"] == "uint8"
    assert "gate_net/cat/concat" in s["nodes_to_exclude"] and s["accuracy_gate"]["measured_on"].startswith("onnx")
    assert all(f["reason"] for f in s["accuracy_gate"]["float_layers"])


# ------------------------------------------------------------------------------------------------- pieces
def test_drop_units(gate):
    assert math.isclose(gate.drop_of("accuracy", 0.951, 0.956), 0.5)
    assert math.isclose(gate.drop_of("binary_accuracy", 0.97, 0.96), -1.0)
    assert math.isclose(gate.drop_of("mae", 0.202, 0.200), 1.0)  # % of the Keras error
    assert math.isclose(gate.drop_of("mae", 0.19, 0.200), -5.0)
    assert gate.drop_of("mae", 0.1, 0.0) == math.inf and gate.drop_of("mae", 0.0, 0.0) == 0.0
    with pytest.raises(BadInput):
        gate.drop_of("f1", 0.5, 0.5)


def test_layer_names_from_tensor_names(gate, keras):
    paths = ["base/c1", "base/bn", "base/r", "gap", "out"]
    assert gate.match_layer("outer/base/r/Relu;outer/base/c1/Conv2D", paths) == "base/c1"  # fused: the first layer
    assert gate.match_layer("outer/gap/Mean", paths) == "gap"
    assert gate.match_layer("StatefulPartitionedCall:0", paths) is None
    assert gate.match_layer("outer/out", paths) is None  # a layer path must be followed by an op name
    assert gate.match_layer("model/conv0b/Conv2D", None) == "model/conv0b"  # a SavedModel graph
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="d")], name="base")
    i = keras.Input((4,))
    model = keras.Model(i, keras.layers.Dense(1, name="head")(inner(i)))
    assert gate.layer_paths(model) == ["base/d", "head"]


def test_bad_input_before_any_conversion(gate, setup):
    for kwargs, words in [(dict(max_drop="0.5"), "number"), (dict(max_drop=float("nan")), "number"),
                          (dict(metric="f1"), "unknown metric"), (dict(output="nope"), "no output"),
                          (dict(keras_value=float("nan")), "not a number")]:
        with pytest.raises(BadInput) as e:
            run_tflite(gate, setup, **kwargs)
        assert words in e.value.message, kwargs
    with pytest.raises(BadInput) as e:
        gate.search_tflite(setup["src"], setup["plain"].settings, setup["calib"], setup["eval_x"],
                           setup["eval_y"][:10], metric="accuracy", kind="probabilities", output="probs",
                           keras_value=0.9, max_drop=0.5)
    assert "same" in e.value.message and e.value.fix
    with pytest.raises(BadInput) as e:
        gate.search_tflite(setup["src"], setup["plain"].settings, setup["calib"], {"x": setup["eval_y"]},
                           setup["eval_y"], metric="accuracy", kind="probabilities", output="probs",
                           keras_value=0.9, max_drop=0.5)
    assert "features" in e.value.message


def test_slowdown_is_noted_only_when_a_second_measurement_agrees(gate, setup, searched, monkeypatch):
    from dataclasses import replace

    r, copies = searched["result"], searched["copies"]
    file_of = {len(c.float_layers): copy for c, copy in zip(r.candidates, copies)}
    plain, chosen = replace(r.candidates[0], latency_ms=1.0), replace(r.chosen, latency_ms=1.5)
    again = {file_of[0]: 1.0, file_of[3]: 1.4}
    monkeypatch.setattr(gate, "_latency_ms", lambda session, x: again[session.path])

    def path_of(c):
        return file_of[len(c.float_layers)]

    slower = gate._confirmed_slowdown([plain, chosen], chosen, path_of, setup["eval_x"])
    assert slower == (1.0, 1.4)
    notes = gate._notes([plain, chosen], chosen, True, 0.5, "accuracy", 7, [], slower)
    assert "the float island makes the file 40% slower than plain int8" in notes[1]
    again[file_of[3]] = 1.1  # the second measurement says 10%: noise, no note
    assert gate._confirmed_slowdown([plain, chosen], chosen, path_of, setup["eval_x"]) is None
    quick = replace(chosen, latency_ms=1.1)  # within 20% at once: not measured again
    again.clear()
    assert gate._confirmed_slowdown([plain, quick], quick, path_of, setup["eval_x"]) is None


def test_the_gate_end_to_end_through_compress(keras, tmp_path):
    """edgekeras compress --int8 --onnx --max-accuracy-drop 0.5 --eval: within the bound, decisions in the card."""
    import json

    from click.testing import CliRunner

    from edgekeras import ModelCard, cli

    x, y = blobs(2000, 0)
    x_eval, y_eval = blobs(1000, 1)
    model = huge_branch_model(keras)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0)
    model.save(tmp_path / "net.h5")
    np.save(tmp_path / "calib.npy", x[:200])
    np.savez(tmp_path / "eval.npz", x=x_eval, y=y_eval)
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "net.h5"), "--int8", "--onnx", "--calib",
                                      str(tmp_path / "calib.npy"), "--eval", str(tmp_path / "eval.npz"),
                                      "--max-accuracy-drop", "0.5", "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "o" / "net.report.json").read_text())
    keras_acc = report["keras_accuracy"]["value"]
    for name in ("net.int8.tflite", "net.int8.onnx"):
        f = next(f for f in report["files"] if f["path"] == name)
        assert keras_acc - f["accuracy"]["value"] <= 0.005, name
        card = ModelCard.read(tmp_path / "o" / f"{name}.edgekeras.json")
        decision = card.steps[-1].settings
        assert decision["accuracy_gate"]["met"] is True and set(decision["float_layers"]) == ISLAND
        assert decision["accuracy_gate"]["candidates"][0]["float_layers"] == []  # plain int8 was tried first
        assert any("the accuracy gate kept 3 layer(s) in float" in w for w in card.warnings)
    assert "Traceback" not in r.output
