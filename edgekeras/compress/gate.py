"""Accuracy-gated int8 (`--int8 --max-accuracy-drop PP --eval DATA`): the int8 file with as few float layers as
possible that keeps the metric within PP of the Keras model, every candidate measured as deployed.

When plain full int8 loses more than the bound, the layers are ranked by how badly int8 treats them, and the
worst ones are kept in float, more and more of them, until the file keeps the bound. Each candidate is the real
file: a .tflite run on LiteRT with its default kernels (`edgekeras.runtime.open_session`), or an int8 ONNX file
run on ONNX Runtime, scored with the run's metric on the evaluation data.

**The drop.** For accuracy and binary accuracy (fractions), the drop is in percentage points:
`100 * (keras - file)` (0.956 -> 0.951 is a drop of 0.5). For mae (lower is better) it is the growth of the error
in percent of the Keras error: `100 * (file - keras) / keras` (an mae of 0.200 growing to 0.202 is a drop of 1.0);
when the Keras mae is 0, any growth is an infinite drop. A negative drop means the file scored better.

**The ranking measure: signal lost per channel, measured on LiteRT** (`relative_rmse_per_channel`). The
calibrated float graph and the plain int8 file run side by side on LiteRT's builtin kernels with every tensor
kept (up to `RANKING_SAMPLES` calibration samples). For each activation tensor, error is measured per channel
(the last axis) as RMSE / the channel's standard deviation in float, then averaged over channels (0 = exact,
1 = an error as large as the channel's whole variation), two ways:

- *representation*: the float values rounded at the scale the int8 file gives that tensor. This is what int8
  cannot hold, whatever kernel computes it: a tensor that joins values ~1e4-1e5 with values ~1 gets one scale
  (857 on the test model) and its small channels round to zero.
- *accumulated*: the int8 file's own values against float. An op's *gain* is its output's accumulated error minus
  the worst of its inputs': what its int8 kernel adds (e.g. a per-tensor constant whose small entries round to 0).

An op scores the worst of: its output's representation error, its inputs' representation errors (a tensor int8
cannot hold must be read in float too, else the reader requantizes it at the same scale), and its gain. Model
inputs and outputs are left out with int8 input/output (no float layer can fix them). A Keras layer scores the
worst of its ops (fused ops count for the first layer they name; ops named by no layer, such as a softmax at the
output, belong to the layer that feeds them).

Why not `tf.lite.experimental.QuantizationDebugger`'s layer statistics (rmse/scale): they compare each int8 op
with its float op *fed the same int8 inputs*, in units of the op's own output scale, so a scale too coarse for
the values is invisible. Measured on the test model (a Dense producing ~1e4 concatenated with a Dense of small
ReLU features; plain int8 scores 32.3% where Keras scores 99.8%): rmse/scale is 0 on the concatenation and
0.0007 on the small Dense (all its outputs round to 0 at the shared scale 857), the two lowest of 8 ops, so the
top k layers hold both only when k is every layer. This measure ranks them first and second (1.38 each), the
layer reading the concatenation third (1.23), and the next at 0.05; 3 float layers keep the accuracy (99.8%).

**Float islands: the converter's own two steps, with a denylist.** The model is calibrated once
(`TFLiteConverter` with `_experimental_calibrate_only`, the switch `QuantizationDebugger` itself sets), then
each candidate is quantized from that one calibrated model by `tensorflow.lite.python.convert.mlir_quantize`
(the call `TFLiteConverter.convert` makes for int8) with `denylisted_nodes` = the output tensors of the ops of
the float layers, and int8 (or float, with float_io) input/output. This is what
`QuantizationDebugOptions(denylisted_nodes=...)` + `get_nondebug_quantized_model()` does, minus a debug model
built and run for nothing, and with the input/output types the run asks for (the debugger's files have float
input/output). Every candidate shares the calibration, so candidates differ only by their float layers. Each
file is then finished as the converter finishes its own (read-only buffers deduplicated, its conversion metadata
written), so plain int8 is byte for byte `ptq.convert`'s int8 file.

**The search.** Candidates keep the top k layers of the ranking in float: plain int8 (k = 0) first, then k = 1,
2, 4, ... (doubling) until a candidate keeps the bound or every ranked layer is float; then a bisection between
the last k that failed and the first that held. Accuracy is not strictly monotonic in k: the bisection
assumes it is, so it can miss a smaller k that would also hold, but it never keeps a file that fails the bound:
the chosen file is, among the candidates measured, the one with the fewest float layers that keeps the bound.
When no candidate keeps it, `met` is False and the best candidate measured is kept
(best value; ties: fewer float layers), with a note. About 2*log2(layers) + 2 candidates are measured.

**Latency** is the median of one-sample invokes of each candidate (`LATENCY_RUNS`, `LATENCY_BUDGET_S`). When the
chosen file measures more than 20% slower than plain int8, both are timed again back to back and the note is
written only if the second measurement agrees (microsecond timings on a shared machine are noisy).

The ONNX search (`search_onnx`) takes the same ranking (Keras layer names), excludes the ONNX nodes of those
layers from quantization (onnxruntime's `nodes_to_exclude`; tf2onnx keeps the TensorFlow op names, which
contain the layer path), calibrates once (`calibration_cache_path`) with `edgekeras.export.onnx.INT8_SETTINGS`,
and measures on ONNX Runtime.

Runs in the worker (TensorFlow imported).

Example:
    result = search_tflite(src, conv.settings, calib, eval_x, eval_y, metric="accuracy", kind="probabilities",
                           output="probs", keras_value=0.956, max_drop=0.5)
    Path("m.int8.tflite").write_bytes(result.data)
    card_settings = result.settings()
"""

from __future__ import annotations

import gzip
import math
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..card import TensorSpec
from ..errors import BadInput, UnsupportedModel, first_line
from ..metrics import HIGHER_IS_BETTER, score

