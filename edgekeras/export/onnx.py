"""ONNX export: float32 with tf2onnx, int8 (QDQ: 7-bit per-channel weights, uint8 activations) with ONNX Runtime's
static quantizer.

tf2onnx's `from_keras` is unreliable on TF 2.21. edgekeras freezes the function the model was traced into
once (`SourceModel.concrete_function`, which also runs grouped convolutions through their plain op) and
converts the frozen graph; inputs keep the Keras input names and outputs the Keras output names.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import numpy as np

from ..card import TensorSpec
from ..errors import UnsupportedModel, first_line
from ..source import SourceModel

DEFAULT_OPSET = 17
_NO_TFLITE_HINT = "the TFLite files can be made without --onnx"
# What tf2onnx raises when it cannot convert a graph (its own checks are ValueError/AssertionError).
_TF2ONNX_ERRORS = (ValueError, KeyError, RuntimeError, NotImplementedError, TypeError, AssertionError)


def to_onnx(source: SourceModel, opset: int = DEFAULT_OPSET) -> tuple[bytes, dict]:
    """Convert `source` to a float32 ONNX model.

    Returns:
        (serialized ModelProto, settings)

    Raises:
        UnsupportedModel: tf2onnx cannot convert the model (the message names the op when it can).
    """
    import tf2onnx
    from tf2onnx import constants as tf2onnx_constants

    from .._keras import tf

    supported = [o for o in tf2onnx_constants.OPSET_TO_IR_VERSION if o >= 13]
    if opset not in supported:
        raise UnsupportedModel(f"ONNX opset {opset} is not one tf2onnx {tf2onnx.__version__} writes",
                               fix=f"choose an opset from {min(supported)} to {max(supported)} (default "
                                   f"{DEFAULT_OPSET})")
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    concrete = source.concrete_function()
    # Frozen: tf2onnx's from_function leaves captured eager tensors (e.g. the mean and variance of a Keras
    # Normalization layer, as in EfficientNet) as graph inputs with no value; freezing makes them constants.
    frozen = frozen_for_onnx(source)
    out_names = tf.nest.flatten({k: k for k in concrete.structured_outputs})  # the order of frozen.outputs
    inputs = [t.name for t in frozen.inputs]
    rename = {**dict(zip(inputs, [t.name for t in source.inputs])),
              **{t.name: name for t, name in zip(frozen.outputs, out_names)}}
    try:
        with _deterministic_merges():
            proto, _ = tf2onnx.convert.from_graph_def(inlinable(frozen.graph.as_graph_def()), input_names=inputs,
                                                      output_names=[t.name for t in frozen.outputs], opset=opset,
                                                      tensors_to_rename=rename)
    except _TF2ONNX_ERRORS as e:
        raise UnsupportedModel(f"ONNX export failed: tf2onnx could not convert this model ({type(e).__name__}: "
                               f"{first_line(e)[:300]})",
                               fix=f"{_NO_TFLITE_HINT}; rerun with --debug for tf2onnx's log") from e
    _erfc_as_erf(proto.graph)
    canonical_order(proto.graph)
    canonical_dim_names(proto.graph)
    unconverted = [f"{n.op_type} ({n.name})" for n in proto.graph.node if n.domain not in ("", "ai.onnx")]
    if unconverted:
        raise UnsupportedModel(f"ONNX export failed: tf2onnx left TensorFlow op(s) it cannot express in ONNX: "
                               f"{', '.join(unconverted[:5])}", fix=f"{_NO_TFLITE_HINT}, or replace those layers")
    data = proto.SerializeToString()
    if len(data) >= 2 ** 31:
        raise UnsupportedModel("the ONNX model is larger than 2 GB, which needs external data files; "
                               "edgekeras writes single-file ONNX only", fix=_NO_TFLITE_HINT)
    names = [i.name for i in proto.graph.input]
    if names != [t.name for t in source.inputs]:
        raise UnsupportedModel(f"ONNX export produced inputs {names}, expected {[t.name for t in source.inputs]}",
                               fix=f"{_NO_TFLITE_HINT}; please report this model")
    settings = {"mode": "float32", "converter": "tf2onnx (frozen graph_def)", "tf2onnx": tf2onnx.__version__,
                "opset": opset, "dynamic_batch": True}
    return data, settings


# The ops TensorFlow's freezing lowers a While/If into (TF1 control flow, the frozen graph TFLite reads).
_LOWERED_CONTROL_FLOW = {"Enter", "Exit", "NextIteration", "LoopCond", "Switch", "Merge"}


def frozen_for_onnx(source: SourceModel):
    """The frozen function tf2onnx converts: the model's own (`SourceModel.frozen_function`, shared with every TFLite
    conversion), unless freezing lowered a loop or a condition into TF1 control flow; then the function frozen again
    with its While/If kept as they are.

    A recurrent layer that is not unrolled is a While loop over TensorList ops. Lowered (what the TFLite converter
    reads), tf2onnx wrote an ONNX file that ONNX Runtime refused ("Invalid tensor data type 0", a rolled Keras 3
    LSTM); kept as a While, it becomes an ONNX Loop that matched Keras within 1e-7 (what Keras 3's own ONNX export
    gets from tf2onnx, which freezes that way). Graphs without control flow are not frozen twice.
    """
    frozen = source.frozen_function()
    if not any(op.type in _LOWERED_CONTROL_FLOW for op in frozen.graph.get_operations()):
        return frozen
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from ..source import _drop_custom_gradients

    kept = convert_variables_to_constants_v2(source.concrete_function(), lower_control_flow=False)
    _drop_custom_gradients(kept.graph)
    return kept


@contextlib.contextmanager
def _deterministic_merges():
    """tf2onnx merges duplicated nodes (three output heads taking the Shape of one tensor) keeping the first of its
    node list, an order its other optimizers leave to the iteration of sets: the surviving node's name (the
    `frames` head's or the `contours` head's) changed from process to process. The survivor is chosen here by name
    among those tf2onnx ranks first."""
    from tf2onnx.optimizer.merge_duplicated_nodes_optimizer import MergeDuplicatedNodesOptimizer as merger

    original = merger._merge_nodes_that_are_duplicated

    def by_name(self, nodes, graph):
        nodes.sort(key=lambda n: n.name)  # a stable sort: tf2onnx's own key (outputs used) still comes first
        return original(self, nodes, graph)

    merger._merge_nodes_that_are_duplicated = by_name
    try:
        yield
    finally:
        merger._merge_nodes_that_are_duplicated = original


_GENERATED = re.compile(r"__\d+")  # tf2onnx's counter suffixes: Transpose__66, const_fold_opt__76__79
_PORT = re.compile(r"(:\d+)$")


def canonical_order(graph) -> None:
    """Put the graph in an order and a naming that depend on its structure only, in place: the same model gives
    the same bytes in every process.

    tf2onnx's optimizers visit nodes in the iteration order of sets, so the same model came out with its nodes in
    another order and its generated names (`Transpose__66`, `const_fold_opt__76`) numbered differently in each
    process (a 3-output SavedModel: a different sha256 in every run). Nodes are ordered by a walk back from the
    graph's outputs, in order, through each node's inputs, in order; generated numbers are renumbered in that
    order; initializers follow their first use. Names from the TensorFlow graph (the Keras layer paths) are kept.
    """
    nodes = list(graph.node)
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    order: list[int] = []
    done: set[int] = set()
    for out in [o.name for o in graph.output]:
        stack = [(producer[out], False)] if out in producer else []
        while stack:
            i, expanded = stack.pop()
            if i in done:
                continue
            if expanded:
                done.add(i)
                order.append(i)
                continue
            stack.append((i, True))
            for name in reversed(list(nodes[i].input) + _outer_inputs(nodes[i])):
                j = producer.get(name)
                if j is not None and j not in done:
                    stack.append((j, False))
    order += [i for i in range(len(nodes)) if i not in done]  # nodes no output needs (tf2onnx leaves none)
    nodes = [nodes[i] for i in order]
    rename: dict[str, str] = {}

    def canon(name: str) -> str:
        if not name or not _GENERATED.search(name):
            return name
        if name not in rename:
            port = _PORT.search(name)
            base = _GENERATED.sub("", name[:port.start()] if port else name)
            rename[name] = f"{base}__{len(rename)}{port.group(1) if port else ''}"
        return rename[name]

    for n in nodes:
        for name in list(n.input) + list(n.output) + [n.name]:
            canon(name)
    if len(set(rename.values())) != len(rename) or set(rename.values()) & _all_names(graph) - set(rename):
        return  # a renamed name would collide with another: keep tf2onnx's names (only the order is canonical)
    for n in nodes:
        _rename_node(n, rename)
    first_use = {name: k for k, n in enumerate(nodes) for name in n.input}
    inits = sorted(graph.initializer, key=lambda t: (first_use.get(rename.get(t.name, t.name), len(nodes)), t.name))
    for t in inits:
        t.name = rename.get(t.name, t.name)
    infos = sorted(graph.value_info, key=lambda v: rename.get(v.name, v.name))
    for v in infos:
        v.name = rename.get(v.name, v.name)
    for field, items in (("node", nodes), ("initializer", inits), ("value_info", infos)):
        copies = [type(x)() for x in items]
        for c, x in zip(copies, items):
            c.CopyFrom(x)
        container = getattr(graph, field)
        del container[:]
        container.extend(copies)


_UNKNOWN_DIM = re.compile(r"unk__\d+")


def canonical_dim_names(graph) -> None:
    """Renumber tf2onnx's names of unknown dimensions (`unk__80`) in the order they appear (inputs, outputs, value
    infos, then the subgraphs of loops and conditions), in place. tf2onnx numbers them with a counter of the whole
    process, so the same SavedModel came out as `unk__79` in one fresh process and `unk__80` in another: the same
    model, other bytes (a 3-output SavedModel's sha256 differed in one run of three, measured).

    Example:
        canonical_dim_names(model.graph)   # 'unk__80', 'unk__81', ... -> 'unk__0', 'unk__1', ...
    """
    mapping: dict[str, str] = {}

    def visit(g) -> None:
        for info in list(g.input) + list(g.output) + list(g.value_info):
            for dim in info.type.tensor_type.shape.dim:
                if dim.HasField("dim_param") and _UNKNOWN_DIM.fullmatch(dim.dim_param):
                    dim.dim_param = mapping.setdefault(dim.dim_param, f"unk__{len(mapping)}")
        for node in g.node:
            for attr in node.attribute:
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    visit(sub)

    visit(graph)


def _outer_inputs(node) -> list[str]:
    """Names a node's subgraphs (Loop, If, Scan bodies) read from the enclosing graph."""
    found = []
    for a in node.attribute:
        for g in _subgraphs(a):
            local = {i.name for i in g.input} | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
            found += [name for n in g.node for name in list(n.input) + _outer_inputs(n) if name and name not in local]
    return found


def _subgraphs(attribute) -> list:
    return ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs)


