"""The precision search on real files, on a model it was not written against: a digits CNN (scikit-learn's 8x8
digits) with a small side branch whose outputs are ~1e3-1e4 (a frozen Dense on the raw pixels, as a sensor reading in
other units would be), joined to the conv features and normalized by an adapted Normalization layer. In int8 the
concatenation gets one scale, the conv features round to 0, and plain int8 loses far more than 10 points.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekeras.compress.gate import tflite_int8_weight_fraction


def outlier_cnn(keras, x):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1), name="pixels")
    f = keras.layers.Conv2D(32, 3, activation="relu", padding="same", name="conv_a")(inputs)
    f = keras.layers.Conv2D(64, 3, activation="relu", padding="same", name="conv_b")(f)
    f = keras.layers.GlobalAveragePooling2D(name="pool")(f)
    side = keras.layers.Flatten(name="flat")(inputs)
    side = keras.layers.Dense(3, name="meter", trainable=False,
                              kernel_initializer=keras.initializers.RandomNormal(0, 300))(side)
    x_all = keras.layers.Concatenate(name="join")([f, side])
    norm = keras.layers.Normalization(name="scale")
    out = norm(x_all)
    out = keras.layers.Dense(96, activation="relu", name="fc")(out)
    out = keras.layers.Dense(10, activation="softmax", name="digit")(out)
    model = keras.Model(inputs, out, name="outlier_cnn")
    probe = keras.Model(inputs, x_all)
    norm.adapt(probe.predict(x, verbose=0))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def case(keras):
    from sklearn.datasets import load_digits

    from edgekeras.compress import ptq
    from edgekeras.metrics import score
    from edgekeras.source import source_from_object

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target
    model = outlier_cnn(keras, x[:1200])
    model.fit(x[:1200], y[:1200], epochs=20, batch_size=32, verbose=0)
    src = source_from_object(model)
    xe, ye = x[1200:], y[1200:]
    keras_value = score("accuracy", src.predict({"pixels": xe})["digit"], ye, "probabilities")
    calib = {"pixels": x[:200]}
    f32 = ptq.convert(src, "float32").data
    i8 = ptq.convert(src, "int8", calibration=calib).data
    return {"src": src, "calib": calib, "x": {"pixels": xe}, "y": ye, "keras": keras_value, "f32": f32, "i8": i8}


def run(case, **kwargs):
    from edgekeras.compress.precision import search_file

    args = dict(metric="accuracy", kind="probabilities", output="digit", keras_value=case["keras"], max_drop=0.5,
                compare={"int8": case["i8"], "float32": case["f32"]})
    args.update(kwargs)
    return search_file(case["src"], case["f32"], case["calib"], case["x"], case["y"], **args)


@pytest.fixture(scope="module")
def searched(case):
    return run(case)


def test_plain_int8_loses_more_than_10_points(case, searched):
    assert case["keras"] > 0.85
    plain = searched.settings()["precision_search"]["compared_with"]["int8"]
    assert plain["drop"] > 10  # the converter's plain int8 file
    assert searched.outcome.trials[0].drop > 10  # and litert-quantizer's


def test_the_searched_file_keeps_the_bound_with_most_weight_bytes_int8(case, searched, tmp_path):
    from edgekeras.metrics import score
    from edgekeras.runtime.session import open_session

    assert searched.met
    assert tflite_int8_weight_fraction(searched.data) >= 0.8
    # measured again here, outside the search: within half a point of Keras
    path = tmp_path / "mixed.tflite"
    with open(path, "wb") as f:
        f.write(searched.data)
    value = score("accuracy", open_session(path).run(case["x"])["digit"], case["y"], "probabilities")
    assert 100 * (case["keras"] - value) <= 0.5
    assert value == pytest.approx(searched.outcome.chosen.value)
    assert len(searched.data) < 0.45 * len(case["f32"])


def test_the_card_records_every_candidate_and_decision(searched):
    s = searched.settings()
    ps = s["precision_search"]
    json.dumps(s)
    assert s["engine"] == "litert-quantizer" and s["recipe"][0]["regex"] == ".*"
    assert len(ps["candidates"]) == len(searched.outcome.trials) >= 3
    assert ps["candidates"][0]["purpose"] == "plain int8" and not ps["candidates"][0]["holds"]
    layers = {entry["layer"]: entry for entry in ps["layers"]}
    assert {"conv_a", "conv_b", "meter", "join", "fc", "digit"} <= set(layers)
    assert all(entry["why"] for entry in layers.values())
    assert {layers[n]["precision"] for n in ("fc", "conv_a", "conv_b", "digit")} <= {"int8", "weights-int8", "dynamic"}
    assert layers["join"]["precision"] != "int8"  # the concatenation int8 cannot hold
    assert set(ps["compared_with"]) == {"int8", "float32"}
    assert ps["met"] and ps["drop"] <= 0.5


def test_two_runs_give_the_same_file_and_the_recipe_rebuilds_it(case, searched):
    from edgekeras.compress.precision import rebuild

    again = run(case, compare=None)
    assert again.data == searched.data
    assert again.outcome.precisions == searched.outcome.precisions
    assert rebuild(case["f32"], searched.recipe, case["calib"], searched.signature) == searched.data


def test_the_precisions_named_are_the_only_ones_used(case):
    r = run(case, precisions="dynamic,float16", compare=None)
    assert set(r.outcome.precisions.values()) <= {"int8", "dynamic", "float16", "float32"}
    assert r.met


def test_compress_writes_the_mixed_file_beside_plain_int8(keras, case, tmp_path):
    import edgekeras

    x = case["x"]["pixels"]
    report = edgekeras.compress(case["src"].keras_model, "int8", calib=case["calib"]["pixels"], eval=(x, case["y"]),
                                max_accuracy_drop=0.5, precision="auto", output_dir=tmp_path / "out",
                                accept_parity_failures=True)
    mixed = report.file("mixed")
    assert mixed is not None and mixed.parity.passed
    assert report.file("int8").accuracy.value < case["keras"] - 0.1  # plain int8, beside it
    card = json.loads((tmp_path / "out" / (mixed.path.split("/")[-1] + ".edgekeras.json")).read_text())
    assert card["mode"] == "mixed"
    assert card["steps"][-1]["settings"]["precision_search"]["met"]
    assert report.recipe["precision"] == list(edgekeras.compress.precision.PRECISIONS)


def test_raw_tabular_features_keep_a_float_input_where_int8_input_cannot_hold_them(keras):
    """scikit-learn's breast cancer features as measured (areas ~1e3 beside smoothness ~0.1), normalized inside the
    model: an int8 input rounds the small features away, and no float layer after it can bring them back (the
    accuracy gate cannot hold 1 point here); the search keeps the input float with the layer that reads it."""
    from sklearn.datasets import load_breast_cancer

    from edgekeras.compress import ptq
    from edgekeras.compress.precision import search_file
    from edgekeras.metrics import score
    from edgekeras.source import source_from_object

    d = load_breast_cancer()
    x, y = d.data.astype(np.float32), d.target.astype(np.float32)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((30,), name="features")
    norm = keras.layers.Normalization(name="normalize")
    norm.adapt(x[:400])
    h = keras.layers.Dense(16, activation="relu", name="dense")(norm(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid", name="malignant")(h))
    model.compile(keras.optimizers.Adam(1e-2), "binary_crossentropy")
    model.fit(x[:400], y[:400], epochs=30, batch_size=32, verbose=0)
    src = source_from_object(model)
    xe, ye = x[400:], y[400:]
    kv = score("binary_accuracy", src.predict({"features": xe})["malignant"], ye, "probability")
    r = search_file(src, ptq.convert(src, "float32").data, {"features": x[:200]}, {"features": xe}, ye,
                    metric="binary_accuracy", kind="probability", output="malignant", keras_value=kv, max_drop=1.0)
    assert kv > 0.9 and r.outcome.trials[0].drop > 10  # plain int8
    assert r.met and r.outcome.chosen.drop <= 1.0
    assert r.outcome.precisions["normalize"] != "int8"
    assert r.recipe[-1]["algorithm_key"] == "no_quantize" and "serving_default_features" in r.recipe[-1]["regex"]


def test_the_int8_onnx_file_is_searched_too_and_16_bit_activations_run(keras, case, searched, tmp_path):
    import onnx

    import edgekeras
    from edgekeras.compress.gate import _quantize_onnx
    from edgekeras.runtime.session import open_session

    x = case["x"]["pixels"]
    report = edgekeras.compress(case["src"].keras_model, "int8", calib=case["calib"]["pixels"], eval=(x, case["y"]),
                                max_accuracy_drop=0.5, precision="auto", onnx=True, output_dir=tmp_path / "out",
                                accept_parity_failures=True)
    f = report.file("int8", "onnx")
    card = json.loads((tmp_path / "out" / (f.path.split("/")[-1] + ".edgekeras.json")).read_text())
    ps = card["steps"][-1]["settings"]["precision_search"]
    assert ps["met"] and ps["candidates"][0]["purpose"] == "plain int8" and ps["candidates"][0]["drop"] > 10
    assert 100 * (case["keras"] - f.accuracy.value) <= 0.5 and ps["int8_weight_fraction"] >= 0.8
    assert {entry["precision"] for entry in ps["layers"]} <= {"int8", "int16x8", "float32"}
    assert ps["precisions_allowed"] == ["int8", "int16x8", "float32"]
    # 16-bit activations, as the search builds them, make a file ONNX Runtime runs
    float_onnx = tmp_path / "out" / report.file("float32", "onnx").path.split("/")[-1]
    g = onnx.load(str(float_onnx)).graph
    conv = next(n.output[0] for n in g.node if n.op_type == "Relu")  # a conv's activation (Conv+Relu: one QDQ)
    out = tmp_path / "sixteen.onnx"
    _quantize_onnx(float_onnx, out, {"pixels": case["calib"]["pixels"][:20]}, case["src"].inputs, [],
                   tmp_path / "cache.json", sixteen_bit=[conv])
    q = onnx.load(str(out))
    assert any(i.data_type == onnx.TensorProto.UINT16 for i in q.graph.initializer)
    probs = open_session(out).run({"pixels": x[:50]})["digit"]
    assert probs.shape == (50, 10) and np.isfinite(probs).all()
    assert onnx.load(str(out)).opset_import[0].version == 21  # standard ONNX: no com.microsoft Q/DQ
    assert all(n.domain == "" for n in q.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    # names of one's own narrow the ONNX search too (dynamic has no static-QDQ form: int8 and float32 are left)
    from edgekeras.compress.precision import search_onnx_file

    narrow = search_onnx_file(float_onnx, tmp_path / "narrow.onnx", case["calib"], case["x"], case["y"],
                              metric="accuracy", kind="probabilities", output="digit", keras_value=case["keras"],
                              max_drop=0.5, inputs=case["src"].inputs, layers=searched.layers,
                              ranking=searched.ranking, precisions="dynamic")
    assert narrow.allowed == ("int8", "float32") and set(narrow.outcome.precisions.values()) <= {"int8", "float32"}


def test_candidates_built_and_scored_elsewhere_give_the_same_file(case, searched):
    """`fan_out` as the Ray farm does it (the calibration, the float file and the data in a context; each
    candidate built by `Builder.calibrated` and scored by `score_candidate`), here in this process: the same
    file, the same trials and values; the latencies are measured where the search runs."""
    import pickle

    from edgekeras.compress.precision import score_candidate

    calls = []

    def fan_out(context, recipes):
        context = pickle.loads(pickle.dumps(context))  # what crosses to a node: picklable, and a copy
        calls.append(len(recipes))
        return [score_candidate(context, r) for r in recipes]

    r = run(case, fan_out=fan_out)
    assert calls and all(n > 1 for n in calls)
    assert r.data == searched.data and r.outcome.precisions == searched.outcome.precisions
    assert [(t.purpose, t.value, t.bytes) for t in r.outcome.trials] == [
        (t.purpose, t.value, t.bytes) for t in searched.outcome.trials]
    assert all(t.latency_ms > 0 for t in r.outcome.trials)