#: Calibration samples run through the float and the int8 graph to rank the layers.
RANKING_SAMPLES = 32
#: One-sample invokes timed per candidate, after `LATENCY_WARMUP_S` seconds of untimed ones: at least
#: `LATENCY_RUNS`, more while under `LATENCY_BUDGET_S` seconds (up to `LATENCY_MAX_RUNS`, for microsecond
#: models); the median is reported.
LATENCY_RUNS = 30
LATENCY_WARMUP_S = 0.05
LATENCY_BUDGET_S = 0.2
LATENCY_MAX_RUNS = 2000
#: A chosen file slower than plain int8 by more than this share gets a note.
SLOWER_NOTE = 0.20
MEASURE = "relative_rmse_per_channel"
MEASURE_TEXT = ("RMSE / the float channel's standard deviation, averaged over channels, on LiteRT: the worst of "
                "the layer's output rounded at its int8 scale, its inputs rounded at theirs, and the error its "
                "int8 kernels add")
SEARCH_TEXT = "plain int8, then the top k ranked layers in float: k doubling until the bound holds, then bisection"
_TOLERANCE = 1e-9

Progress = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------------- results
@dataclass
class Candidate:
    """One file tried by the search, measured as deployed.

    Attributes:
        float_layers: Keras layer names kept in float (empty = plain int8).
        value: the metric on the evaluation data, from the file on its runtime.
        drop: what the file loses against the Keras model (see the module doc: points, or % of the mae).
        bytes, gzip_bytes: size of the file, raw and gzipped (level 6).
        latency_ms: median of one-sample invokes (default kernels).
        int8_weight_fraction: int8 bytes / all weight bytes in the file (int8 kernels, int32 biases, float
            kernels and biases; shape constants not counted).
        float_ops: ops computing in float, "OP (tensor name)" (TFLite) or "OpType (node name)" (ONNX).
    """

    float_layers: list[str]
    value: float
    drop: float
    bytes: int
    gzip_bytes: int
    latency_ms: float
    int8_weight_fraction: float
    float_ops: list[str]

    def summary(self) -> dict:
        """JSON-able record (numbers rounded for the card)."""
        d = asdict(self)
        d["value"], d["drop"] = round(self.value, 6), _round(self.drop)
        d["latency_ms"] = round(self.latency_ms, 4)
        d["int8_weight_fraction"] = round(self.int8_weight_fraction, 4)
        d["float_op_count"] = len(d.pop("float_ops"))  # the chosen file's card lists its own
        return d


@dataclass
class GateResult:
    """What the accuracy gate found.

    Attributes:
        met: the chosen file keeps the bound.
        max_drop: the bound asked for.
        keras_value: the metric of the Keras model on the evaluation data.
        metric: "accuracy", "binary_accuracy" or "mae".
        ranking: Keras layers by int8 error, worst first, with the error (`MEASURE`).
        candidates: every candidate measured, in order; the first is plain int8.
        chosen: the kept candidate (fewest float layers among those that keep the bound; else the best measured).
        data: the chosen file's bytes.
        notes: what a user should know (bound not met, slower file, layers not found).
        reasons: what int8 does to each ranked layer, by layer name (why the chosen file's float layers are).
        base_settings: the conversion settings the gate started from (copied into `settings()`).
        runtime: "litert" or "onnxruntime" (where candidates were measured).
        excluded: the graph nodes kept in float for the chosen file (TFLite denylisted_nodes / ONNX
            nodes_to_exclude).
    """

    met: bool
    max_drop: float
    keras_value: float
    metric: str
    ranking: list[tuple[str, float]]
    candidates: list[Candidate]
    chosen: Candidate
    data: bytes
    notes: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    base_settings: dict = field(default_factory=dict)
    runtime: str = "litert"
    excluded: list[str] = field(default_factory=list)

    def settings(self) -> dict:
        """The conversion settings of the chosen file, for the card's convert (or export) step.

        Returns:
            A JSON-able dict: the base settings (the int8 conversion's, or the ONNX quantizer's), plus
            `float_layers`, `denylisted_nodes` (TFLite) or `nodes_to_exclude` (ONNX), and `accuracy_gate`: the
            bound and its unit, the Keras value, plain int8's and the chosen file's value and drop, each float
            layer with its error and reason, the ranking (50 worst), the measure, the search, every candidate
            and the notes.

        Example:
            card_step = Step("convert", result.settings())
        """
        plain = self.candidates[0]
        gate = {
            "max_drop": self.max_drop, "metric": self.metric, "drop_unit": _drop_unit(self.metric),
            "keras_value": round(self.keras_value, 6), "met": self.met,
            "value": round(self.chosen.value, 6), "drop": _round(self.chosen.drop),
            "plain_int8": {"value": round(plain.value, 6), "drop": _round(plain.drop)},
            "measured_on": self.runtime + (" (default kernels)" if self.runtime == "litert" else " (CPU)"),
            "float_layers": [{"layer": name, "error": _round_or_none(dict(self.ranking).get(name)),
                              "reason": self.reasons.get(name, "")} for name in self.chosen.float_layers],
            "ranking_measure": MEASURE, "ranking_measure_text": MEASURE_TEXT,
            "ranking": [[name, round(err, 4)] for name, err in self.ranking[:50]],
            "search": SEARCH_TEXT,
            "candidates": [c.summary() for c in self.candidates],
            "notes": list(self.notes),
        }
        key = "denylisted_nodes" if self.runtime == "litert" else "nodes_to_exclude"
        return {**self.base_settings, "float_layers": list(self.chosen.float_layers), key: list(self.excluded),
                "accuracy_gate": gate}


def _round(x: float):
    return x if math.isinf(x) else round(x, 4)


def _round_or_none(x: float | None):
    return None if x is None else round(x, 4)


def _drop_unit(metric: str) -> str:
    return "% of the Keras mae" if metric == "mae" else "percentage points"


def drop_of(metric: str, value: float, keras_value: float) -> float:
    """What a file loses against the Keras model (see the module doc).

    Args:
        metric: "accuracy", "binary_accuracy" or "mae".
        value: the file's metric; keras_value: the Keras model's.

    Returns:
        Percentage points for accuracies (100 * (keras - value)); for mae, the error's growth in percent of the
        Keras mae (100 * (value - keras) / keras; inf when the Keras mae is 0 and the file's is not).

    Raises:
        BadInput: an unknown metric.

    Example:
        drop_of("accuracy", 0.951, 0.956)  # 0.5 (points)
        drop_of("mae", 0.202, 0.200)       # 1.0 (% of 0.200)
    """
    if metric not in HIGHER_IS_BETTER:
        raise BadInput(f"unknown metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}",
                       fix=f"use one of {', '.join(HIGHER_IS_BETTER)}")
    if HIGHER_IS_BETTER[metric]:
        return 100.0 * (keras_value - value)
    if keras_value == 0:
        return 0.0 if value <= 0 else math.inf
    return 100.0 * (value - keras_value) / keras_value


