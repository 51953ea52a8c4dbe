"""The model card: JSON round trip, unknown fields kept, versions, the shipped schema, errors on non-cards."""

from __future__ import annotations

import json
import logging

import pytest

from edgekeras import BadInput, ModelCard
from edgekeras.card import (ROUNDING, SCHEMA_VERSION, Accuracy, OutputParity, Parity, Preprocessing, Quantization,
                            Step, TensorSpec, card_path, check_card_matches, sha256_file, validate)


def make_card() -> ModelCard:
    return ModelCard(
        file="m.int8.tflite", format="tflite", mode="int8", sha256="0" * 64,
        inputs=[TensorSpec("image", [None, 8, 8, 1], "int8", Quantization(0.5, -128))],
        outputs=[TensorSpec("probs", [None, 10], "int8", Quantization(1 / 256, -128), kind="probabilities")],
        preprocessing=Preprocessing.preset("raw", [8, 8], channels=1), rounding=dict(ROUNDING),
        labels=list("0123456789"), labels_output="probs", task="classification",
        steps=[Step("convert", {"mode": "int8"})], size={"bytes": 10, "gzip_bytes": 9},
        parity=Parity("keras", "litert", "xnnpack", 5, "eval.npz", "top-1", True,
                      {"probs": OutputParity(0.1, 0.01, 1.0, ties=0, spread_ratio=0.98)}),
        accuracy=Accuracy("accuracy", 0.97, 0.98, 5, "eval.npz", output="probs"))


def test_round_trip_and_schema(tmp_path):
    card = make_card()
    path = card.write(tmp_path / "m.int8.tflite.edgekeras.json")
    back = ModelCard.read(path)
    assert back == card
    raw = json.loads(path.read_text())
    assert list(raw)[:2] == ["schema", "schema_version"] and raw["schema_version"] == SCHEMA_VERSION
    assert raw["producer"]["edgekeras"]
    validate(raw, "model-card")


def test_unknown_fields_survive_read_and_write(tmp_path):
    d = make_card().to_dict()
    d["deployment"] = {"target": "pixel-8", "notes": [1, 2]}  # a field a newer edgekeras (or a user) added
    d["inputs"][0]["layout"] = "NHWC"  # unknown nested keys, at several depths
    d["inputs"][0]["quantization"]["axis"] = None
    d["parity"]["outputs"]["probs"]["kl_divergence"] = 0.01
    d["steps"][0]["duration_s"] = 1.5
    src = tmp_path / "in.json"
    src.write_text(json.dumps(d))
    card = ModelCard.read(src)
    assert card.inputs[0].quantization.scale == 0.5
    out = card.write(tmp_path / "out.json")
    assert json.loads(out.read_text()) == {**d, "producer": card.producer}


def test_newer_schema_is_read_with_a_warning(tmp_path, caplog):
    d = make_card().to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    d["new_section"] = {"x": 1}
    p = tmp_path / "c.json"
    p.write_text(json.dumps(d))
    with caplog.at_level(logging.WARNING, logger="edgekeras"):
        card = ModelCard.read(p)
    assert card.file == "m.int8.tflite" and card.extra["new_section"] == {"x": 1}
    assert "newer than this edgekeras" in caplog.text and "upgrade edgekeras" in caplog.text


@pytest.mark.no_schema_check
def test_version_1_cards_are_upgraded(tmp_path):
    v1 = {"schema": "edgekeras.model-card", "schema_version": 1, "file": "m.h5", "format": "keras-h5",
          "mode": "float32", "inputs": [{"name": "image", "shape": [None, 8, 8, 1], "dtype": "float32",
                                         "quantization": None}],
          "outputs": [{"name": "probs", "shape": [None, 10], "dtype": "float32", "quantization": None}],
          "preprocessing": {"name": "raw", "mean": [0.0], "std": [1.0], "channel_order": "rgb",
                            "input_range": [0.0, 255.0], "image_size": [8, 8], "description": "raw"},
          "labels": list("0123456789"), "task": "classification", "steps": [], "size": {"bytes": 3},
          "parity": None, "accuracy": None, "float_ops": [], "warnings": [], "producer": {}}
    p = tmp_path / "m.h5.edgekeras.json"
    p.write_text(json.dumps(v1))
    card = ModelCard.read(p)
    assert card.labels_output == "probs" and card.preprocessing.name == "raw"
    assert card.labelled_output().name == "probs"


