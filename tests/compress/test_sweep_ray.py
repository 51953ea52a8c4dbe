"""edgekeras sweep --ray: the configs as tasks on a Ray cluster, committed on the driver as a local run commits them.

The tests without a cluster (the default run) check what happens before any task: Ray never imported without
--ray, a missing Ray named with its extra, settings refused, the packing and the commit. The `slow` tests start a
real two-node cluster on loopback (`ray start --head` on 127.0.0.1 plus a second node joined to it, each with its
own temporary folder), sweep through it, compare with the same sweep run here, and stop one node mid-sweep."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekeras import BadInput, MissingDependency
from edgekeras.compress.cluster import INSTALL, Bundle, Packed, commit, rewrite
from edgekeras.compress.sweep import sweep
from conftest import sha256

CONFIGS = ["float16", "int8"]  # with the float32 baseline: a 3-config sweep
NO_RAY = "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed: `import ray` raises


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, **kw)


# -- without a cluster ---------------------------------------------------------------------------------------------
def test_edgekeras_never_imports_ray_without_ray():
    r = _python("import sys\nimport edgekeras, edgekeras.cli, edgekeras.compress.sweep, edgekeras.cli.sweep\n"
                "from edgekeras.compress.sweep import sweep\n"
                "print('ray' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_sweep_help_without_ray_installed_names_the_extra():
    r = _python(NO_RAY + "from edgekeras.cli import main\nmain(['sweep', '--help'])")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "--ray [ADDRESS]" in text and 'pip install "edgekeras[ray]"' in text


def test_a_missing_ray_is_named_with_its_install_command_before_anything_is_written(digits_model, tmp_path):
    out = tmp_path / "sweep"
    code = NO_RAY + ("from edgekeras.cli import main\n"
                     f"main(['sweep', {str(digits_model['model'])!r}, '--eval', {str(digits_model['eval'])!r}, "
                     f"'--configs', 'int8', '-o', {str(out)!r}, '--ray'])")
    r = _python(code)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "needs the package ray" in r.stderr and f"How to fix: {INSTALL}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_a_model_path_taken_as_the_address_is_named_before_click_asks_for_the_model(digits_model, tmp_path):
    from click.testing import CliRunner

    from edgekeras import cli

    r = CliRunner().invoke(cli.main, ["sweep", "--ray", str(digits_model["model"]), "--eval",
                                      str(digits_model["eval"]), "-o", str(tmp_path / "s")])
    assert r.exit_code == 2 and "Missing argument" not in r.output
    assert "was taken as the Ray cluster's address, and it is a file" in r.output
    assert "How to fix: pass --ray alone (same as --ray auto, and then after MODEL)" in r.output
    assert not (tmp_path / "s").exists()


def test_the_python_api_raises_missing_dependency(digits_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependency) as e:
        sweep(digits_model["model"], data=None, eval=digits_model["eval"], output_dir=tmp_path / "s",
              configs=["int8"], ray="auto")
    assert e.value.package == "ray" and INSTALL in e.value.fix
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("kw, words", [
    (dict(config_cpus=2), "need ray="),
    (dict(config_gpus=1), "need ray="),
    (dict(ray="auto", config_cpus=0), "config_cpus must be a number of CPUs above 0"),
    (dict(ray="auto", config_gpus=-1), "config_gpus must be a number of GPUs"),
    (dict(ray=""), "ray must be a cluster address or 'auto'"),
    (dict(ray="auto", calib=lambda: iter([])), "cannot be sent to the cluster's nodes"),
])
def test_bad_cluster_settings_are_refused_before_any_run(kw, words, digits_model, tmp_path):
    pytest.importorskip("ray")
    args = dict(data=None, eval=digits_model["eval"], calib=digits_model["calib"], output_dir=tmp_path / "s",
                configs=["int8"])
    with pytest.raises(BadInput) as e:
        sweep(digits_model["model"], **{**args, **kw})
    assert words in e.value.message
    assert not (tmp_path / "s").exists()


def test_a_model_in_memory_is_refused_on_ray_with_the_fix(tmp_path, digits_model):
    pytest.importorskip("ray")
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(BadInput) as e:
        sweep(model, data=None, eval=(np.zeros((8, 4), "float32"), np.zeros(8, "int64")), output_dir=tmp_path,
              configs=["float16"], ray="auto")
    assert "not a model in memory" in e.value.message and "model.save(" in e.value.fix


def test_packing_keeps_names_and_folders(tmp_path):
    folder = tmp_path / "saved model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x00graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    model = tmp_path / "m.h5"
    model.write_bytes(b"h5 bytes")
    (tmp_path / "m.h5.edgekeras.json").write_text("{}")
    x = np.arange(6, dtype="float32").reshape(3, 2)
    bundle = Bundle.of(model, {"eval": folder, "calib": x, "data": (x, np.ones(3)), "val": None})
    assert bundle.card is not None and bundle.card.name == "m.h5.edgekeras.json"
    assert set(bundle.sources) == {"eval", "calib", "data"} and bundle.sources["calib"] is x
    there = bundle.sources["eval"].unpack(tmp_path / "node")
    assert there.name == "saved model"
    assert (there / "variables" / "variables.index").read_bytes() == b"index"
    assert (there / "saved_model.pb").read_bytes() == b"\x00graph"
    assert Packed.of(model).unpack(tmp_path / "node2").read_bytes() == b"h5 bytes"
    (tmp_path / "m.h5.edgekeras.json").unlink()  # a stand-in, not a real card: out of the session's schema check


@pytest.mark.no_schema_check
def test_commit_writes_the_drivers_paths_and_the_report_last(tmp_path):
    node_out, node_eval = "/tmp/edgekeras-ray-x1/out/int8", "/tmp/edgekeras-ray-x1/data0/test.npz"
    report = {"model": "/tmp/edgekeras-ray-x1/model/m.h5", "output_dir": node_out,
              "report": f"{node_out}/m.report.json",
              "source": {"name": "/tmp/edgekeras-ray-x1/model/m.h5"},
              "recipe": {"eval": node_eval, "output_dir": node_out},
              "warnings": [f"something about {node_eval}"]}
    card = {"file": "m.int8.tflite", "steps": [{"data": "test.npz"}]}
    result = {"files": {"m.int8.tflite": b"tflite", "m.int8.tflite.edgekeras.json": json.dumps(card).encode(),
                        "m.report.json": json.dumps(report).encode()},
              "report_name": "m.report.json",
              "paths": {"/tmp/edgekeras-ray-x1/model/m.h5": "model", node_eval: "eval", node_out: "output"}}
    folder = tmp_path / "sweep" / "int8"
    order = []
    real_replace = os.replace

    def record(src, dst):
        order.append(Path(dst).name)
        real_replace(src, dst)

    os.replace = record
    try:
        commit(result, folder, {"model": "/data/m.h5", "eval": "/data/test.npz", "output": str(folder)},
               report_path="sweep/int8/m.report.json", source_name="m.h5")
    finally:
        os.replace = real_replace
    assert order[-1] == "m.report.json"  # the mark of a finished run comes last
    d = json.loads((folder / "m.report.json").read_text())
    assert d["model"] == "/data/m.h5" and d["output_dir"] == str(folder) and d["report"] == "sweep/int8/m.report.json"
    assert d["source"]["name"] == "m.h5" and d["recipe"] == {"eval": "/data/test.npz", "output_dir": str(folder)}
    assert d["warnings"] == ["something about /data/test.npz"]
    assert (folder / "m.int8.tflite").read_bytes() == b"tflite"
    assert json.loads((folder / "m.int8.tflite.edgekeras.json").read_text()) == card  # no node path: untouched
    assert sorted(p.name for p in folder.iterdir()) == ["m.int8.tflite", "m.int8.tflite.edgekeras.json",
                                                       "m.report.json"]  # no staging folder left
    shutil.rmtree(tmp_path / "sweep")  # stand-ins, not real cards: out of the session's schema check


def test_a_node_with_other_versions_is_named_once(caplog):
    pytest.importorskip("ray")
    from edgekeras.card import producer_info
    from edgekeras.compress.cluster import Cluster

    c = Cluster("auto")  # not connected: only the check
    same = {"node": "a:1", "producer": producer_info()}
    other = {"node": "b:2", "producer": {**producer_info(), "tensorflow": "2.20.0"}}
    with caplog.at_level("WARNING", logger="edgekeras"):
        for result in (same, other, other):
            c._check_versions(result)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and said[0].startswith("node b:2 runs tensorflow 2.20.0 (here ")
    assert INSTALL in said[0]


@pytest.mark.parametrize("address, words", [
    ("model.h5", "was taken as the Ray cluster's address, and it is a file"),
    ("head", "is not a Ray cluster address"),
    ("ray://head", "is not a Ray cluster address"),
    ("head:99999", "is not a Ray cluster address"),
])
def test_addresses_of_another_form_are_refused(address, words):
    from edgekeras.compress.ray_check import check_address

    with pytest.raises(BadInput) as e:
        check_address(address)
    assert words in e.value.message and "--ray alone" in e.value.cli_fix
    assert check_address(" ray://10.0.0.1:10001 ") == "ray://10.0.0.1:10001" and check_address("auto") == "auto"


def test_an_address_nothing_answers_on_is_refused_at_once(digits_model, tmp_path):
    pytest.importorskip("ray")
    port = _free_port()  # closed again: nothing listens there
    started = time.monotonic()
    with pytest.raises(BadInput) as e:
        sweep(digits_model["model"], data=None, eval=digits_model["eval"], calib=digits_model["calib"],
              output_dir=tmp_path / "s", configs=["int8"], ray=f"127.0.0.1:{port}")
    assert time.monotonic() - started < 30
    assert f"nothing answers at 127.0.0.1:{port}" in e.value.message and "ray start --head" in e.value.fix
    from edgekeras.compress.ray_check import check_reachable

    check_reachable("auto")  # not host:port (RAY_ADDRESS may say so): left to Ray
    with pytest.raises(BadInput, match="nothing answers at ray://127.0.0.1"):
        check_reachable(f"ray://127.0.0.1:{port}")


class FakeRay:
    """The part of `ray` that `Cluster.resources` reads: the nodes and what each has."""

    def __init__(self, *nodes: dict):
        self._nodes = [{"Alive": True, "Resources": n} for n in nodes] + [{"Alive": False, "Resources": {"GPU": 8}}]

    def nodes(self):
        return self._nodes


@pytest.mark.parametrize("nodes, kw, want", [
    (({"CPU": 4}, {"CPU": 2}), dict(trains=True, config_cpus=2, config_gpus=None), {"num_cpus": 2, "num_gpus": 0}),
    (({"CPU": 4, "GPU": 1}, {"CPU": 2}), dict(trains=True, config_cpus=1, config_gpus=None),
     {"num_cpus": 1, "num_gpus": 1}),
    (({"CPU": 4, "GPU": 1},), dict(trains=False, config_cpus=1, config_gpus=None), {"num_cpus": 1, "num_gpus": 0}),
    (({"CPU": 4, "GPU": 2},), dict(trains=True, config_cpus=1, config_gpus=0.5), {"num_cpus": 1, "num_gpus": 0.5}),
    (({"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}), dict(trains=True, config_cpus=1, config_gpus=2),
     "no node of the cluster has more than 1"),
    (({"CPU": 4},), dict(trains=False, config_cpus=8, config_gpus=None), "the cluster's largest node has 4"),
])
def test_each_config_asks_for_what_a_node_can_give(nodes, kw, want):
    from edgekeras.compress.cluster import Cluster

    c = Cluster.__new__(Cluster)  # no connection: only the decision
    c.ray = FakeRay(*nodes)
    if isinstance(want, str):
        with pytest.raises(BadInput) as e:
            c.resources(**kw)
        assert want in e.value.message
    else:
        assert c.resources(**kw) == want


def test_a_node_runs_the_config_as_a_local_sweep_does(tmp_path, monkeypatch):
    """The task's body (TensorFlow-free here: compress stubbed): the bundle unpacked with its names, training data
    only for the fine-tuning configs (compress refuses them elsewhere), every file sent back, the folder removed."""
    from types import SimpleNamespace

    from edgekeras.compress import sweep as sweep_module

    model = tmp_path / "m.h5"
    model.write_bytes(b"model")
    (tmp_path / "m.h5.edgekeras.json").write_bytes(b"{}")
    np.savez(tmp_path / "train.npz", x=np.zeros((4, 2)), y=np.zeros(4))
    bundle = Bundle.of(model, {"eval": tmp_path / "train.npz", "data": tmp_path / "train.npz", "val": None,
                               "calib": np.ones((3, 2), "float32")})
    (tmp_path / "m.h5.edgekeras.json").unlink()  # a stand-in, not a real card: out of the session's schema check
    seen = []

    def fake_compress(model, recipe, *, calib, eval, output_dir, force, data, val, name):
        seen.append(dict(model=Path(model), card=Path(str(model) + ".edgekeras.json").read_bytes(), eval=eval,
                         data=data, calib=calib, trains=recipe.techniques is not None))
        output_dir.mkdir(parents=True)
        (output_dir / "m.report.json").write_text("{}")
        (output_dir / "m.float32.tflite").write_bytes(b"tfl")
        (output_dir / ".edgekeras-staging-x").mkdir()
        return SimpleNamespace(report=str(output_dir / "m.report.json"), producer={"edgekeras": "x"})

    monkeypatch.setattr(sweep_module, "compress", fake_compress)
    plain = sweep_module._config_task(bundle, "float32", None, 0, False, None)
    tuned = sweep_module._config_task(bundle, "prune50", 1, 0, False, None)
    assert seen[0]["data"] is None and seen[0]["trains"] is False
    assert seen[1]["data"].name == "train.npz" and seen[1]["trains"] is True
    assert seen[0]["model"].name == "m.h5" and seen[0]["card"] == b"{}" and seen[0]["eval"].name == "train.npz"
    assert (seen[0]["calib"] == 1).all()
    assert plain["files"] == {"m.float32.tflite": b"tfl", "m.report.json": b"{}"}  # the staging folder stays
    assert plain["report_name"] == "m.report.json" and set(plain["paths"].values()) == {"model", "eval", "data",
                                                                                          "output"}
    assert tuned["producer"] == {"edgekeras": "x"}
    assert not any(Path(p).exists() for p in plain["paths"])  # the node's temporary folder is gone


def test_a_config_that_raises_on_a_node_comes_back_as_its_error(tmp_path, monkeypatch):
    from edgekeras.compress import sweep as sweep_module
    from edgekeras.errors import UnsupportedModel

    model = tmp_path / "m.h5"
    model.write_bytes(b"model")
    bundle = Bundle.of(model, {"eval": (np.zeros((2, 2)), np.zeros(2))})

    def fails(*a, **kw):
        raise UnsupportedModel("no int8 kernel for NEG", fix="pass --allow-float-fallback")

    monkeypatch.setattr(sweep_module, "compress", fails)
    r = sweep_module._config_task(bundle, "int8", None, 0, False, None)
    assert r["error"]["type"] == "UnsupportedModel" and r["error"]["fix"] == "pass --allow-float-fallback"
    assert "Traceback" in r["traceback"] and r["node"]


def test_rewrite_prefers_the_longest_node_path():
    paths = {"/t/out": "/a", "/t/out/int8": "/b/int8"}
    assert rewrite({"x": ["/t/out/int8/f", "/t/out/g"], "n": 3}, paths) == {"x": ["/b/int8/f", "/a/g"], "n": 3}


@pytest.fixture(scope="module")
def layer_norm_model(tmp_path_factory):
    """A Keras 3 model with a LayerNormalization: its int8 file keeps a float NEG, which compress refuses (an
    UnsupportedModel of the int8 config alone)."""
    import keras

    folder = tmp_path_factory.mktemp("layernorm")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 12)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), name="features")
    h = keras.layers.LayerNormalization()(keras.layers.Dense(16, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="probs")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    model.save(folder / "ln.keras")
    np.savez(folder / "eval.npz", x=x, y=y)
    np.save(folder / "calib.npy", x[:100])
    return {"model": folder / "ln.keras", "eval": folder / "eval.npz", "calib": folder / "calib.npy"}


def test_a_config_that_raises_is_a_fail_row_not_a_lost_sweep(layer_norm_model, tmp_path):
    m = layer_norm_model
    report = sweep(m["model"], data=None, eval=m["eval"], calib=m["calib"], output_dir=tmp_path, configs=CONFIGS)
    row = report.row("int8")
    assert not row.parity_passed and row.path == "" and row.bytes == 0 and row.latency_ms is None
    assert row.error.startswith("UnsupportedModel: this model cannot be fully int8") and "NEG" in row.error
    assert row.problems == [row.error] and not row.pareto
    assert report.row("float16").parity_passed and report.row("float16").latency_ms > 0
    table = Path(report.table).read_text()
    assert "FAIL (error)" in table and f"  int8: {row.error}" in table
    assert json.loads(Path(report.json).read_text())["rows"][2]["error"] == row.error
    assert report.ran == ["float32", "float16", "int8"]
    again = sweep(m["model"], data=None, eval=m["eval"], calib=m["calib"], output_dir=tmp_path, configs=CONFIGS)
    assert again.ran == ["int8"] and again.row("int8").error == row.error  # a rerun tries only the failed config


# -- on a real two-node cluster (slow) -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


class LocalCluster:
    """A head and a second node on 127.0.0.1, each with its own temporary folder; stopped by killing exactly
    their processes (`ray stop` would stop every Ray process of the machine)."""

    START_TIMEOUT = 120

    def __init__(self, root: Path):
        self.root = root
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # HOME of its own: a head started where ~/.ray/auth_token exists turns token authentication on, which the
        # joining node and the drivers (Ray reads its settings when imported) would not follow
        (root / "home").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        self.env = {**env, "HOME": str(root / "home"), "RAY_health_check_period_ms": "500",
                    "RAY_health_check_timeout_ms": "1000",
                    "RAY_health_check_failure_threshold": "3", "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[2]),
                                                              os.environ.get("PYTHONPATH")] if p)}
        self.dirs = {"head": root / "h", "second": root / "w"}  # short: Ray's socket paths have a length limit

    def _start(self, *args: str) -> None:
        r = subprocess.run([_ray_bin(), "start", *args, "--node-ip-address=127.0.0.1", "--num-cpus=1",
                            "--object-store-memory=100000000", "--disable-usage-stats"],
                           env=self.env, capture_output=True, text=True, timeout=self.START_TIMEOUT)
        if r.returncode != 0:
            raise RuntimeError(f"ray start {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                               f"{r.stderr[-3000:]}")

    def start(self) -> "LocalCluster":
        self._start("--head", f"--port={self.port}", f"--temp-dir={self.dirs['head']}", "--include-dashboard=false",
                    f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}")
        self._start(f"--address={self.address}", f"--temp-dir={self.dirs['second']}",
                    f"--dashboard-agent-listen-port={_free_port()}")
        deadline = time.monotonic() + 60
        while self.alive_nodes() < 2:
            if time.monotonic() > deadline:
                raise RuntimeError("the second Ray node did not join within 60 s")
            time.sleep(0.5)
        return self

    def alive_nodes(self) -> int:
        r = subprocess.run([sys.executable, "-c", "import ray, sys\nray.init(address=sys.argv[1], "
                            "logging_level='ERROR', log_to_driver=False)\n"
                            "print(sum(1 for n in ray.nodes() if n['Alive']))", self.address],
                           env=self.env, capture_output=True, text=True, timeout=120)
        return int(r.stdout.strip() or 0)

    def pids(self, node: str) -> list[int]:
        """The processes of one node: those whose command line names its folder, and their children."""
        mark = str(self.dirs[node]) + "/"
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if mark in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(d.name))
            except OSError:
                continue
        return found + [c for p in found for c in _children(p)]

    def kill(self, node: str) -> None:
        for pid in self.pids(node):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        self.kill("second")
        self.kill("head")


def _children(pid: int) -> list[int]:
    try:
        kids = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


@pytest.fixture()
def cluster():
    pytest.importorskip("ray")
    root = Path(tempfile_short())
    c = LocalCluster(root)
    try:
        yield c.start()
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def tempfile_short() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="ekr-", dir="/tmp")


def _default_sigint() -> None:
    # A test run started in the background by a shell (`pytest &`, nohup, some CI runners) inherits SIGINT ignored,
    # and a Python started with it ignored never raises KeyboardInterrupt: the child gets the default back
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sweep_cli(model, evaluation, calib, out, *extra, configs=CONFIGS, env=None) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).with_name("edgekeras")), "sweep", str(model), "--eval",
                             str(evaluation), "--calib", str(calib), "--configs", ",".join(configs), "-o", str(out),
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)


def _rows_without_timings(table: str) -> list[str]:
    """The table's lines with the latency column and the Pareto marks (latency measured at the end, here) cut."""
    lines = []
    for line in table.splitlines():
        if line.startswith("latency:"):
            continue
        cells = line.split()
        if cells and cells[0] == "*":
            cells = cells[1:]
        if cells and cells[0] in ("float32", "float16", "int8", "prune50"):
            cells = cells[:10]
        lines.append(" ".join(cells))
    return lines