def _meets(drop: float, max_drop: float) -> bool:
    return drop <= max_drop + _TOLERANCE


# ------------------------------------------------------------------------------------------------- TFLite
def search_tflite(source, mode_settings: dict, calibration: dict[str, np.ndarray], eval_x: dict[str, np.ndarray],
                  eval_y: np.ndarray, *, metric: str, kind: str | None, output: str, keras_value: float,
                  max_drop: float, float_io: bool = False, progress: Progress | None = None) -> GateResult:
    """Find the int8 .tflite file with the fewest float layers that keeps `max_drop` (see the module doc).

    Args:
        source: the loaded `edgekeras.source.SourceModel`.
        mode_settings: the settings of the plain int8 conversion (`ptq.convert(...).settings`); the chosen
            file's settings extend them. Its "allow_float_fallback" decides the ops set, as in `ptq.convert`.
        calibration: representative inputs by input name (as for `ptq.convert`).
        eval_x: evaluation inputs by input name; eval_y: their labels for `output`.
        metric: "accuracy", "binary_accuracy" or "mae"; kind: the output's kind for `metrics.score`.
        output: the scored output's name.
        keras_value: the metric of the Keras model on (eval_x, eval_y).
        max_drop: the bound, in the units of `drop_of` (>= 0; a negative bound asks for a file better than Keras).
        float_io: keep float32 input and output (else int8, like `ptq.convert`).
        progress: called with (candidates measured, candidates at most).

    Returns:
        A `GateResult`; `data` is the chosen file (plain int8 when it keeps the bound).

    Raises:
        BadInput: inconsistent evaluation data, an unknown metric or output, a bound that is not a number.
        UnsupportedModel: the converter fails to calibrate or quantize the model.

    Example:
        r = search_tflite(src, conv.settings, calib, {"image": x}, y, metric="accuracy", kind="probabilities",
                          output="probs", keras_value=0.97, max_drop=0.5)
        print(r.met, r.chosen.float_layers, r.chosen.drop)
    """
    _check_args(metric, max_drop, keras_value, eval_x, eval_y, [t.name for t in source.inputs])
    if output not in [t.name for t in source.outputs]:
        names = ", ".join(t.name for t in source.outputs)
        raise BadInput(f"the model has no output {output!r} (outputs: {names})", fix=f"score one of: {names}")
    if not calibration:
        raise BadInput("the accuracy gate needs calibration data", fix="pass calibration data (--calibration)")
    calibrated, metadata = _calibrate(source, calibration, mode_settings)
    io_type = None if float_io else "int8"

    def quantize(nodes: list[str]) -> bytes:
        return _quantize_tflite(calibrated, metadata, nodes, io_type)

    plain = quantize([])
    graph = _TFLiteGraph(calibrated, source.keras_model)
    samples = {k: np.asarray(v)[:RANKING_SAMPLES] for k, v in calibration.items()}
    ranked, reasons = _rank_tflite(graph, plain, samples, source.inputs, float_io)
    nodes_of = graph.nodes_by_layer()

    extra: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgekeras-gate-") as tmp:
        def measure(layers: list[str]) -> tuple[Candidate, bytes, list[str]]:
            nodes = [n for layer in layers for n in nodes_of.get(layer, [])]
            data = plain if not layers else quantize(nodes)
            path = Path(tmp) / f"candidate{len(layers)}.tflite"
            path.write_bytes(data)
            value, latency, note = _measure_file(path, eval_x, eval_y, metric, kind, output)
            extra.append(note)
            cand = Candidate(float_layers=list(layers), value=value, drop=drop_of(metric, value, keras_value),
                             bytes=len(data), gzip_bytes=_gzip_size(data), latency_ms=latency,
                             int8_weight_fraction=tflite_int8_weight_fraction(data), float_ops=_tflite_float_ops(data))
            return cand, data, nodes

        candidates, chosen, data, nodes, met = _search(measure, [name for name, _ in ranked], max_drop, progress)
        slower = _confirmed_slowdown(candidates, chosen, lambda c: Path(tmp) / f"candidate{len(c.float_layers)}.tflite",
                                     eval_x)
    why = [f"{name} ({reasons[name]})" for name in chosen.float_layers if name in reasons]
    if why:
        extra.insert(0, "kept in float: " + "; ".join(why[:5]) + (f"; and {len(why) - 5} more" if len(why) > 5 else ""))
    notes = _notes(candidates, chosen, met, max_drop, metric, len(ranked), extra, slower)
    return GateResult(met=met, max_drop=float(max_drop), keras_value=float(keras_value), metric=metric,
                      ranking=ranked, candidates=candidates, chosen=chosen, data=data, notes=notes,
                      reasons=reasons,
                      base_settings={**mode_settings, "quantizer": "mlir_quantize (calibrated once, denylisted_nodes)"},
                      runtime="litert", excluded=nodes)


