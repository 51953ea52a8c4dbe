"""Errors cross processes (the compress worker, bench harnesses here, over ssh, on a board) as data and are raised
again with their class, fix and attributes. No TensorFlow, no model: these run in milliseconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgekeras import errors
from edgekeras.errors import (BadInput, EdgeKerasError, ParityError, RuntimeFailure, UnsupportedModel,
                              error_to_dict)

_FIELD_VALUES = {"failed": {"m.int8.tflite": ["top-1 agreement 40%"]}, "path": "m.int8.tflite", "sample": 7,
                 "op": "DIV", "runtime": "LiteRT (xnnpack kernels)", "reason": "div.cc:262 data[i] != zero_point",
                 "package": "ai-edge-litert"}


def _every_kind() -> list[type[EdgeKerasError]]:
    return sorted(errors._KINDS.values(), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _every_kind(), ids=lambda c: c.__name__)
def test_every_error_class_comes_back_as_itself_through_json(cls):
    fields = {name: _FIELD_VALUES[name] for name in cls.fields}
    e = cls("what went wrong", fix="do_this=1", cli_fix="--do-this 1", **fields)
    d = json.loads(json.dumps(e.to_dict()))  # what a pipe or an ssh session carries
    again = EdgeKerasError.from_dict(d)
    assert type(again) is cls
    assert (again.message, again.fix, again.cli_fix) == ("what went wrong", "do_this=1", "--do-this 1")
    assert {name: getattr(again, name) for name in cls.fields} == fields
    assert str(again) == str(e) and again.for_cli() == e.for_cli()


def test_a_runtime_failure_keeps_the_sample_and_the_op():
    e = RuntimeFailure("m.int8.tflite failed on sample 7 in DIV", path="m.int8.tflite", sample=7, op="DIV",
                       runtime="LiteRT (xnnpack kernels)", reason="data[i] != zero_point", fix="use --float-io")
    again = EdgeKerasError.from_dict(e.to_dict())
    assert isinstance(again, UnsupportedModel) and (again.sample, again.op) == (7, "DIV")


def test_a_parity_error_keeps_what_failed_but_not_the_report():
    e = ParityError("1 file failed parity", failed={"a.tflite": ["collapsed"]}, report=object())
    again = EdgeKerasError.from_dict(e.to_dict())
    assert again.failed == {"a.tflite": ["collapsed"]} and again.report is None
    assert again.exit_status == errors.PARITY_EXIT_STATUS


def test_an_unknown_kind_from_a_newer_process_keeps_its_message_and_fix():
    again = EdgeKerasError.from_dict({"type": "KindFromTheFuture", "message": "m", "fix": "f", "sample": 3})
    assert type(again) is EdgeKerasError and (again.message, again.fix) == ("m", "f")


def test_a_kind_whose_required_field_is_missing_falls_back_to_the_base_class():
    again = EdgeKerasError.from_dict({"type": "RuntimeFailure", "message": "m"})  # no path, no sample
    assert type(again) is EdgeKerasError and again.message == "m"


def test_a_dict_with_no_message_still_says_something():
    assert EdgeKerasError.from_dict({}).message == "unknown error"


def test_reworded_keeps_class_fix_and_fields():
    e = BadInput("no such file", fix="check the path", cli_fix="--eval PATH")
    again = e.reworded("on board-1: no such file")
    assert type(again) is BadInput and again.message == "on board-1: no such file"
    assert (again.fix, again.cli_fix) == ("check the path", "--eval PATH")


def test_an_exception_that_is_not_ours_is_an_internal_error_naming_its_class():
    assert error_to_dict(KeyError("y_note")) == {"type": "InternalError", "message": "KeyError: 'y_note'",
                                                 "fix": None, "cli_fix": None}
    assert error_to_dict(ValueError())["message"] == "ValueError"
    assert error_to_dict(BadInput("b"))["type"] == "BadInput"


def test_an_error_raised_in_the_runtime_harness_comes_back_with_its_class(tmp_path):
    # the real boundary: `python -m edgekeras.runtime bench --raw` in a child process, as bench's local and ssh
    # runners start it, on a file that does not exist
    from edgekeras.runtime.protocol import raise_if_error, read_result

    done = subprocess.run([sys.executable, "-m", "edgekeras.runtime", "bench", str(tmp_path / "missing.tflite"),
                           "--raw"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    result, _ = read_result(done.stdout)
    with pytest.raises(BadInput, match="missing.tflite"):
        raise_if_error(result)


def test_the_bench_line_protocol():
    from edgekeras.runtime.protocol import (error_line, progress_line, raise_if_error, read_progress, read_result,
                                            result_line, stage_line)

    out = "noise\n" + stage_line("loading") + result_line({"a": 1}) + stage_line("timing") + result_line({"a": 2})
    assert read_result(out) == ({"a": 2}, "timing")  # the last result and the last stage
    assert read_result("crashed before anything\n") == (None, "start-up")
    assert read_progress(progress_line(3, 7, "round 1/3 m.tflite: mean 0.5 ms").rstrip("\n")) == (
        3, 7, "round 1/3 m.tflite: mean 0.5 ms")
    assert read_progress("some other line") is None
    with pytest.raises(ValueError):
        result_line({"p50_ms": float("nan")})  # strict JSON: a NaN is a bug, not a number
    err, _ = read_result(error_line(BadInput("no x", fix="save x")))
    with pytest.raises(BadInput, match="no x"):
        raise_if_error(err)
    assert raise_if_error({"ok": True}) == {"ok": True}