def _files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".png" and p.name not in ("sweep.json", "sweep.txt")}


@pytest.mark.slow
def test_the_same_sweep_on_two_nodes_gives_the_same_table_and_files(cluster, digits_model, digits, tmp_path):
    """float32, float16 and int8 (deterministic: the same bytes), and prune50 (fine-tuned for an epoch on the
    training data, which only it receives; its weights may differ in the last bits between two processes)."""
    m = digits_model
    np.savez(tmp_path / "train.npz", x=digits[0], y=digits[1])
    args = dict(data=tmp_path / "train.npz", eval=m["eval"], calib=m["calib"], configs=[*CONFIGS, "prune50"],
                finetune_epochs=1)
    here = sweep(m["model"], output_dir=tmp_path / "here", **args)
    there = sweep(m["model"], output_dir=tmp_path / "there", ray=cluster.address, **args)
    assert there.cluster["resources"] == "2 node(s), 2 CPU(s)"
    assert all(r.node for r in there.rows) and not any(r.node for r in here.rows)
    assert there.row("prune50").parity_passed and here.row("prune50").parity_passed
    assert abs(there.row("prune50").accuracy - here.row("prune50").accuracy) <= 0.01
    a = {k: v for k, v in _files(tmp_path / "here").items() if not k.startswith("prune50/")}
    b = {k: v for k, v in _files(tmp_path / "there").items() if not k.startswith("prune50/")}
    assert list(a) == list(b) and len(a) == 13  # 5 files and cards (float16 and int8 also make float32), 3 reports
    for name in a:  # every model file and card byte for byte; the reports too, but for the folder they name
        if name.endswith(".report.json"):
            ra = (tmp_path / "here" / name).read_text().replace(str(tmp_path / "here"), "OUT")
            rb = (tmp_path / "there" / name).read_text().replace(str(tmp_path / "there"), "OUT")
            assert ra == rb, name
        else:
            assert a[name] == b[name], name
    for r1, r2 in zip(here.rows[:3], there.rows[:3]):
        assert (r1.config, r1.bytes, r1.gzip_bytes, r1.accuracy, r1.keras_accuracy, r1.parity_passed) == (
            r2.config, r2.bytes, r2.gzip_bytes, r2.accuracy, r2.keras_accuracy, r2.parity_passed)
        assert r2.latency_ms > 0
    t1, t2 = Path(here.table).read_text(), Path(there.table).read_text()
    rows1 = [line for line in _rows_without_timings(t1.replace("here/", "X/")) if not line.startswith("prune50")]
    rows2 = [line for line in _rows_without_timings(t2.replace("there/", "X/")) if not line.startswith("prune50")]
    assert rows1 == rows2
    # a rerun on the cluster finds every config finished and runs nothing
    again = sweep(m["model"], output_dir=tmp_path / "there", ray=cluster.address, **args)
    assert again.ran == [] and again.resumed == ["float32", "float16", "int8", "prune50"]
    assert again.cluster is None  # nothing to run: not even connected