def _check_args(metric, max_drop, keras_value, eval_x, eval_y, input_names) -> None:
    if metric not in HIGHER_IS_BETTER:
        raise BadInput(f"unknown metric {metric!r}; valid: {', '.join(HIGHER_IS_BETTER)}",
                       fix=f"use one of {', '.join(HIGHER_IS_BETTER)}")
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float, np.integer, np.floating)) \
            or math.isnan(max_drop):
        raise BadInput(f"--max-accuracy-drop must be a number of percentage points; got {max_drop!r}",
                       fix="e.g. max_accuracy_drop=0.5 (half a point)", cli_fix="e.g. --max-accuracy-drop 0.5")
    if isinstance(keras_value, bool) or not isinstance(keras_value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(keras_value):
        raise BadInput(f"the Keras model's {metric} on the evaluation data is {keras_value!r}, not a number",
                       fix="check the --eval labels")
    missing = [n for n in input_names if n not in eval_x]
    if missing:
        raise BadInput(f"--eval data lacks input(s) {missing} (the model takes {input_names})",
                       fix="give one array per model input, named as the model's inputs")
    sizes = {len(np.asarray(eval_x[n])) for n in input_names} | {len(np.asarray(eval_y))}
    if len(sizes) != 1 or 0 in sizes:
        raise BadInput(f"--eval data: inputs and labels must have the same, non-zero number of samples; got "
                       f"{sorted(sizes)}", fix="give one label per evaluation sample")


def _calibrate(source, calibration: dict[str, np.ndarray], mode_settings: dict) -> tuple[bytes, object]:
    """The float model with calibration statistics (the first of the converter's two int8 steps), and the
    converter's conversion-metadata record (written into each candidate as the converter writes it)."""
    from .._keras import tf
    from tensorflow.lite.python.convert_phase import ConverterError

    from .ptq import _conversion_error, _representative

    conv = source.tflite_converter()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = _representative(source, calibration)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if mode_settings.get("allow_float_fallback"):
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
    conv.target_spec.supported_ops = ops
    conv._experimental_calibrate_only = True  # what QuantizationDebugger sets: calibrate, do not quantize yet
    conv.exclude_conversion_metadata = True  # recorded per candidate instead (`_quantize_tflite`)
    try:
        return bytes(conv.convert()), conv._metadata
    except (ConverterError, ValueError, RuntimeError) as e:  # the converter's failures, mapped like ptq.convert's
        raise _conversion_error(e, "int8") from e


def _quantize_tflite(calibrated: bytes, metadata, nodes: list[str], io_type: str | None) -> bytes:
    """The second step: quantize the calibrated model, ops writing `nodes` kept in float; then what
    `TFLiteConverter.convert` does last (deduplicate read-only buffers, write the conversion metadata), so that
    with no node kept in float the file is byte for byte `ptq.convert`'s int8 file."""
    import copy

    from .._keras import tf
    from tensorflow.lite.python import convert, util
    from tensorflow.lite.python.convert_phase import ConverterError
    from tensorflow.lite.tools import flatbuffer_utils

    dtype = tf.int8 if io_type == "int8" else tf.float32
    try:
        data = convert.mlir_quantize(calibrated, input_data_type=dtype, output_data_type=dtype,
                                     denylisted_nodes=list(nodes) or None)
    except (ConverterError, ValueError, RuntimeError) as e:
        raise UnsupportedModel(f"int8 quantization with {len(nodes)} op(s) kept in float failed: {first_line(e)[:300]}",
                               fix="rerun with --debug for the converter's log; without --max-accuracy-drop the "
                                   "plain int8 file can still be made") from e
    model = flatbuffer_utils.convert_bytearray_to_object(convert.deduplicate_readonly_buffers(data))
    record = copy.deepcopy(metadata)
    record.options.modelOptimizationModes.extend(util.get_sparsity_modes(model))
    record.environment.modelHash = util.get_model_hash(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(util.populate_conversion_metadata(model, record)))


class _TFLiteGraph:
    """The ops of the calibrated float graph, each given to a Keras layer."""

    def __init__(self, calibrated: bytes, keras_model):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        self.calibrated = calibrated
        it = Interpreter(model_content=calibrated,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        names = {t["index"]: t["name"] for t in it.get_tensor_details()}
        self.inputs = [names[d["index"]] for d in it.get_input_details()]
        self.outputs = [names[d["index"]] for d in it.get_output_details()]
        self.ops = []  # (op name, input tensor names, output tensor names)
        for op in it._get_ops_details():  # stable since TF 2.4 (see runtime.session.tflite_ops)
            self.ops.append((op["op_name"], [names[i] for i in op["inputs"] if i >= 0 and i in names],
                             [names[i] for i in op["outputs"] if i >= 0 and i in names]))
        produced = {o for _, _, outs in self.ops for o in outs}
        self.activations = produced | set(self.inputs)
        paths = layer_paths(keras_model) if keras_model is not None else None
        self.layers = _assign_layers([outs[0] if outs else "" for _, _, outs in self.ops],
                                     [[i for i in ins if i in self.activations] for _, ins, _ in self.ops],
                                     [outs for _, _, outs in self.ops], paths)

    def nodes_by_layer(self) -> dict[str, list[str]]:
        """{layer: the output tensor names of its ops} (what `denylisted_nodes` takes)."""
        found: dict[str, list[str]] = {}
        for (_, _, outs), layer in zip(self.ops, self.layers):
            if layer is not None:
                found.setdefault(layer, []).extend(outs)
        return found


def _rank_tflite(graph: _TFLiteGraph, plain: bytes, samples: dict[str, np.ndarray], inputs: list[TensorSpec],
                 float_io: bool) -> tuple[list[tuple[str, float]], dict[str, str]]:
    """Layers by their int8 error (the module doc's measure), worst first; and a reason for each."""
    rep, acc, scales = _tensor_errors(graph, plain, samples, inputs)
    fixed = set() if float_io else set(graph.inputs) | set(graph.outputs)
    layer_score: dict[str, float] = {}
    reason: dict[str, str] = {}
    order: dict[str, int] = {}
    for i, ((op, ins, outs), layer) in enumerate(zip(graph.ops, graph.layers)):
        if layer is None:
            continue
        order.setdefault(layer, i)
        acts = [t for t in ins if t in graph.activations]
        terms = []
        for t in outs:
            if t in rep and t not in fixed:
                terms.append((rep[t], f"its {op} output cannot be held in int8 (scale {scales[t]:.4g}): "
                                      f"{rep[t]:.2f} of each channel's spread lost"))
        for t in acts:
            if t in rep and t not in fixed:
                terms.append((rep[t], f"it reads {t.split(';')[0]}, which int8 cannot hold (scale {scales[t]:.4g}): "
                                      f"{rep[t]:.2f} of each channel's spread lost"))
        worst_in = max((acc.get(t, 0.0) for t in acts), default=0.0)
        for t in outs:
            if t in acc:
                gain = acc[t] - worst_in
                terms.append((gain, f"its int8 {op} kernel adds error: {gain:.2f} of each channel's spread"))
        best = max(terms, key=lambda term: term[0], default=(0.0, "no int8 error measured"))
        if best[0] > layer_score.get(layer, -1.0):
            layer_score[layer], reason[layer] = max(0.0, best[0]), best[1]
    ranked = sorted(layer_score, key=lambda name: (-layer_score[name], order[name]))
    return [(name, layer_score[name]) for name in ranked], reason


def _tensor_errors(graph: _TFLiteGraph, plain: bytes, samples: dict[str, np.ndarray], inputs: list[TensorSpec]):
    """Per activation tensor: (representation error, accumulated error, scale) of the int8 file (module doc)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ..card import Quantization
    from ..preprocess import quantize

    def interpreter(content: bytes):
        it = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        return it

    f_it = _FloatRunner(graph.calibrated, interpreter)
    q_it = interpreter(plain)
    f_by_name = {t["name"]: t["index"] for t in f_it.it.get_tensor_details()}
    q_details = {t["name"]: t for t in q_it.get_tensor_details()}
    watched = {}
    for name in graph.activations:
        d = q_details.get(name)
        if d is None or name not in f_by_name or np.dtype(d["dtype"]) != np.int8:
            continue
        scales = d["quantization_parameters"]["scales"]
        if len(scales) != 1 or scales[0] == 0:
            continue
        watched[name] = (f_by_name[name], d["index"], float(scales[0]),
                         int(d["quantization_parameters"]["zero_points"][0]))
    stats = {name: _ChannelStats() for name in watched}
    q_inputs = _input_indices(q_it, inputs)
    batch = f_it.batch
    n = len(next(iter(samples.values())))
    for start in range(0, max(n - batch + 1, 1), batch):
        feeds = {t.name: _batch_of(samples[t.name], start, batch).astype(np.dtype(t.dtype), copy=False)
                 for t in inputs}
        f_it.run(feeds)
        for t in inputs:
            idx, detail = q_inputs[t.name]
            q = detail["quantization_parameters"]
            quant = Quantization(scale=float(q["scales"][0]), zero_point=int(q["zero_points"][0])) \
                if len(q["scales"]) else None
            q_it.set_tensor(idx, quantize(feeds[t.name], np.dtype(detail["dtype"]), quant))
        q_it.invoke()
        for name, (fi, qi, scale, zp) in watched.items():
            f = f_it.it.get_tensor(fi).astype(np.float64)
            dq = (q_it.get_tensor(qi).astype(np.float64) - zp) * scale
            rounded = (np.clip(np.rint(f / scale) + zp, -128, 127) - zp) * scale
            stats[name].add(f, f - rounded, f - dq)
    rep = {name: s.relative(0) for name, s in stats.items()}
    acc = {name: s.relative(1) for name, s in stats.items()}
    return rep, acc, {name: w[2] for name, w in watched.items()}


class _FloatRunner:
    """The calibrated float graph on LiteRT's builtin kernels, every tensor kept."""

    def __init__(self, calibrated: bytes, make):
        self.it = make(calibrated)
        self.batch = max(1, int(self.it.get_input_details()[0]["shape"][0]))
        self.indices = None

    def run(self, feeds: dict[str, np.ndarray]) -> None:
        if self.indices is None:
            self.indices = {name: idx for name, (idx, _) in _input_indices(self.it, None, list(feeds)).items()}
        for name, value in feeds.items():
            self.it.set_tensor(self.indices[name], value)
        self.it.invoke()


def _input_indices(it, inputs: list[TensorSpec] | None, names: list[str] | None = None) -> dict[str, tuple]:
    """{model input name: (tensor index, detail)}: by the signature's names, else by order."""
    names = names if names is not None else [t.name for t in inputs]
    details = it.get_input_details()
    sigs = it.get_signature_list()
    if sigs:
        key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
        by_sig = it.get_signature_runner(key).get_input_details()
        if all(n in by_sig for n in names):
            by_index = {d["index"]: d for d in details}
            return {n: (by_sig[n]["index"], by_index.get(by_sig[n]["index"], by_sig[n])) for n in names}
    return {n: (d["index"], d) for n, d in zip(names, details)}


def _batch_of(a: np.ndarray, start: int, batch: int) -> np.ndarray:
    rows = np.asarray(a[start:start + batch])
    if len(rows) < batch:
        rows = np.concatenate([rows, np.repeat(rows[-1:], batch - len(rows), axis=0)])
    return rows


class _ChannelStats:
    """Per-channel sums of a float tensor and of error arrays against it (channels = the last axis)."""

    def __init__(self):
        self.n = 0
        self.s = self.s2 = None
        self.e2: list = []

    def add(self, f: np.ndarray, *errors: np.ndarray) -> None:
        c = f.shape[-1] if f.ndim >= 2 else 1
        f = f.reshape(-1, c)
        if self.s is None:
            self.s, self.s2 = np.zeros(c), np.zeros(c)
            self.e2 = [np.zeros(c) for _ in errors]
        self.n += len(f)
        self.s += f.sum(axis=0)
        self.s2 += (f * f).sum(axis=0)
        for acc, e in zip(self.e2, errors):
            acc += (e.reshape(-1, c) ** 2).sum(axis=0)

    def relative(self, which: int) -> float:
        """Mean over channels of RMSE / std of the float values (rms for channels that never vary)."""
        if not self.n:
            return 0.0
        mean = self.s / self.n
        ms = self.s2 / self.n
        std = np.sqrt(np.maximum(ms - mean * mean, 0.0))
        rms = np.sqrt(ms)
        denom = np.where(std > 1e-3 * rms, std, rms)
        ok = denom > 0
        if not ok.any():
            return 0.0
        return float(np.mean(np.sqrt(self.e2[which][ok] / self.n) / denom[ok]))


# ------------------------------------------------------------------------------------------------- layers
def layer_paths(model) -> list[str]:
    """The leaf layers of a Keras model as paths, in layer order: "dense", or "base/conv" for a layer of a nested
    model "base" (the path TensorFlow puts in op names: "model/base/conv/Conv2D").

    Example:
        layer_paths(model)  # ["small", "huge", "cat", "norm", "hidden", "probs"]
    """
    paths: list[str] = []

    def walk(m, prefix: str) -> None:
        for layer in getattr(m, "layers", []):
            if type(layer).__name__ == "InputLayer":
                continue
            if getattr(layer, "layers", None):
                walk(layer, f"{prefix}{layer.name}/")
            else:
                paths.append(prefix + layer.name)

    walk(model, "")
    return paths


def match_layer(name: str, paths: list[str] | None) -> str | None:
    """The Keras layer an op's tensor name (or an ONNX node name) belongs to, or None.

    A name like "model/base/conv/BiasAdd;model/base/relu/Relu" names layers by path; the outermost match of each
    ";"-part wins (a path must be followed by an op name), and among parts the layer first in `paths` (fused
    conv + batch norm + ReLU belong to the conv). Without `paths` (a SavedModel graph), the layer is the name's
    first part without its last segment ("model/conv0b/Conv2D" -> "model/conv0b").

    Args:
        name: a TFLite tensor name or an ONNX node name.
        paths: `layer_paths(model)`, or None for a graph without Keras layers.

    Returns:
        The layer's path, or None when the name names no layer (e.g. "StatefulPartitionedCall:0").

    Example:
        match_layer("outer/base/r/Relu;outer/base/c1/Conv2D", ["base/c1", "base/r"])  # "base/c1"
    """
    parts = [p.split(":")[0] for p in name.split(";") if p]
    if paths is None:
        segs = parts[0].split("/") if parts else []
        return "/".join(segs[:-1]) or None
    index = {tuple(p.split("/")): i for i, p in enumerate(paths)}
    lengths = sorted({len(k) for k in index}, reverse=True)
    best = None
    for part in parts:
        segs = part.split("/")
        found = None
        for start in range(len(segs) - 1):
            for n in lengths:
                if start + n < len(segs) and tuple(segs[start:start + n]) in index:
                    found = index[tuple(segs[start:start + n])]
                    break
            if found is not None:
                break
        if found is not None and (best is None or found < best):
            best = found
    return paths[best] if best is not None else None


def _assign_layers(names: list[str], act_inputs: list[list[str]], outputs: list[list[str]],
                   paths: list[str] | None) -> list[str | None]:
    """A layer for each op (in graph order): by its name, else its producer's layer, else its consumer's."""
    layers = [match_layer(n, paths) if n else None for n in names]
    producer = {t: i for i, outs in enumerate(outputs) for t in outs}
    for i, ins in enumerate(act_inputs):
        if layers[i] is None:
            for t in ins:
                p = producer.get(t)
                if p is not None and layers[p] is not None:
                    layers[i] = layers[p]
                    break
    consumers: dict[str, list[int]] = {}
    for i, ins in enumerate(act_inputs):
        for t in ins:
            consumers.setdefault(t, []).append(i)
    for i in reversed(range(len(layers))):
        if layers[i] is None:
            for t in outputs[i]:
                found = [layers[j] for j in consumers.get(t, []) if layers[j] is not None]
                if found:
                    layers[i] = found[0]
                    break
    return layers


# ------------------------------------------------------------------------------------------------- search
def _search(measure, ranked: list[str], max_drop: float, progress: Progress | None):
    """Plain int8, then the top k ranked layers in float: k doubling until the bound holds, then bisection.

    Returns:
        (candidates in the order measured, the chosen one, its bytes, its excluded nodes, met)
    """
    n_layers = len(ranked)
    steps = math.ceil(math.log2(n_layers)) if n_layers > 1 else 0
    most = 1 + (steps + 1 if n_layers else 0) + steps
    tried: dict[int, tuple] = {}
    order: list[int] = []

    def holds(k: int) -> bool:
        if k not in tried:
            tried[k] = measure(ranked[:k])
            order.append(k)
            if progress is not None:
                progress(len(order), max(most, len(order)))
        return _meets(tried[k][0].drop, max_drop)

    if not holds(0) and n_layers:
        lo, hi, k = 0, None, 1
        while True:
            if holds(k):
                hi = k
                break
            lo = k
            if k >= n_layers:
                break
            k = min(2 * k, n_layers)
        while hi is not None and hi - lo > 1:
            mid = (lo + hi) // 2
            if holds(mid):
                hi = mid
            else:
                lo = mid
    if progress is not None:
        progress(len(order), len(order))
    met_ks = [k for k in order if _meets(tried[k][0].drop, max_drop)]
    best = min(met_ks) if met_ks else min(order, key=lambda k: (tried[k][0].drop, k))
    cand, data, nodes = tried[best]
    return [tried[k][0] for k in order], cand, data, nodes, bool(met_ks)


def _notes(candidates: list[Candidate], chosen: Candidate, met: bool, max_drop: float, metric: str,
           n_ranked: int, extra: list[str], slower: tuple[float, float] | None) -> list[str]:
    unit = "% of the Keras mae" if metric == "mae" else "points"
    plain = candidates[0]
    notes = []
    if chosen is plain and met:
        notes.append(f"plain int8 keeps the bound: it loses {plain.drop:.2f} {unit} (at most {max_drop:g})")
    elif met:
        notes.append(f"plain int8 loses {plain.drop:.2f} {unit} (more than {max_drop:g}); with "
                     f"{len(chosen.float_layers)} layer(s) in float ({', '.join(chosen.float_layers)}) the file "
                     f"loses {chosen.drop:.2f}")
    else:
        most = max(candidates, key=lambda c: len(c.float_layers))
        notes.append(f"the bound of {max_drop:g} {unit} cannot be met: plain int8 loses {plain.drop:.2f}, "
                     f"{len(most.float_layers)} of {n_ranked} ranked layer(s) in float lose {most.drop:.2f}; "
                     f"kept the best candidate measured ({len(chosen.float_layers)} float layer(s), "
                     f"{chosen.drop:.2f} {unit})")
    if slower is not None:
        base, ms = slower
        notes.append(f"the float island makes the file {100 * (ms / base - 1):.0f}% slower than plain int8 "
                     f"({ms:.4g} ms vs {base:.4g} ms per one-sample invoke, measured twice)")
    return notes + [e for e in dict.fromkeys(extra) if e]


# ------------------------------------------------------------------------------------------------- measuring
def _measure_file(path: Path, eval_x: dict[str, np.ndarray], eval_y: np.ndarray, metric: str, kind: str | None,
                  output: str, threads: int | None = None, latency: bool = True) -> tuple[float, float | None, str]:
    """(metric on the evaluation data, median one-sample latency in ms, the runtime's note) of a file as
    deployed: `open_session` with its default kernels (and `threads`, default: the runtime's) and its own input
    quantization. `latency=False`: not timed (None; 0.0 still for a file that failed on the data)."""
    from ..errors import RuntimeFailure
    from ..runtime.session import open_session

    session = open_session(path, threads=threads)
    try:
        outputs = session.run({t.name: np.asarray(eval_x[t.name]) for t in session.inputs})
    except RuntimeFailure as e:  # a candidate that cannot run on the data scores the worst there is
        worst = 0.0 if HIGHER_IS_BETTER[metric] else float(np.finfo(np.float32).max)
        return worst, 0.0, (f"a candidate failed on sample {e.sample} of the evaluation data ({e.op or 'an op'}: "
                            f"{e.reason}), scored as the worst")
    if output not in outputs:
        raise UnsupportedModel(f"{path.suffix} candidate has outputs {list(outputs)}, not {output!r}",
                               fix="please report this model")
    value = score(metric, outputs[output], eval_y, kind)
    return value, _latency_ms(session, eval_x) if latency else None, session.note


def _latency_ms(session, eval_x: dict[str, np.ndarray]) -> float:
    """Median one-sample invoke time of an open session, in ms (see `LATENCY_RUNS`)."""
    from ..preprocess import quantize

    one = {t.name: quantize(np.asarray(eval_x[t.name][:1]), np.dtype(t.dtype), t.quantization)
           for t in session.inputs}
    session.run_raw(one)
    start = time.perf_counter()
    while time.perf_counter() - start < LATENCY_WARMUP_S:
        session.run_raw(one)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < LATENCY_RUNS or (len(times) < LATENCY_MAX_RUNS
                                        and time.perf_counter() - start < LATENCY_BUDGET_S):
        t0 = time.perf_counter()
        session.run_raw(one)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def _confirmed_slowdown(candidates: list[Candidate], chosen: Candidate, path_of, eval_x) -> tuple[float, float] | None:
    """(plain ms, chosen ms) when the chosen file measured more than `SLOWER_NOTE` slower than plain int8 and a
    second measurement of both, back to back, agrees (microsecond timings on a busy machine are noisy); else
    None."""
    from ..runtime.session import open_session

    plain = candidates[0]
    if chosen is plain or chosen.latency_ms <= (1 + SLOWER_NOTE) * plain.latency_ms:
        return None
    again = [_latency_ms(open_session(path_of(c)), eval_x) for c in (plain, chosen)]
    return (again[0], again[1]) if again[1] > (1 + SLOWER_NOTE) * again[0] else None


def _gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6, mtime=0))  # as the pipeline measures files


