"""`edgekeras android-bundle` and `edgekeras android-golden` on the committed test models, and their bad inputs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edgekeras.cli.android  # noqa: F401  (registers the android commands until cli/__init__ imports it)
from edgekeras import cli
from edgekeras.android import APP_FILES
from edgekeras.card import ModelCard, card_path
from edgekeras import preprocess as pp
from edgekeras.runtime.session import open_session

DEMO = Path(__file__).resolve().parents[2] / "android_demo"
MODELS = DEMO / "testdata" / "models"
ASSET_NAMES = {"model.tflite", "model.tflite.edgekeras.json", "labels.txt", "bundle.json"}


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) with its sha256."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in folder.rglob("*")}


@pytest.fixture
def app(tmp_path) -> Path:
    """A copy of android_demo's marker files (the real app is never written by tests)."""
    dest = tmp_path / "android_demo"
    for f in APP_FILES:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEMO / f, dest / f)
    return dest


def copy_model(name: str, folder: Path, card: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MODELS / name, folder / name)
    if card:
        shutil.copyfile(card_path(MODELS / name), card_path(folder / name))
    return folder / name


def edit_card(model: Path, change) -> None:
    path = card_path(model)
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def test_bundle_copies_the_model_its_card_and_labels_and_a_second_bundle_replaces_them(app, tmp_path):
    model = copy_model("rgb.int8.tflite", tmp_path / "m")
    r = invoke("android-bundle", model, "--app", app)
    assert r.exit_code == 0, r.output
    assert "int8: 12x16 RGB image (RGB order), int8 input (scale 0.00784314, zero point -1)" in r.output
    assets = app / "app" / "src" / "main" / "assets"
    assert set(snapshot(assets)) == ASSET_NAMES  # no staging folder left
    assert (assets / "model.tflite").read_bytes() == model.read_bytes()
    assert (assets / "model.tflite.edgekeras.json").read_bytes() == card_path(model).read_bytes()
    assert (assets / "labels.txt").read_text() == "red\ngreen\nblue\n"
    info = json.loads((assets / "bundle.json").read_text())
    assert info["source"] == "rgb.int8.tflite" and info["mode"] == "int8" and info["labels"] == 3
    assert info["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()

    gray = copy_model("gray.float32.tflite", tmp_path / "g")
    r = invoke("android-bundle", gray, "--app", app)
    assert r.exit_code == 0, r.output
    assert "float32: 10x14 grayscale image, float32 input, preprocessing 'unit', 3 classes" in r.output
    assert set(snapshot(assets)) == ASSET_NAMES
    assert (assets / "model.tflite").read_bytes() == gray.read_bytes()
    assert (assets / "labels.txt").read_text() == "dark\nlight\nstriped\n"


def _no_card(m):
    card_path(m).unlink()


def _stale(m):
    m.write_bytes(m.read_bytes() + b"\0")


BAD_MODELS = [
    ("no card", _no_card, "has no model card (rgb.int8.tflite.edgekeras.json is missing)", "edgekeras compress"),
    ("stale card", _stale, "does not describe it", "regenerate the file and its card together"),
    ("schema", lambda m: edit_card(m, lambda d: d.update(mode="int4")), "not a valid edgekeras model-card",
     "regenerate it"),
    ("not an image", lambda m: edit_card(m, lambda d: d.update(preprocessing=None)),
     "its card describes no image preprocessing (preprocessing missing)", "image preprocessing preset"),
    ("vector input", lambda m: edit_card(m, lambda d: d["inputs"][0].update(shape=[None, 576])),
     "not an image (batch, height, width, 1 or 3 channels)", "image classifiers"),
    ("no labels", lambda m: edit_card(m, lambda d: d.update(labels=None)), "has no labels", "class names"),
    ("label count", lambda m: edit_card(m, lambda d: d.update(labels=["red", "green"])),
     "has 2 labels (one score per label expected)", "image classifiers"),
    ("kind", lambda m: edit_card(m, lambda d: d["outputs"][0].update(kind=None)),
     "holds probabilities or logits (outputs[].kind is null)", "records outputs[].kind"),
    ("rounding", lambda m: edit_card(m, lambda d: d["rounding"].update(mode="half_away_from_zero")),
     "rounding: {'mode': 'half_away_from_zero'", "regenerate it with edgekeras"),
    ("not tflite", lambda m: _renamed(m, ".onnx"), "rgb.int8.onnx is not a .tflite file", "the .tflite file"),
    ("missing", lambda m: m.with_name("nothing.tflite"), "nothing.tflite does not exist", None),
]


def _renamed(m, suffix):
    new = m.with_name(m.stem + suffix)
    m.rename(new)
    card_path(m).rename(card_path(new))
    return new


@pytest.mark.parametrize("name, damage, message, fix", BAD_MODELS, ids=[b[0] for b in BAD_MODELS])
def test_bundle_refuses_bad_models_and_leaves_the_assets_as_they_were(app, tmp_path, name, damage, message, fix):
    assert invoke("android-bundle", copy_model("gray.int8.tflite", tmp_path / "good"), "--app", app).exit_code == 0
    assets = app / "app" / "src" / "main" / "assets"
    before = snapshot(assets)
    model = copy_model("rgb.int8.tflite", tmp_path / "bad")
    model = damage(model) or model
    try:
        r = invoke("android-bundle", model, "--app", app)
    finally:
        shutil.rmtree(tmp_path / "bad")  # one of these cards breaks the schema on purpose (conftest checks them all)
    assert r.exit_code == 1, r.output
    assert message in r.output
    if fix:
        assert "How to fix:" in r.output and fix in r.output
    assert "Traceback" not in r.output
    assert snapshot(assets) == before


def test_bundle_refuses_a_folder_that_is_not_the_android_demo(tmp_path):
    model = copy_model("rgb.int8.tflite", tmp_path / "m")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "settings.gradle").write_text("rootProject.name = 'x'\n")
    for app, message in ((tmp_path / "missing", "does not exist"),
                         (tmp_path / "other", "is not an android_demo folder: app/build.gradle, "
                                              "app/src/main/AndroidManifest.xml missing")):
        r = invoke("android-bundle", model, "--app", app)
        assert r.exit_code == 1, r.output
        assert message in r.output and "How to fix: pass --app with the path of edgekeras' android_demo" in r.output
    foreign = tmp_path / "foreign"
    for f in APP_FILES:
        (foreign / f).parent.mkdir(parents=True, exist_ok=True)
        (foreign / f).write_text("namespace 'com.example.other'\n")
    r = invoke("android-bundle", model, "--app", foreign)
    assert r.exit_code == 1 and "not edgekeras' android_demo" in r.output
    assert snapshot(foreign / "app" / "src" / "main" / "assets") == {}