@pytest.mark.slow
def test_a_raising_config_on_the_cluster_is_a_fail_row(cluster, layer_norm_model, tmp_path):
    m = layer_norm_model
    report = sweep(m["model"], data=None, eval=m["eval"], calib=m["calib"], output_dir=tmp_path, configs=CONFIGS,
                   ray=cluster.address)
    assert report.row("int8").error.startswith("UnsupportedModel: this model cannot be fully int8")
    assert report.row("int8").node and report.row("float16").parity_passed


@pytest.mark.slow
def test_a_node_stopped_mid_sweep_costs_only_a_retry(cluster, digits_model, tmp_path):
    """The second node is killed (every process of it) while it runs a config: Ray retries that task on the
    head, and the sweep finishes with every row, as the local sweep makes them."""
    m = digits_model
    out = tmp_path / "sweep"
    proc = _sweep_cli(m["model"], m["eval"], m["calib"], out, "--ray", cluster.address)
    try:
        deadline = time.monotonic() + 240
        while not _compress_running_on(cluster, "second"):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no config started on the second node within 240 s"
            time.sleep(0.2)
        cluster.kill("second")
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stdout + stderr
    assert "(raylet)" not in stdout and "Ray: " in stdout and "retr" in stdout, (
        stdout)  # Ray's messages: logged, and shown once with the warnings after the table, not before it
    assert stdout.index("sweep of digits.h5") < stdout.index("Ray: ")
    done = json.loads((out / "sweep.json").read_text())
    assert [r["config"] for r in done["rows"]] == ["float32", *CONFIGS]
    assert all(r["parity_passed"] and not r.get("error") for r in done["rows"]), done["rows"]
    assert sorted(done["ran"]) == sorted(["float32", *CONFIGS])
    local = sweep(m["model"], data=None, eval=m["eval"], calib=m["calib"], output_dir=tmp_path / "local",
                  configs=CONFIGS)
    for row in local.rows:
        name = Path(row.path).relative_to(tmp_path / "local")
        assert sha256(out / name) == sha256(Path(row.path)), name
    assert not list(out.rglob(".edgekeras-staging-*"))