def _tflite_float_ops(data: bytes) -> list[str]:
    from ..runtime.session import float_ops

    return float_ops(data)


def tflite_int8_weight_fraction(data: bytes) -> float:
    """Share of a .tflite file's weight bytes stored as int8.

    Weights are the constant tensors: int8 kernels, quantized int32 biases and float kernels/biases (float32 or
    float16); int32/int64 constants without quantization (shapes, axes) are not weights. Buffers shared by
    several tensors count once.

    Args:
        data: the file's bytes.

    Returns:
        int8 bytes / weight bytes, from 0 to 1 (1.0 for a file without weights).

    Example:
        tflite_int8_weight_fraction(Path("m.int8.tflite").read_bytes())  # 0.97
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    int8_types = {schema.TensorType.INT8, schema.TensorType.UINT8}
    float_types = {schema.TensorType.FLOAT32, schema.TensorType.FLOAT16}
    int_types = {schema.TensorType.INT32, schema.TensorType.INT64, schema.TensorType.INT16}
    seen: set[int] = set()
    int8 = total = 0
    for sub in model.subgraphs:
        for t in sub.tensors:
            if t.buffer in seen or t.buffer >= len(model.buffers):
                continue
            buf = model.buffers[t.buffer]
            size = len(buf.data) if buf.data is not None else int(getattr(buf, "size", 0) or 0)
            if not size:
                continue
            quantized = t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale)
            if t.type in int8_types:
                int8 += size
            elif not (t.type in float_types or (t.type in int_types and quantized)):
                continue
            seen.add(t.buffer)
            total += size
    return int8 / total if total else 1.0


def onnx_int8_weight_fraction(path: Path) -> float:
    """Share of an ONNX file's weight bytes stored as int8.

    Args:
        path: the .onnx file.

    Returns:
        Bytes of int8/uint8 initializers that a DequantizeLinear reads / all weight bytes (those, the int32
        biases it reads, and float initializers that are not Q/DQ scales); 1.0 for a file without weights.

    Example:
        onnx_int8_weight_fraction(Path("m.int8.onnx"))  # 0.97
    """
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    dequantized = {n.input[0] for n in g.node if n.op_type == "DequantizeLinear"}
    params = {i for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") for i in n.input[1:]}
    int8 = total = 0
    for init in g.initializer:
        if init.name in params:
            continue
        a = numpy_helper.to_array(init)
        if init.name in dequantized:
            total += a.nbytes
            int8 += a.nbytes if a.dtype in (np.int8, np.uint8) else 0
        elif a.dtype.kind == "f":
            total += a.nbytes
    return int8 / total if total else 1.0


# ------------------------------------------------------------------------------------------------- ONNX
def search_onnx(float_onnx: Path, out: Path, calibration: dict[str, np.ndarray], eval_x: dict[str, np.ndarray],
                eval_y: np.ndarray, *, metric: str, kind: str | None, output: str, keras_value: float,
                max_drop: float, inputs: list[TensorSpec], ranking: list[tuple[str, float]],
                progress: Progress | None = None, reasons: dict[str, str] | None = None) -> GateResult:
    """The same search for the int8 ONNX file: the ranked layers' nodes excluded from quantization
    (`nodes_to_exclude`), each candidate measured on ONNX Runtime (see the module doc).

    Args:
        float_onnx: the float ONNX file (`edgekeras.export.onnx.to_onnx`).
        out: where the chosen int8 ONNX file is written.
        calibration: representative inputs by input name; inputs: the model's inputs (names, dtypes).
        eval_x, eval_y, metric, kind, output, keras_value, max_drop: as for `search_tflite`.
        ranking: the layers by int8 error, worst first (`search_tflite(...).ranking`); layers with no node in
            the ONNX graph are left out, with a note.
        progress: called with (candidates measured, candidates at most).
        reasons: what int8 does to each layer (`search_tflite(...).reasons`), for the record.

    Returns:
        A `GateResult` (runtime "onnxruntime"); `data` is the chosen file, also written to `out`.

    Raises:
        BadInput: inconsistent evaluation data, an unknown metric, a bound that is not a number.
        UnsupportedModel: ONNX Runtime's quantizer fails on this model.

    Example:
        r = search_onnx(Path("m.onnx"), Path("m.int8.onnx"), calib, {"image": x}, y, metric="accuracy",
                        kind="probabilities", output="probs", keras_value=0.97, max_drop=0.5,
                        inputs=src.inputs, ranking=tflite_result.ranking)
    """
    import onnxruntime
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..export.onnx import INT8_SETTINGS, float_nodes

    _check_args(metric, max_drop, keras_value, eval_x, eval_y, [t.name for t in inputs])
    if not calibration:
        raise BadInput("the accuracy gate needs calibration data", fix="pass calibration data (--calibration)")
    n_calib = len(next(iter(calibration.values())))
    with tempfile.TemporaryDirectory(prefix="edgekeras-gate-onnx-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        cache = Path(tmp) / "calibration.json"
        try:
            quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
        except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as e:
            raise UnsupportedModel(f"ONNX Runtime's quantization pre-processing failed: {first_line(e)[:300]}",
                                   fix="rerun with --debug for details") from e
        names = [name for name, _ in ranking]
        nodes_of = _onnx_nodes_by_layer(pre, names)
        ranked = [name for name in names if nodes_of.get(name)]
        extra = []
        absent = [name for name in names if not nodes_of.get(name)]
        if absent:
            extra.append(f"{len(absent)} ranked layer(s) have no node in the ONNX graph and were not searched: "
                         f"{', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}")

        def measure(layers: list[str]) -> tuple[Candidate, bytes, list[str]]:
            nodes = [n for layer in layers for n in nodes_of[layer]]
            path = Path(tmp) / f"candidate{len(layers)}.onnx"
            _quantize_onnx(pre, path, calibration, inputs, nodes, cache)
            value, latency, note = _measure_file(path, eval_x, eval_y, metric, kind, output)
            extra.append(note)
            data = path.read_bytes()
            cand = Candidate(float_layers=list(layers), value=value, drop=drop_of(metric, value, keras_value),
                             bytes=len(data), gzip_bytes=_gzip_size(data), latency_ms=latency,
                             int8_weight_fraction=onnx_int8_weight_fraction(path), float_ops=float_nodes(path))
            return cand, data, nodes

        candidates, chosen, data, nodes, met = _search(measure, ranked, max_drop, progress)
        slower = _confirmed_slowdown(candidates, chosen, lambda c: Path(tmp) / f"candidate{len(c.float_layers)}.onnx",
                                     eval_x)
    Path(out).write_bytes(data)
    notes = _notes(candidates, chosen, met, max_drop, metric, len(ranked), extra, slower)
    rank = dict(ranking)
    base = {"mode": "int8", "quantizer": "onnxruntime.quantization.quantize_static",
            "onnxruntime": onnxruntime.__version__, **INT8_SETTINGS, "calibration_samples": n_calib}
    return GateResult(met=met, max_drop=float(max_drop), keras_value=float(keras_value), metric=metric,
                      ranking=[(name, rank[name]) for name in ranked], candidates=candidates, chosen=chosen,
                      data=data, notes=notes, reasons=dict(reasons or {}), base_settings=base, runtime="onnxruntime",
                      excluded=nodes)


def _onnx_nodes_by_layer(path: Path, layers: list[str]) -> dict[str, list[str]]:
    """{layer: names of its ONNX nodes}: by name (tf2onnx keeps TensorFlow op names), else by neighbours."""
    import onnx

    g = onnx.load(str(path)).graph
    weights = {i.name for i in g.initializer}
    nodes = list(g.node)
    assigned = _assign_layers([n.name for n in nodes], [[i for i in n.input if i and i not in weights] for n in nodes],
                              [[o for o in n.output if o] for n in nodes], layers)
    found: dict[str, list[str]] = {}
    for node, layer in zip(nodes, assigned):
        if layer is not None and node.name:
            found.setdefault(layer, []).append(node.name)
    return found


def _quantize_onnx(pre: Path, out: Path, calibration: dict[str, np.ndarray], inputs: list[TensorSpec],
                   exclude: list[str], cache: Path, sixteen_bit: list[str] = ()) -> None:
    """`edgekeras.export.onnx.quantize_int8`'s quantization (INT8_SETTINGS), `exclude` kept float, the tensors
    `sixteen_bit` as uint16 activations; calibrates once (the ranges are cached in `cache` for the next
    candidates)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from ..export.onnx import INT8_SETTINGS, _reader

    types = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}
    s = INT8_SETTINGS
    try:
        quantize_static(str(pre), str(out), _reader(calibration, inputs),
                        quant_format=getattr(QuantFormat, s["format"]), per_channel=s["per_channel"],
                        reduce_range=s["reduce_range"],
                        activation_type=types[s["activation_type"]], weight_type=types[s["weight_type"]],
                        calibrate_method=getattr(CalibrationMethod, s["calibrate_method"]),
                        nodes_to_exclude=list(exclude), calibration_cache_path=str(cache),
                        extra_options={"TensorQuantOverrides": {t: [{"quant_type": QuantType.QUInt16}]
                                                                for t in sixteen_bit}} if sixteen_bit else None)
    except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as e:
        raise UnsupportedModel(f"ONNX int8 quantization with {len(exclude)} node(s) kept in float failed in ONNX "
                               f"Runtime's quantizer: {type(e).__name__}: {first_line(e)[:300]}",
                               fix="rerun with --debug for details; without --max-accuracy-drop the plain int8 ONNX "
                                   "file can still be made") from e