def test_golden_holds_the_tensors_and_outputs_the_python_runtime_makes(tmp_path):
    model = MODELS / "rgb.int8.tflite"
    out = tmp_path / "golden"
    r = invoke("android-golden", model, "-o", out)
    assert r.exit_code == 0, r.output
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == "edgekeras.android-golden" and index["version"] == 1 and index["top_k"] == 3
    card = ModelCard.read(card_path(model))
    assert (out / index["card"]).read_bytes() == card_path(model).read_bytes()
    names = [c["name"] for c in index["cases"]]
    assert names[:7] == ["boundary", "same_size", "downscale", "upscale", "double", "strip", "rgba"]
    by_name = {c["name"]: c for c in index["cases"]}
    assert not by_name["boundary"]["resized"] and by_name["downscale"]["resized"]
    assert (by_name["downscale"]["height"], by_name["downscale"]["width"]) == (27, 47)
    assert by_name["strip"]["height"] == 1 and by_name["rgba"]["alpha"]
    # the boundary image: 3/4 of its pixels have every channel exactly on a tie, the others are on or next to one
    assert by_name["boundary"]["ties"] >= 12 * 16 * 3 * 3 // 4
    assert by_name["boundary"]["ties"] + by_name["boundary"]["near_ties"] == 12 * 16 * 3
    session = open_session(model)
    q = card.inputs[0].quantization
    for c in index["cases"]:
        x = pp.preprocess_image(out / c["image"], card.preprocessing)[None]
        want = pp.quantize(x, np.int8, q)
        got = np.fromfile(out / c["input"]["file"], dtype="<i1").reshape(c["input"]["shape"])
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.fromfile(out / c["input_float"]["file"], dtype="<f4").reshape(x.shape), x)
        raw = np.fromfile(out / c["output"]["file"], dtype="<i1").reshape(c["output"]["shape"])
        np.testing.assert_array_equal(raw, session.run_raw({"image": want})["probs"])
        probs = session.run(x)["probs"][0]
        order = sorted(range(3), key=lambda i: (-probs[i], i))
        assert [t["index"] for t in c["top_k"]] == order
        assert [t["score"] for t in c["top_k"]] == pytest.approx([float(probs[i]) for i in order], abs=0)
    for colour in ("red", "green", "blue"):
        assert by_name[f"solid_{colour}"]["top_k"][0]["label"] == colour
    assert {v["name"] for v in index["variants"]} == {"raw", "unit", "imagenet", "caffe"}
    caffe = next(v for v in index["variants"] if v["name"] == "caffe")
    assert caffe["preprocessing"]["channel_order"] == "bgr" and caffe["input"]["quantization"]["zero_point"] == -13

    r = invoke("android-golden", model, "-o", out)
    assert r.exit_code == 1 and "already exists" in r.output and "--force" in r.output
    assert invoke("android-golden", model, "-o", out, "--force").exit_code == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_golden_of_a_float_model_has_no_quantized_inputs(tmp_path):
    r = invoke("android-golden", MODELS / "gray.float32.tflite", "-o", tmp_path / "g", "--top-k", "2")
    assert r.exit_code == 0, r.output
    index = json.loads((tmp_path / "g" / "index.json").read_text())
    assert "boundary" not in [c["name"] for c in index["cases"]]
    assert all(c["input"]["dtype"] == "float32" and len(c["top_k"]) == 2 for c in index["cases"])
    assert {v["name"] for v in index["variants"]} == {"raw", "signed"}  # one-value presets only
    assert all(v["input"]["quantization"] is None for v in index["variants"])