def _all_names(graph) -> set[str]:
    names = {t.name for t in graph.initializer} | {v.name for v in graph.value_info}
    for n in graph.node:
        names |= set(n.input) | set(n.output) | {n.name}
        for a in n.attribute:
            for g in _subgraphs(a):
                names |= _all_names(g)
    return names


def _rename_node(node, rename: dict[str, str]) -> None:
    node.name = rename.get(node.name, node.name)
    for k, name in enumerate(node.input):
        node.input[k] = rename.get(name, name)
    for k, name in enumerate(node.output):
        node.output[k] = rename.get(name, name)
    for a in node.attribute:
        for g in _subgraphs(a):
            for n in g.node:
                _rename_node(n, rename)


def _erfc_as_erf(graph) -> None:
    """tf2onnx writes TensorFlow's Erfc (in Keras' exact GELU, ConvNeXt's) as an ONNX `Erfc`, an op ONNX does not
    have ("No Op registered for Erfc"): rewritten as 1 - Erf(x), in place."""
    import onnx
    from onnx import helper

    nodes = list(graph.node)
    if not any(n.op_type == "Erfc" and n.domain in ("", "ai.onnx") for n in nodes):
        return
    one = "edgekeras_one_f32"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(1.0, np.float32), one))
    rewritten = []
    for n in nodes:
        if n.op_type != "Erfc":
            rewritten.append(n)
            continue
        erf = f"{n.output[0]}_erf"
        rewritten += [helper.make_node("Erf", [n.input[0]], [erf], name=f"{n.name}_erf"),
                      helper.make_node("Sub", [one, erf], list(n.output), name=n.name)]
    del graph.node[:]
    graph.node.extend(rewritten)