def _compress_running_on(cluster: LocalCluster, node: str) -> bool:
    """A compress worker (`python -m edgekeras.compress.worker`) whose parent is a process of that node."""
    mine = set(cluster.pids(node))
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
            if b"edgekeras.compress.worker" not in cmd:
                continue
            parent = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent in mine:
            return True
    return False


def _compress_workers_on(cluster: LocalCluster) -> set[int]:
    nodes = set(cluster.pids("head")) | set(cluster.pids("second"))
    found = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if b"edgekeras.compress.worker" in (d / "cmdline").read_bytes():
                parent = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent in nodes:
                    found.add(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_ctrl_c_cancels_the_tasks_and_keeps_the_finished_configs(cluster, digits_model, tmp_path):
    m = digits_model
    out = tmp_path / "sweep"
    configs = ["float16", "int8", "dynamic", "searched"]
    proc = _sweep_cli(m["model"], m["eval"], m["calib"], out, "--ray", cluster.address,
                      configs=configs)  # five tasks for two slots, the search the longest
    try:
        deadline = time.monotonic() + 240
        while not (list(out.glob("*/*.report.json")) and _compress_workers_on(cluster)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no config finished within 240 s"
            time.sleep(0.1)
        running = _compress_workers_on(cluster)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted; the configs finished so far are kept" in stderr
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in running), "a cancelled config's compress run still runs on the cluster"
    finished = sorted(p.parent.name for p in out.glob("*/*.report.json"))
    assert finished and len(finished) < 5 and not list(out.rglob(".edgekeras-staging-*"))
    assert not (out / "sweep.json").exists()
    again = sweep(m["model"], data=None, eval=m["eval"], calib=m["calib"], output_dir=out, configs=configs,
                  ray=cluster.address)
    assert sorted(again.resumed) == finished and sorted(again.ran + again.resumed) == sorted(["float32", *configs])
    assert all(r.parity_passed for r in again.rows)


def _tasks_run_on(cluster: LocalCluster, node: str, name: str) -> int:
    """How many tasks called `name` a node ran: Ray marks each task in its worker's log (`:task_name:`)."""
    count = 0
    for log_file in cluster.dirs[node].glob("session_*/logs/worker-*.out"):
        count += log_file.read_text(errors="replace").count(f":task_name:{name}")
    return count


@pytest.mark.slow
def test_the_precision_search_fans_its_candidates_out_and_finds_the_same_file(cluster, keras, tmp_path):
    from sklearn.datasets import load_digits

    from edgekeras.compress import compress
    from test_precision_files import outlier_cnn

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    model = outlier_cnn(keras, x[:1200])
    model.fit(x[:1200], d.target[:1200], epochs=20, batch_size=32, verbose=0)
    model.save(tmp_path / "outlier.keras")
    np.savez(tmp_path / "eval.npz", x=x[1200:], y=d.target[1200:])
    np.save(tmp_path / "calib.npy", x[:200])
    args = dict(calib=tmp_path / "calib.npy", eval=tmp_path / "eval.npz", max_accuracy_drop=0.5, precision="auto",
                preprocess="unit", accept_parity_failures=True)  # plain int8 of this model collapses: on purpose
    here = compress(tmp_path / "outlier.keras", "int8", output_dir=tmp_path / "here", **args)
    there = compress(tmp_path / "outlier.keras", "int8", output_dir=tmp_path / "there", ray=cluster.address, **args)
    mixed_here, mixed_there = here.file("mixed"), there.file("mixed")
    assert Path(mixed_here.path).read_bytes() == Path(mixed_there.path).read_bytes()
    card_here = json.loads(Path(mixed_here.card).read_text())
    card_there = json.loads(Path(mixed_there.card).read_text())
    search_here = card_here["steps"][-1]["settings"]["precision_search"]
    search_there = card_there["steps"][-1]["settings"]["precision_search"]
    assert [(c["purpose"], c["value"], c["bytes"]) for c in search_here["candidates"]] == [
        (c["purpose"], c["value"], c["bytes"]) for c in search_there["candidates"]]  # latencies: measured apart
    probes = sum(c["purpose"].startswith("probe:") for c in search_there["candidates"])
    assert probes >= 2 and search_here["layers"] == search_there["layers"]
    assert there.recipe["ray"] == cluster.address and here.recipe["ray"] is None
    deadline = time.monotonic() + 15  # the workers' logs are written as they go
    while True:
        on_head = _tasks_run_on(cluster, "head", "edgekeras precision candidate")
        on_second = _tasks_run_on(cluster, "second", "edgekeras precision candidate")
        if (on_head and on_second and on_head + on_second >= probes) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert on_head and on_second and on_head + on_second >= probes, (on_head, on_second, probes)
