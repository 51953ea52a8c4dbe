"""Calibration/evaluation data: formats, checks and warnings."""

from __future__ import annotations

import numpy as np
import pytest

from edgekeras import BadInput
from edgekeras.card import Preprocessing, TensorSpec
from edgekeras.data import check_inputs, load_data, synthetic_inputs
from conftest import make_image_folder

IMG = [TensorSpec("image", [None, 8, 8, 3], "float32")]


def test_seeded_subset_is_reproducible(tmp_path):
    np.save(tmp_path / "c.npy", np.arange(500 * 3, dtype=np.float32).reshape(500, 3))
    spec = [TensorSpec("x", [None, 3], "float32")]
    a = load_data(tmp_path / "c.npy", spec, purpose="calibration", limit=50, seed=1)
    b = load_data(tmp_path / "c.npy", spec, purpose="calibration", limit=50, seed=1)
    assert len(a) == 50 and np.array_equal(a.x["x"], b.x["x"])
    assert "50 of 500 samples" in a.source


@pytest.mark.parametrize("scale,phrase", [(255.0, "are these 0-255 pixels"), (1 / 255, None)])
def test_range_warning_for_a_model_that_takes_unit_values(tmp_path, scale, phrase):
    np.save(tmp_path / "c.npy", np.random.default_rng(0).uniform(0, 1, (30, 8, 8, 3)).astype(np.float32) * scale)
    ds = load_data(tmp_path / "c.npy", IMG, purpose="calibration")
    warnings = check_inputs(ds, IMG, Preprocessing.preset("unit"), purpose="calibration")
    if phrase:
        assert any(phrase in w and "expects about [0, 1]" in w for w in warnings)
    else:
        assert not any("expects about" in w for w in warnings)




def test_one_sample_without_batch_axis_gets_a_hint(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((8, 8, 3), np.float32))
    ds = load_data(tmp_path / "c.npy", IMG, purpose="calibration")
    with pytest.raises(BadInput, match=r"x\[None\]"):
        check_inputs(ds, IMG, None, purpose="calibration")


def test_image_folder_is_resized_and_preprocessed(tmp_path):
    folder = make_image_folder(tmp_path / "i", per_class=3, size=(20, 30))
    ds = load_data(folder, IMG, purpose="calibration", preprocessing=Preprocessing.preset("unit"))
    assert ds.x["image"].shape == (6, 8, 8, 3) and ds.x["image"].max() <= 1.0


def test_image_folder_needs_known_preprocessing(tmp_path):
    folder = make_image_folder(tmp_path / "i", per_class=2)
    with pytest.raises(BadInput, match="--preprocess raw"):
        load_data(folder, IMG, purpose="calibration", preprocessing=None)


def test_unreadable_images_are_skipped_with_their_names(tmp_path):
    folder = make_image_folder(tmp_path / "i", per_class=2)
    (folder / "cat" / "broken.png").write_bytes(b"not a png")
    ds = load_data(folder, IMG, purpose="calibration", preprocessing=Preprocessing.preset("raw"))
    assert len(ds) == 4 and any("cat/broken.png" in w for w in ds.warnings)
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"")
    with pytest.raises(BadInput, match="none of its 1 image"):
        load_data(only_bad, IMG, purpose="calibration", preprocessing=Preprocessing.preset("raw"))


def test_eval_folder_maps_class_names_to_the_model_labels(tmp_path):
    folder = make_image_folder(tmp_path / "i", classes=("dog", "cat"), per_class=2)
    ds = load_data(folder, IMG, purpose="evaluation", preprocessing=Preprocessing.preset("raw"),
                   labels=["dog", "bird", "cat"])
    names = [["dog", "bird", "cat"][i] for i in ds.y]
    assert sorted(names) == ["cat", "cat", "dog", "dog"]
    with pytest.raises(BadInput, match=r"class folders \['cat'\]"):
        load_data(folder, IMG, purpose="evaluation", preprocessing=Preprocessing.preset("raw"), labels=["dog"])


def test_eval_needs_labels(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((3, 8, 8, 3), np.float32))
    with pytest.raises(BadInput, match="holds no labels"):
        load_data(tmp_path / "e.npy", IMG, purpose="evaluation")
    np.savez(tmp_path / "e.npz", x=np.zeros((3, 8, 8, 3), np.float32))
    with pytest.raises(BadInput, match="has no 'y'"):
        load_data(tmp_path / "e.npz", IMG, purpose="evaluation")
    from edgekeras.metrics import check_labels

    with pytest.raises(BadInput, match="3 inputs but 2 labels for output 'probs'"):
        check_labels("accuracy", np.zeros(2), TensorSpec("probs", [None, 4], "float32"), "e.npz", 3)
    with pytest.raises(BadInput, match="single value, not one per sample"):
        check_labels("accuracy", np.int64(2), TensorSpec("probs", [None, 4], "float32"), "e.npz", 3)
    with pytest.raises(BadInput, match="1 label.s. of output 'v' are NaN or infinite"):
        check_labels("mae", np.array([[0.5], [np.nan], [1.0]]), TensorSpec("v", [None, 1], "float32"), "e.npz", 3)


def test_the_task_read_from_labels():
    from edgekeras.metrics import infer_task_from_labels

    probs = TensorSpec("probs", [None, 3], "float32")
    assert infer_task_from_labels(np.array([0, 2, 1]), probs) == "classification"
    assert infer_task_from_labels(np.eye(3)[[0, 2, 1, 1]], probs) == "classification"  # one-hot rows
    assert infer_task_from_labels(np.array([[0.2, 0.5, 0.3]]), probs) == "regression"
    assert infer_task_from_labels(np.array([0, 1, 1]), TensorSpec("p", [None, 1], "float32")) == "binary"
    assert infer_task_from_labels(np.array([0, 3]), TensorSpec("p", [None, 1], "float32")) == "regression"


def test_pickled_arrays_are_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(BadInput, match="without unpickling"):
        load_data(tmp_path / "o.npy", IMG, purpose="calibration")


def test_synthetic_inputs_follow_the_expected_range():
    ds = synthetic_inputs(IMG, Preprocessing.preset("raw"), 10)
    assert ds.x["image"].min() >= 0 and ds.x["image"].max() <= 255 and ds.x["image"].max() > 100
    with pytest.raises(BadInput, match="cannot invent"):
        synthetic_inputs([TensorSpec("ids", [None, 5], "int32")], None, 3)


def test_several_inputs_by_name_or_x_name(tmp_path):
    """A two-input model reads one key per input, named as the input or `x_<input>` (as labels are `y_<output>`)."""
    inputs = [TensorSpec("image", [None, 4, 4, 1], "float32"), TensorSpec("features", [None, 3], "float32")]
    image, features = np.zeros((5, 4, 4, 1), np.float32), np.ones((5, 3), np.float32)
    for keys in ({"image": image, "features": features}, {"x_image": image, "x_features": features}):
        np.savez(tmp_path / "d.npz", y=np.zeros(5), **keys)
        ds = load_data(tmp_path / "d.npz", inputs, purpose="evaluation")
        assert set(ds.x) == {"image", "features"} and ds.x["features"].sum() == 15
    np.savez(tmp_path / "bad.npz", x=image)
    with pytest.raises(BadInput, match=r"expected 'image', 'features' \(or 'x_image', 'x_features'\)"):
        load_data(tmp_path / "bad.npz", inputs, purpose="calibration")