_NO_INLINE = ("_XlaMustCompile", "_noinline")


def inlinable(graph_def):
    """The graph with its XLA-compiled calls made ordinary function calls, so that tf2onnx's function inlining
    reaches inside them.

    Keras 3 (and tf_keras inside some SavedModels) runs grouped convolutions through a function compiled with
    XLA; such a call is kept as a `StatefulPartitionedCall` that ONNX cannot express ("No Op registered for
    StatefulPartitionedCall"). Inlined, it is a plain grouped Conv2D, which exports as ONNX `Conv` with `group`.
    """
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for holder in nodes + list(graph_def.library.function):
        for attr in _NO_INLINE:
            if attr in holder.attr:
                del holder.attr[attr]
    return graph_def


#: How the int8 ONNX file is quantized (recorded in its card). Measured on five models (benchmarks and the notes
#: in ARCHITECTURE.md): with int8 x int8 per-channel weights, ONNX Runtime's fused int8 kernels overflow their
#: 16-bit intermediate sums on x86 CPUs with AVX2 but no VNNI, and the file drifts from Keras there (top-1 98.9%
#: on the digits CNN, 74% on a GRU) while it looked fine on a VNNI CPU. 7-bit weights (`reduce_range`) make the
#: int8 results bit-identical on both kinds of CPU and as faithful as the int8 TFLite file; uint8 activations
#: (what ONNX Runtime recommends on x86) made the files faster. No calibration method helped.
INT8_SETTINGS = {"format": "QDQ", "per_channel": True, "reduce_range": True, "activation_type": "uint8",
                 "weight_type": "int8", "calibrate_method": "MinMax"}


