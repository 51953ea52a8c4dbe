"""Where a file's ops run: XNNPACK partitions and the ops LiteRT runs outside them (an int8 PReLU splits the graph),
in the card, the compress output and bench's explanation of an int8 file slower than its float32 twin."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgekeras import ModelCard, cli
from edgekeras.runtime import open_session
from edgekeras.runtime.bench import BenchReport, FileResult, findings

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def prelu_run(tmp_path_factory, keras):
    folder = tmp_path_factory.mktemp("prelu")
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for i in range(2):
        x = keras.layers.Conv2D(8, 3, name=f"conv{i}")(x)
        x = keras.layers.PReLU(shared_axes=[1, 2], name=f"prelu{i}")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x)).save(folder / "face.h5")
    np.save(folder / "calib.npy", RNG.uniform(0, 255, (40, 16, 16, 3)).astype(np.float32))
    result = CliRunner().invoke(cli.main, ["compress", str(folder / "face.h5"), "--int8", "--calib",
                                           str(folder / "calib.npy"), "--accept-parity-failures", "-o",
                                           str(folder / "out")])
    assert result.exit_code == 0, result.output
    return folder / "out", result.output


def test_the_card_names_the_ops_outside_xnnpack(prelu_run):
    out, text = prelu_run
    i8 = ModelCard.read(out / "face.int8.tflite.edgekeras.json").delegation
    f32 = ModelCard.read(out / "face.float32.tflite.edgekeras.json").delegation
    assert f32["partitions"] == 1 and f32["outside"] == [] and f32["delegated_ops"] == f32["ops"]
    prelus = [op for op in i8["outside"] if op.startswith("PRELU (")]
    assert len(prelus) == 2 and i8["partitions"] >= 2 and i8["delegated_ops"] == i8["ops"] - len(i8["outside"])
    assert "kernels: face.int8.tflite runs in" in text and "PRELU x2" in text
    assert "face.float32.tflite runs in" not in text  # one partition: nothing to say
    # the session reports what the card recorded
    assert open_session(out / "face.int8.tflite").delegation() == i8


def _result(name, mode, mean, delegation=None):
    return FileResult(file=name, path=name, format="tflite", mode=mode, runtime="litert", kernels="xnnpack", threads=1,
                      runs=10, warmup=1, rounds=1, init_ms=1.0, first_ms=1.0, warmup_ms=mean, min_ms=mean,
                      mean_ms=mean, p50_ms=mean, p90_ms=mean, p99_ms=mean, max_ms=mean, std_ms=0.0,
                      throughput_per_s=1000 / mean, cpu_ms=mean, peak_rss_mb=50.0, idle_rss_mb=30.0,
                      rss_increase_mb=20.0, size_bytes=2000, size_gz_bytes=1000, delegation=delegation)


@pytest.mark.parametrize("vnni", [True, False])
def test_an_int8_file_slower_than_float32_is_explained_by_what_was_measured(prelu_run, vnni):
    out, _ = prelu_run
    deleg = {m: ModelCard.read(out / f"face.{m}.tflite.edgekeras.json").delegation for m in ("float32", "int8")}
    cpu = {"name": "Test CPU", "features": ["AVX2"] + (["AVX-512 VNNI"] if vnni else []),
           "int8_features": ["AVX-512 VNNI"] if vnni else [], "int8_note": "x"}
    split = BenchReport(files=[_result("f.float32.tflite", "float32", 1.0, deleg["float32"]),
                               _result("f.int8.tflite", "int8", 2.5, deleg["int8"])], cpu=cpu, target="local",
                        settings={})
    text = " ".join(findings(split, [None, None]))
    assert "int8 is slower than float32" in text and "op(s) run outside XNNPACK (PRELU x2" in text
    assert "XNNPACK partitions" in text and "PReLU -> ReLU" in text
    whole = BenchReport(files=[_result("f.float32.tflite", "float32", 1.0, deleg["float32"]),
                               _result("f.int8.tflite", "int8", 1.2, deleg["float32"])], cpu=cpu, target="local",
                        settings={})
    text = " ".join(findings(whole, [None, None]))
    assert "int8 is slower than float32" in text and "outside XNNPACK" not in text
    assert "faster than float32 here" not in text  # never "slower" and "faster" about the same file
    assert ("fixed per-invoke costs" in text) if vnni else ("no int8 dot-product instructions" in text)


def test_a_graph_xnnpack_refuses_only_at_its_first_invoke_runs_on_the_builtin_kernels(prelu_run, monkeypatch):
    """XNNPACK accepted a trained int8 LSTM of the zoo when the file was opened and failed to prepare it at the
    first invoke ("failed to create XNNPACK runtime"). That is XNNPACK refusing the graph, not a kernel refusing a
    sample: the session and bench's harness run it on LiteRT's builtin kernels, as when XNNPACK refuses at
    opening. (Which graphs XNNPACK refuses late depends on their trained scales: the refusal is simulated here.)"""
    from edgekeras.runtime import measure, session

    out, _ = prelu_run
    path = out / "face.int8.tflite"
    refusal = RuntimeError("failed to create XNNPACK runtimeNode number 402 (TfLiteXNNPackDelegate) failed to "
                           "prepare.")
    real_open = session.LiteRTSession._open

    def opened(self, kernels):
        real_open(self, kernels)
        if kernels == "xnnpack":
            def refuse(**feeds):
                raise refusal
            self._runner = refuse

    monkeypatch.setattr(session.LiteRTSession, "_open", opened)
    s = open_session(path)
    assert s.kernels == "xnnpack"
    out_probs = s.run(RNG.uniform(0, 255, (3, 16, 16, 3)).astype(np.float32))["probs"]
    assert s.kernels == "builtin" and "XNNPACK refused the graph" in s.note and out_probs.shape == (3, 3)

    real_invoker = measure._LiteRT.invoker

    def invoker(self):
        if self.kernels == "xnnpack":
            def refuse():
                raise refusal
            return refuse
        return real_invoker(self)

    monkeypatch.setattr(measure._LiteRT, "invoker", invoker)
    result = measure.measure(path, threads=1, runs=3, warmup=1)
    assert result["kernels"] == "builtin" and "at its first invoke" in result["note"] and result["latencies_ms"]
    assert measure.open_for_timing(path, 1).kernels == "builtin"
