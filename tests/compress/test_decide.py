"""The run's decisions (edgekeras.compress.decide) on hand-made model descriptions: no TensorFlow, no model file.
The end-to-end tests (test_numbers.py, test_bad_input.py, test_parity_policy.py) prove the same on real models;
these pin each rule in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

from edgekeras.card import ModelCard, Preprocessing, TensorSpec
from edgekeras.compress.decide import ModelInfo, choose_metrics, metadata_for, resolve
from edgekeras.compress.recipe import Recipe
from edgekeras.data import Dataset
from edgekeras.errors import BadInput


def info(inputs=((None, 8, 8, 1),), outputs=(("probs", (None, 10)),), activations=None, task="classification",
         reason="the model's loss", hint=None) -> ModelInfo:
    return ModelInfo(name="m", format="keras-h5", keras_version=2,
                     inputs=[TensorSpec(f"in{i}", list(s), "float32") for i, s in enumerate(inputs)],
                     outputs=[TensorSpec(n, list(s), "float32") for n, s in outputs],
                     sha256="0" * 64, params=10, activations=dict(activations or {"probs": "softmax"}), task=task,
                     task_reason=reason, hint=dict(hint or {}))


def card(**fields) -> ModelCard:
    return ModelCard(file="m.h5", format="keras-h5", mode="float32", inputs=[], outputs=[], **fields)


def test_the_users_preprocessing_wins_and_a_mismatch_with_the_apps_own_is_warned():
    mobilenet = info(inputs=((None, 32, 32, 3),), hint={"preset": "signed", "application": "MobileNetV2"})
    r = resolve(mobilenet, card(preprocessing=Preprocessing.preset("unit", [32, 32], 3)), Recipe(preprocess="caffe"),
                model_name="m.h5")
    assert r.metadata.preprocessing.name == "caffe" and r.preset_hint is None
    assert len(r.warnings) == 1 and "MobileNetV2 (a Keras Application)" in r.warnings[0]
    assert "--preprocess signed" in r.warnings[0]


def test_then_the_card_then_the_model_scaling_its_own_input():
    image = info(inputs=((None, 8, 8, 1),))
    from_card = resolve(image, card(preprocessing=Preprocessing.preset("unit", [8, 8], 1)), Recipe(), model_name="m")
    assert from_card.metadata.preprocessing.name == "unit" and not from_card.warnings
    inside = resolve(info(hint={"scales_inside": True}), None, Recipe(), model_name="m")
    assert inside.metadata.preprocessing.name == "raw" and not inside.warnings


def test_an_image_model_nobody_describes_is_warned_and_remembers_what_it_looks_like():
    r = resolve(info(inputs=((None, 32, 32, 3),), hint={"preset": "caffe", "application": "VGG19"}), None, Recipe(),
                model_name="m")
    assert r.metadata.preprocessing is None and r.preset_hint == ("VGG19 (a Keras Application)", "caffe")
    assert "expects --preprocess caffe" in r.warnings[0]
    tabular = resolve(info(inputs=((None, 4),)), None, Recipe(), model_name="m")
    assert tabular.metadata.preprocessing is None and not tabular.warnings and tabular.preset_hint is None


@pytest.mark.parametrize("recipe_task, card_task, want, reason", [
    ("regression", "binary", "regression", "--task"),
    (None, "binary", "binary", "the model card"),
    (None, None, "classification", "the model's loss"),
    (None, "something else", "classification", "the model's loss"),  # not a task: ignored
])
def test_the_task_comes_from_the_option_the_card_then_the_model(recipe_task, card_task, want, reason):
    r = resolve(info(), card(task=card_task), Recipe(task=recipe_task), model_name="m")
    assert (r.metadata.task, r.task_reason) == (want, reason)


def test_labels_that_do_not_match_the_classes_are_a_stale_card():
    with pytest.raises(BadInput, match="the model card beside digits.h5 lists 3 labels but the model outputs 10"):
        resolve(info(), card(labels=["a", "b", "c"]), Recipe(), model_name="digits.h5")


def test_class_and_binary_outputs_follow_the_task_and_the_activations():
    two = info(outputs=(("digit", (None, 10)), ("odd", (None, 1)), ("style", (None, 4))),
               activations={"odd": "sigmoid", "style": "softmax"})
    m = metadata_for(two, None, None, "classification")
    assert m.class_outputs == {"digit", "style"} and m.binary_outputs == {"odd"}
    assert [t.kind for t in m.outputs] == ["logits", None, None]  # digit's activation unknown: its scores are logits
    assert metadata_for(two, None, None, "regression").class_outputs == {"style"}


def _meta(i: ModelInfo, task="classification"):
    return metadata_for(i, None, None, task)


def test_each_labelled_output_gets_its_metric_and_the_input_is_left_alone():
    two = info(outputs=(("digit", (None, 10)), ("odd", (None, 1))), activations={"odd": "sigmoid"})
    meta = _meta(two)
    ev = Dataset({"in0": np.zeros((4, 8, 8, 1), np.float32)}, y=np.array([1, 2, 3, 4]), source="ev.npz",
                 extra_y={"odd": np.array([1, 0, 1, 0])})
    s = choose_metrics(two, meta, ev)
    assert s.metadata.scored == {"digit": "accuracy", "odd": "binary_accuracy"} and meta.scored == {}
    assert set(s.labels_by_output) == {"digit", "odd"} and s.task_reason is None and not s.warnings


def test_labels_for_an_output_the_model_lacks_name_the_outputs():
    ev = Dataset({"in0": np.zeros((2, 8, 8, 1), np.float32)}, source="ev.npz", extra_y={"note": np.zeros(2)})
    with pytest.raises(BadInput, match=r"labels for \['note'\], which are not outputs of the model \(outputs: probs\)"):
        choose_metrics(info(), _meta(info()), ev)


def test_unnamed_labels_that_fit_two_outputs_are_refused_naming_both():
    twins = info(outputs=(("note", (None, 88)), ("onset", (None, 88))), activations={"note": "sigmoid",
                                                                                     "onset": "sigmoid"},
                 task="binary")
    ev = Dataset({"in0": np.zeros((3, 8, 8, 1), np.float32)}, y=np.zeros((3, 88)), source="ev.npz")
    with pytest.raises(BadInput, match="fit outputs 'note' .* and 'onset'") as e:
        choose_metrics(twins, _meta(twins, "binary"), ev)
    assert "y_note or y_onset" in e.value.fix


def test_a_model_that_does_not_say_its_task_takes_it_from_the_labels_with_a_warning():
    linear = info(inputs=((None, 3),), outputs=(("y", (None, 1)),), activations={}, task=None,
                  reason="no loss saved and a linear last layer")
    ev = Dataset({"in0": np.zeros((5, 3), np.float32)}, y=np.array([0.5, 1.7, 2.2, 3.9, 10.0]), source="ev.npz")
    s = choose_metrics(linear, _meta(linear, None), ev)
    assert (s.metadata.task, s.task_reason) == ("regression", "the evaluation labels")
    assert s.metadata.scored == {"y": "mae"} and s.metadata.outputs[0].kind == "values"
    assert s.warnings == ("no loss saved and a linear last layer: output 'y' is taken as regression from the "
                          "evaluation labels; pass --task to choose",)


def test_deciding_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, edgekeras.compress.decide, edgekeras.compress.recipe, edgekeras.modes; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr



def test_the_next_steps_are_the_ones_not_taken_yet_at_most_three():
    from edgekeras.compress.decide import next_steps
    from edgekeras.compress.recipe import Techniques

    plain = Recipe(modes=["float32", "int8"])
    steps = next_steps(plain, {"source": "synthetic", "samples": 100, "synthetic": True}, [])
    assert steps.startswith("Next: check on labelled data with --eval") and steps.count("; or ") == 2
    assert "calibrate on real inputs" in steps and "--max-accuracy-drop 1" in steps
    few = next_steps(Recipe(modes=["int8"], eval="given"), {"samples": 50, "synthetic": False}, ["features"])
    assert few.startswith("Next: calibrate on more samples (it used 50; --calib-samples); or --float-io")
    done = Recipe(modes=["float32", "int8", "int16x8"], eval="given", max_accuracy_drop=1.0,
                  techniques=Techniques(qat=True))
    assert next_steps(done, {"samples": 200, "synthetic": False}, []) == ""


def test_a_warning_is_out_before_the_error_that_follows_it():
    said = []
    mobilenet = info(inputs=((None, 32, 32, 3),), outputs=(("probs", (None, 10)),),
                     hint={"preset": "signed", "application": "MobileNetV2"})
    with pytest.raises(BadInput, match="lists 3 labels"):
        resolve(mobilenet, card(labels=["a", "b", "c"]), Recipe(preprocess="caffe"), model_name="m.h5",
                warn=said.append)
    assert len(said) == 1 and "MobileNetV2" in said[0]