def quantize_int8(float_path: Path, out_path: Path, calibration: dict[str, np.ndarray], inputs: list[TensorSpec],
                  progress=None) -> tuple[dict, list[str]]:
    """Quantize a float ONNX file to int8 QDQ with calibration data (see `INT8_SETTINGS` for the choices and why).

    Returns:
        (settings of the quantization, nodes that stayed float as "OpType (node name)").

    Raises:
        UnsupportedModel: ONNX Runtime's quantizer fails on this model.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    pre = out_path.with_name(out_path.name + ".pre.onnx")
    n = len(next(iter(calibration.values())))
    try:
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(out_path), _reader(calibration, inputs, progress), quant_format=QuantFormat.QDQ,
                        per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as e:
        raise UnsupportedModel(f"ONNX int8 quantization failed in ONNX Runtime's quantizer: {type(e).__name__}: "
                               f"{first_line(e)[:300]}",
                               fix="rerun with --debug for details; the TFLite files and the float ONNX file can be "
                                   "made without --int8 --onnx together") from e
    finally:
        pre.unlink(missing_ok=True)
    import onnxruntime

    settings = {"mode": "int8", "quantizer": "onnxruntime.quantization.quantize_static",
                "onnxruntime": onnxruntime.__version__, **INT8_SETTINGS, "calibration_samples": n}
    return settings, float_nodes(out_path)


_STRUCTURAL = {"QuantizeLinear", "DequantizeLinear", "Identity", "Constant", "Shape", "Reshape", "Squeeze",
               "Unsqueeze", "Flatten", "Transpose", "Gather", "Slice", "Concat", "Cast"}


def float_nodes(path: Path) -> list[str]:
    """Compute nodes of a QDQ file that run in float: an input that is not dequantized int8, or an output that
    is not quantized again (ONNX Runtime fuses DequantizeLinear -> op -> QuantizeLinear into an int8 kernel)."""
    import onnx

    g = onnx.load(str(path)).graph
    made_by = {o: n for n in g.node for o in n.output}
    used_by: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            used_by.setdefault(i, []).append(n)
    weights = {i.name for i in g.initializer}
    found = []
    for node in g.node:
        if node.op_type in _STRUCTURAL:
            continue
        acts = [i for i in node.input if i and i not in weights]
        dequantized_in = all(made_by.get(i) is not None and made_by[i].op_type == "DequantizeLinear" for i in acts)
        quantized_out = all(used_by.get(o) and all(c.op_type == "QuantizeLinear" for c in used_by[o])
                            for o in node.output if o)
        if not (dequantized_in and quantized_out):
            found.append(f"{node.op_type} ({node.name})")
    return found


def _reader(calibration: dict[str, np.ndarray], inputs: list[TensorSpec], progress=None):
    """An ONNX Runtime CalibrationDataReader over the samples, one per call, in each input's dtype."""
    from onnxruntime.quantization import CalibrationDataReader

    names = [t.name for t in inputs]
    dtypes = {t.name: np.dtype(t.dtype) for t in inputs}
    n = len(calibration[names[0]])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= n:
                return None
            i, self.i = self.i, self.i + 1
            if progress is not None:
                progress(self.i, n)
            return {name: calibration[name][i:i + 1].astype(dtypes[name], copy=False) for name in names}

        def rewind(self):
            self.i = 0

    return Reader()