def test_card_path_keeps_the_extension():
    assert str(card_path("out/m.int8.tflite")) == "out/m.int8.tflite.edgekeras.json"
    assert card_path("m.onnx") != card_path("m.tflite")


@pytest.mark.parametrize("text,phrase", [("{not json", "not valid JSON"), ('{"a": 1}', "not an edgekeras model card"),
                                         ('{"schema": "edgekeras.model-card", "schema_version": 2}', "incomplete"),
                                         ('{"schema": "edgekeras.model-card", "schema_version": "2"}', "invalid")])
def test_not_a_card(tmp_path, text, phrase):
    p = tmp_path / "c.json"
    p.write_text(text)
    with pytest.raises(BadInput, match=phrase):
        ModelCard.read(p)


@pytest.mark.parametrize("field,value,phrase", [
    ("labels", "0123456789", "labels: expected a list"),  # a reader would take characters for labels
    ("mode", 8, "mode: expected a string"),
    ("size", {"bytes": "10"}, "size: expected an object"),
])
def test_reading_checks_the_type_of_every_field(tmp_path, field, value, phrase):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({**make_card().to_dict(), field: value}))
    with pytest.raises(BadInput, match=phrase):
        ModelCard.read(p)
    d = make_card().to_dict()
    d["inputs"][0]["shape"] = [None, "8", 8, 1]
    p.write_text(json.dumps(d))
    with pytest.raises(BadInput, match=r"inputs\[0\]\.shape: expected a list"):
        ModelCard.read(p)


def test_schema_rejects_what_a_reader_could_not_use():
    d = make_card().to_dict()
    d["inputs"][0]["quantization"]["scale"] = 0
    d["preprocessing"]["resize"] = None  # an image model must say how to resize
    d["sha256"] = "abc"
    with pytest.raises(BadInput) as e:
        validate(d, "model-card")
    text = str(e.value)
    assert "inputs/0/quantization" in text and "sha256" in text and "preprocessing" in text


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(BadInput, match="valid: raw, unit, signed, imagenet, caffe, identity"):
        Preprocessing.preset("zscore")


@pytest.mark.parametrize("preset", ["imagenet", "caffe"])
def test_grayscale_model_with_a_three_value_preset_names_the_channels(preset):
    with pytest.raises(BadInput, match="1 channel") as e:
        Preprocessing.preset(preset, [28, 28], channels=1)
    assert "raw, unit or signed" in str(e.value)


def test_image_presets_say_exactly_how_to_feed():
    p = Preprocessing.preset("caffe", [224, 224], channels=3)
    assert p.color == "rgb" and p.channel_order == "bgr" and p.resize["antialias"] is False
    assert p.resize["method"] == "bilinear" and p.grayscale is None and p.image_size == [224, 224]
    g = Preprocessing.preset("unit", [8, 8], channels=1)
    assert g.color == "grayscale" and g.channel_order is None and "0.299" in g.grayscale


def test_a_card_is_checked_against_its_file(tmp_path):
    f = tmp_path / "m.tflite"
    f.write_bytes(b"abc")
    card = make_card()
    card.sha256 = sha256_file(f)
    check_card_matches(card, f)
    f.write_bytes(b"abd")
    with pytest.raises(BadInput, match="stale or swapped"):
        check_card_matches(card, f)


def test_find_returns_none_without_a_card(tmp_path):
    assert ModelCard.find(tmp_path / "model.h5") is None
