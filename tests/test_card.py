"""The model card: JSON round trip, versioning, and errors on files that are not cards."""

from __future__ import annotations

import json

import pytest

from edgekeras import BadInput, ModelCard
from edgekeras.card import (SCHEMA_VERSION, Accuracy, OutputParity, Parity, Preprocessing, Quantization, Step,
                            TensorSpec, card_path)


def make_card() -> ModelCard:
    return ModelCard(
        file="m.int8.tflite", format="tflite", mode="int8",
        inputs=[TensorSpec("image", [None, 8, 8, 1], "int8", Quantization(0.5, -128))],
        outputs=[TensorSpec("probs", [None, 10], "int8", Quantization(1 / 256, -128))],
        preprocessing=Preprocessing.preset("raw", [8, 8]), labels=list("0123456789"), task="classification",
        steps=[Step("convert", {"mode": "int8"})], size={"bytes": 10, "gzip_bytes": 9},
        parity=Parity("keras", "litert", "xnnpack", 5, "eval.npz", "top-1", True,
                      {"probs": OutputParity(0.1, 0.01, 1.0)}),
        accuracy=Accuracy("accuracy", 0.97, 0.98, 5, "eval.npz"))


def test_round_trip(tmp_path):
    card = make_card()
    path = card.write(tmp_path / "m.int8.tflite.edgekeras.json")
    back = ModelCard.read(path)
    assert back == card
    raw = json.loads(path.read_text())
    assert list(raw)[:2] == ["schema", "schema_version"] and raw["schema_version"] == SCHEMA_VERSION
    assert raw["producer"]["edgekeras"]


def test_card_path_keeps_the_extension():
    assert str(card_path("out/m.int8.tflite")) == "out/m.int8.tflite.edgekeras.json"
    assert card_path("m.onnx") != card_path("m.tflite")


def test_newer_schema_is_refused(tmp_path):
    d = make_card().to_dict()
    d["schema_version"] = SCHEMA_VERSION + 1
    p = tmp_path / "c.json"
    p.write_text(json.dumps(d))
    with pytest.raises(BadInput, match="upgrade edgekeras"):
        ModelCard.read(p)


@pytest.mark.parametrize("text,phrase", [("{not json", "not valid JSON"), ('{"a": 1}', "not an edgekeras model card"),
                                         ('{"schema": "edgekeras.model-card", "schema_version": 1}', "incomplete")])
def test_not_a_card(tmp_path, text, phrase):
    p = tmp_path / "c.json"
    p.write_text(text)
    with pytest.raises(BadInput, match=phrase):
        ModelCard.read(p)


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(BadInput, match="valid: raw, unit, signed, imagenet, caffe, identity"):
        Preprocessing.preset("zscore")


def test_find_returns_none_without_a_card(tmp_path):
    assert ModelCard.find(tmp_path / "model.h5") is None