def test_golden_and_bundle_refuse_a_card_whose_tensors_differ_from_the_file(tmp_path, app):
    model = copy_model("rgb.int8.tflite", tmp_path / "m")
    edit_card(model, lambda d: d["inputs"][0]["quantization"].update(zero_point=0))
    for args in (["android-golden", model, "-o", tmp_path / "g"], ["android-bundle", model, "--app", app]):
        r = invoke(*args)
        assert r.exit_code == 1
        assert "describes input 'image' as int8 (N, 12, 16, 3) (scale 0.007843137718737125, zero point 0), but " \
               "LiteRT reads int8 (N, 12, 16, 3) (scale 0.007843137718737125, zero point -1)" in r.output
    assert not (tmp_path / "g").exists()
    assert not (app / "app" / "src" / "main" / "assets").exists()


def test_the_android_commands_do_not_import_tensorflow(tmp_path, app):
    code = ("import sys\nimport edgekeras.cli.android\nfrom edgekeras.cli import main\n"
            "for args in (['android-golden', sys.argv[1], '-o', sys.argv[2]], "
            "['android-bundle', sys.argv[1], '--app', sys.argv[3]]):\n"
            "    try:\n        main(args)\n    except SystemExit as e:\n        assert not e.code, e.code\n"
            "print('HEAVY', [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code, str(MODELS / "gray.int8.tflite"), str(tmp_path / "g"), str(app)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout, p.stdout
