"""The command line answers help without TensorFlow, and reports what it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from click.testing import CliRunner

from edgekeras import cli

NO_TF = ("import sys, runpy; sys.argv = ['edgekeras'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('edgekeras', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "heavy = [m for m in ('tensorflow', 'tf_keras', 'onnxruntime', 'ai_edge_litert') if m in sys.modules]\n"
         "print('HEAVY', heavy)")


def test_help_does_not_import_tensorflow():
    for args in (["--help"], ["compress", "--help"], ["train", "--help"], ["--version"]):
        p = subprocess.run([sys.executable, "-c", NO_TF, *args], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "HEAVY []" in p.stdout, (args, p.stdout)
        assert "Usage:" in p.stdout or "version" in p.stdout, (args, p.stdout)


def test_compress_help_lists_the_modes():
    out = CliRunner().invoke(cli.main, ["compress", "--help"]).output
    for flag in ("--int8", "--float-io", "--float16", "--dynamic", "--int16x8", "--calib", "--calib-samples",
                 "--onnx", "--eval", "--output-dir", "--force", "--custom-objects", "--trust-model",
                 "--allow-float-fallback"):
        assert flag in out


def test_a_command_called_from_python_leaves_the_process_as_it_was(tmp_path):
    """CliRunner (or main([...]) in a script): --debug, --json and a command's settings last for that call only,
    and no command writes the environment."""
    from edgekeras import settings

    before, env = settings.current(), dict(os.environ)
    r = CliRunner().invoke(cli.main, ["--debug", "compress", str(tmp_path / "missing.h5"), "--int8", "--json"])
    assert r.exit_code == 1 and "does not exist" in r.output
    assert '"type": "BadInput"' in r.output  # --json was in force during the call
    assert settings.current() == before and dict(os.environ) == env


def test_compress_prints_one_table_and_json(digits_model, tmp_path):
    r = CliRunner().invoke(cli.main, ["compress", str(digits_model["model"]), "--int8", "--calib",
                                      str(digits_model["calib"]), "--eval", str(digits_model["eval"]),
                                      "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    header = r.output.splitlines()[0].split()
    assert header == ["file", "mode", "size", "gzip", "x", "f32", "parity", "vs", "keras", "accuracy"]
    assert "digits.int8.tflite" in r.output and "top1" in r.output and "(keras model)" in r.output
    r = CliRunner().invoke(cli.main, ["compress", str(digits_model["model"]), "--dynamic", "--json",
                                      "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert [f["mode"] for f in report["files"]] == ["float32", "dynamic"]


def test_no_mode_writes_the_float32_baseline(digits_model, tmp_path):
    r = CliRunner().invoke(cli.main, ["compress", str(digits_model["model"]), "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "wrote the float32 baseline" in r.output
    assert (tmp_path / "digits.float32.tflite").is_file()


def test_an_internal_error_points_to_a_log_that_holds_its_traceback(tmp_path, monkeypatch):
    """A bug of ours says so once, and the log it names is never empty: it holds the traceback."""
    import re

    import edgekeras.compress

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug on purpose")

    monkeypatch.setattr(edgekeras.compress, "compress", broken)
    r = CliRunner().invoke(cli.main, ["compress", str(tmp_path / "m.h5"), "--int8"])
    assert r.exit_code == 1 and "internal error: ZeroDivisionError: a bug on purpose" in r.output
    log = re.search(r"the traceback and TensorFlow's log are in (\S+?)\.?$", r.output, re.M).group(1)
    text = open(log, encoding="utf-8").read()
    os.unlink(log)
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError: a bug on purpose" in text


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgekeras", *map(str, args)], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def test_each_warning_is_printed_once_and_quiet_prints_the_result(digits_model, tmp_path):
    """A warning is printed once, with the result (stdout, after the table); -q drops the progress lines only."""
    loud = _cli("compress", digits_model["model"], "--int8", "-o", tmp_path / "loud")
    quiet = _cli("compress", digits_model["model"], "--int8", "-o", tmp_path / "quiet", "-q")
    for r in (loud, quiet):
        assert r.returncode == 0, r.stderr
        both = r.stdout + r.stderr
        assert both.count("NO CALIBRATION DATA") == 1, both
        assert "1 warning(s) (also in the report and the model cards):\nWARNING: NO CALIBRATION DATA" in r.stdout
        assert r.stdout.splitlines()[0].split()[:2] == ["file", "mode"] and "digits.int8.tflite" in r.stdout
    assert "converting int8 to TFLite" in loud.stderr and "converting" not in quiet.stderr
    assert "WARNING:edgekeras" not in loud.stderr + quiet.stderr


def test_a_warning_before_an_error_is_still_printed_once(tmp_path):
    """A command that fails after logging a warning prints it when it ends, once (no result would print it)."""
    code = ("import logging, sys\nimport edgekeras.compress\nfrom edgekeras import cli\n"
            "from edgekeras.errors import BadInput\n"
            "def warn_then_fail(*a, **k):\n"
            "    logging.getLogger('edgekeras.compress').warning('a warning on purpose')\n"
            "    raise BadInput('an error on purpose')\n"
            "edgekeras.compress.compress = warn_then_fail\n"
            "sys.argv = ['edgekeras', 'compress', sys.argv[1], '--int8']\ncli.main()\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.h5")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "error: an error on purpose" in r.stderr, r.stderr
    assert (r.stdout + r.stderr).count("WARNING: a warning on purpose") == 1, r.stdout + r.stderr
