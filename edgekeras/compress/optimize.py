"""Training-aware compression of tf_keras models with tfmot: pruning, clustering, QAT and their combinations.

`optimize(model, Techniques(...), x, y)` fine-tunes a copy of the model in stages and returns an `Optimized`:
a plain tf_keras model (every tfmot wrapper stripped, sparsity and clusters baked into the weights; it saves as
`.h5` and loads without custom objects) and, with QAT, the quantize-aware model the TFLite converter turns into a
full-int8 file. The caller's model is never modified.

Stages run in this order, each fine-tuning `finetune_epochs` epochs, each starting from the stripped result of
the one before:

| asked                     | stages                              | tfmot scheme of the QAT stage                    |
|---------------------------|-------------------------------------|--------------------------------------------------|
| prune                     | prune                               | -                                                |
| cluster                   | cluster                             | -                                                |
| qat                       | qat                                 | Default8BitQuantizeScheme                        |
| prune+cluster             | prune, cluster (preserve_sparsity)  | -                                                |
| prune+qat (PQAT)          | prune, qat                          | Default8BitPrunePreserveQuantizeScheme           |
| cluster+qat (CQAT)        | cluster, qat                        | Default8BitClusterPreserveQuantizeScheme         |
| prune+cluster+qat (PCQAT) | prune, cluster (preserve_sparsity), | Default8BitClusterPreserveQuantizeScheme         |
|                           | qat                                 | (preserve_sparsity=True)                         |

Support table (what each technique does to each kind of layer; a layer a technique cannot handle is left as
it is and named in `Optimized.skipped`, never an error, except QAT without `allow_float_fallback`):

| layer                                        | prune   | structured 2:4 | cluster         | qat          |
|----------------------------------------------|---------|----------------|-----------------|--------------|
| Dense, Conv2D                                | yes (1) | yes (1, 2)     | yes (4)         | yes          |
| DepthwiseConv2D                              | no      | no             | no              | yes          |
| SeparableConv1D/2D                           | yes (1) | no (3)         | pointwise (4)   | yes          |
| Conv2DTranspose                              | yes (1) | no (3)         | yes (4)         | yes          |
| Conv1D, Conv3D, Conv3DTranspose              | yes (1) | no (3)         | yes (4)         | no (5)       |
| Conv1DTranspose                              | no      | no             | yes (4)         | no (5)       |
| Embedding, LSTM, GRU, SimpleRNN              | yes (1) | no (3)         | yes (4)         | no (5)       |
| BatchNormalization                           | -       | -              | -               | after conv (7) |
| Rescaling, Normalization                     | -       | -              | -               | output only (6) |
| pooling, ReLU, Softmax, Add, Concatenate, Flatten, Reshape, Dropout | - | - | -       | yes          |
| ELU, PReLU, LayerNormalization, Lambda, custom layers | no | no        | no              | no (5)       |

(1) kernels with at least 1024 weights: smaller ones (stems, 1x1 preprocessing convs) save nothing and break
easily, so they stay dense. (2) when the input channels are a multiple of 4: 2 zeros in every 4 consecutive
weights along the input-channel axis (TFLite layout). (3) pruned unstructured to `prune` when it is given, else
left dense. (4) one set of centroids per layer, when the kernel has more weights than clusters. (5) refused with
UnsupportedModel before any training; with `allow_float_fallback` left in float (not annotated). (6) quantized
at its output only, with tfmot's own Default8BitOutputQuantizeConfig (our addition: tfmot has no config for them).
(7) right after a Conv2D, DepthwiseConv2D or Dense (tfmot quantizes the pair as one); alone: no (5).

Preserving schemes: after pruning, clustering keeps the zeros (`preserve_sparsity`) and QAT keeps them
(PrunePreserve); after clustering, QAT keeps the clusters of Conv2D and Dense kernels (ClusterPreserve).

Frozen layers (`trainable=False`, e.g. a frozen pretrained base, where most weights usually are) are compressed
like the others and fine-tuned while compressed (their surviving weights, centroids and quantization ranges
re-learn); the result has the caller's trainable flags again. `Techniques(finetune_frozen=False)` keeps their
weights instead (only the other layers fine-tune). Measured on a small digits base (99k weights, a trained
softmax head, int8 accuracy 0.969), prune 0.8, int8 accuracy after 2 epochs at 1e-4 / 2 at 1e-3 / 12 at 1e-3:
base pruned and fine-tuned (the default) 0.894 / 0.967 / 0.983; base pruned but kept frozen 0.808 / 0.922 /
0.956; base left dense 0.906 / 0.964 / 0.972, in a file 3.7x larger. On a frozen VGG19 base with random weights
(benchmarks/compression.py): pruned 50% and fine-tuned 1.000, kept frozen 0.333 (3 classes); pruned 80%, 0.667
either way at 1e-4 or 1e-3 (a random 16-layer stack does not survive losing 80% of every kernel). Frozen
kernels under 1024 weights (e.g. VGG's RGB->BGR preprocessing conv) and layers without a kernel
(BatchNormalization keeps its statistics) are not compressed.
Nested models are inlined first (`flatten`), so every technique reaches a base's layers.

Fine-tuning length, measured on the digits CNN (99k weights, 1437 training images, int8 accuracy 0.983): the
defaults (2 epochs per stage at 1e-4) keep 50% pruning, 2:4, 16 clusters, QAT and CQAT within 0.3 points, but
80% pruning loses 1.3-2.2 points; 12 epochs at 1e-3 (or 24 at 1e-4) bring 80% pruning, PQAT and PCQAT back
within 0.6 points (3 seeds).

Conversion of the result (full int8 TFLite):

    opt = optimize(model, Techniques(prune=0.8, qat=True), x_train, y_train)
    conv = tf.lite.TFLiteConverter.from_keras_model(opt.qat_model or opt.model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    conv.representative_dataset = ...   # needed without QAT; with QAT it calibrates layers left in float
    data = conv.convert()               # with QAT leave target_spec.supported_ops unset
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .._keras import keras, tf
from ..errors import BadInput, UnsupportedModel, first_line
from .recipe import CLUSTER_INITS, DEFAULT_LEARNING_RATE, STRUCTURED, Techniques

log = logging.getLogger("edgekeras.compress")

SMALL_KERNEL = 1024  # kernels with fewer weights are not pruned, and stay frozen when they were
PRUNE_END_FRACTION = 0.7  # the schedule reaches its target after 70% of the fine-tune steps; the rest recovers
MAX_MASK_UPDATES = 10
_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")


@dataclass
class LayerStats:
    """What one layer with a kernel looks like after compression.

    Attributes:
        name: layer name.
        layer_class: e.g. "Conv2D".
        techniques: what was applied to it, e.g. ["prune", "cluster", "qat"] (empty from `layer_stats` alone).
        params: all weights of the layer (bias included).
        kernel_weights: weights of its kernel(s).
        sparsity: fraction of kernel weights that are exactly zero.
        distinct: distinct values in the kernel(s).
        distinct_per_channel: the most distinct values any output channel has (what int8 per-channel
            quantization sees).
        structured_ok: with `structured`: whether every group of n consecutive weights along the input-channel
            axis has at least m zeros; None when not asked or the layer's kernel has no such axis.
        trainable: the layer's trainable flag.
    """

    name: str
    layer_class: str
    techniques: list[str]
    params: int
    kernel_weights: int
    sparsity: float
    distinct: int
    distinct_per_channel: int
    structured_ok: bool | None
    trainable: bool


@dataclass
class Optimized:
    """The result of `optimize`.

    Attributes:
        model: plain tf_keras model, every tfmot wrapper stripped, sparsity and clusters baked into the
            weights; with QAT, the float weights the QAT fine-tuning ended with. Saves as `.h5` and loads
            without custom objects; export float files (e.g. ONNX) from it.
        qat_model: with QAT, the quantize-aware model (tfmot wrappers with learned ranges) to convert to full
            int8 with `tf.lite.TFLiteConverter.from_keras_model` (see the module docstring); save/load it inside
            `tfmot.quantization.keras.quantize_scope()`. None without QAT.
        layers: `LayerStats` of every layer with a kernel, with the techniques applied to it.
        skipped: (layer, technique, reason) for layers a technique could not handle (left as they are).
        history: {metric: [value per epoch]} over every epoch of every stage, plus "sparsity".
        stages: the stage of each epoch in `history`, e.g. ["prune", "prune", "qat", "qat"].
        strip_diff: {stage: max |wrapped - stripped|} on up to 64 training samples: 0 up to float rounding for
            prune and cluster; for qat, the effect of fake quantization (qat_model vs model).
        seconds: wall time.
        techniques: the settings used.
    """

    model: Any
    qat_model: Any
    layers: list[LayerStats]
    skipped: list[tuple[str, str, str]]
    history: dict[str, list[float]]
    seconds: float
    techniques: Techniques
    stages: list[str] = field(default_factory=list)
    strip_diff: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- flatten


class _Reused:
    """A `tensor_dict` entry for `Node.map_arguments`, which pops: the same tensor for every consumer."""

    def __init__(self, tensor):
        self.tensor = tensor

    def pop(self):
        return self.tensor


def flatten(model):
    """Inline nested Functional/Sequential sub-models into one functional model with the same weights.

    Every layer is a new copy (the given model is not touched); shared layers stay shared. Layer names are
    kept, except an inner name that collides with another, which becomes "<sub-model>_<name>". A layer's
    trainable flag is its effective one (False when it or any model around it is frozen). Call arguments of
    a sub-model call (e.g. `base(x, training=False)`) are dropped: frozen BatchNormalization layers run in
    inference mode anyway; a Dropout inside a base called with training=False becomes active in training.

    Args:
        model: a Functional or Sequential tf_keras model (built).

    Returns:
        A new functional `keras.Model` with the same inputs, outputs and weights (a copy even when nothing
        was nested).

    Raises:
        UnsupportedModel: a subclassed model, or a Sequential that was never built.

    Example:
        flat = flatten(keras.models.load_model("vgg19_transfer.h5"))
        [layer.name for layer in flat.layers][:3]   # ['image', 'caffe_preprocess', 'block1_conv1']
    """
    _check_graph_model(model, "the model")
    state = _FlattenState(model)
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=layer.name)
              for t, layer in zip(model.inputs, model._input_layers)]
    outputs = _run_graph(model, inputs, state, trainable=True)
    nested_in = model._nested_inputs
    flat = keras.Model(tf.nest.pack_sequence_as(nested_in, inputs) if isinstance(nested_in, (list, dict))
                       else inputs[0], outputs, name=model.name)
    for original, new in state.pairs:
        new.set_weights(original.get_weights())
    return flat


class _FlattenState:
    def __init__(self, model):
        self.copies: dict[int, Any] = {}
        self.pairs: list[tuple[Any, Any]] = []
        self.names = {layer.name for layer in model.layers if not isinstance(layer, keras.Model)}
        self.names.update(layer.name for layer in model._input_layers)

    def copy(self, layer, owner, trainable: bool):
        """The copy of `layer` (made once; `owner` is the sub-model it belongs to, None at the top)."""
        if id(layer) in self.copies:
            return self.copies[id(layer)]
        config = layer.get_config()
        name = layer.name
        if owner is not None and name in self.names:
            name = _unique(f"{owner.name}_{layer.name}", self.names)
        self.names.add(name)
        config["name"] = name
        new = layer.__class__.from_config(config)
        new.trainable = bool(trainable and layer.trainable)
        self.copies[id(layer)] = new
        self.pairs.append((layer, new))
        return new


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def _check_graph_model(model, what: str) -> None:
    if not isinstance(model, keras.Model):
        raise BadInput(f"{what} must be a tf_keras Model, got {type(model).__name__}",
                       fix="load the model with edgekeras (tf_keras), not Keras 3")
    if not getattr(model, "_is_graph_network", False):
        kind = "Sequential model that was never built" if isinstance(model, keras.Sequential) else "subclassed model"
        raise UnsupportedModel(f"{what} ({model.name}) is a {kind}; tfmot and edgekeras need a graph of layers",
                               fix="build Sequential models with an input shape (keras.Input) or rebuild the model "
                                   "with the functional API")


def _run_graph(model, inputs: list, state: _FlattenState, trainable: bool, owner=None):
    """Call copies of `model`'s layers on `inputs` in graph order; nested models are run the same way."""
    tensors: dict[str, _Reused] = {}
    for kt, t in zip(model.inputs, inputs):
        tensors[str(id(kt))] = _Reused(t)
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.is_input:
                continue
            args, kwargs = node.map_arguments(tensors)
            layer = node.layer
            if isinstance(layer, keras.Model):
                _check_graph_model(layer, f"sub-model {layer.name!r}")
                inner_inputs = _inputs_for(layer, args, kwargs)
                outputs = _run_graph(layer, inner_inputs, state, trainable and layer.trainable, owner=layer)
            else:
                outputs = state.copy(layer, owner, trainable)(*args, **kwargs)
            for kt_id, y in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[kt_id] = _Reused(y)
    flat_outputs = [tensors[str(id(kt))].tensor for kt in tf.nest.flatten(model._nested_outputs)]
    return tf.nest.pack_sequence_as(model._nested_outputs, flat_outputs)


def _inputs_for(sub_model, args, kwargs) -> list:
    """The tensors a sub-model was called on, in the order of `sub_model.inputs`."""
    given = args[0] if args else kwargs.get("inputs")
    if isinstance(given, dict):
        return [given[name] for name in sub_model.input_names]
    flat = tf.nest.flatten(given)
    if len(flat) != len(sub_model.inputs):
        raise UnsupportedModel(f"sub-model {sub_model.name!r} is called on {len(flat)} tensor(s) but has "
                               f"{len(sub_model.inputs)} input(s)")
    return flat


def _is_nested(model) -> bool:
    return any(isinstance(layer, keras.Model) for layer in model.layers)


# --------------------------------------------------------------------------------------------- statistics


def layer_stats(model, structured: str | None = None) -> list[LayerStats]:
    """Sparsity, distinct values and m:n compliance of every layer with a kernel (nested models included).

    tfmot wrappers are looked through (their inner layer is measured), so this works on plain, pruned,
    clustered or quantize-aware models; on a wrapped model the kernel is the stored variable.

    Args:
        model: any tf_keras model.
        structured: "2:4" to also check the m:n pattern (`structured_ok`).

    Returns:
        One `LayerStats` per layer with a kernel, in layer order (techniques left empty).

    Raises:
        BadInput: an unknown `structured` pattern.

    Example:
        for s in layer_stats(model, "2:4"):
            print(s.name, f"{s.sparsity:.0%}", s.distinct_per_channel, s.structured_ok)
    """
    if structured is not None and structured not in STRUCTURED:
        raise BadInput(f"unknown structured sparsity {structured!r}; valid: {', '.join(STRUCTURED)}")
    stats = []
    for layer in _leaf_layers(model):
        inner = _unwrapped(layer)
        kernels = _kernels(layer)  # a tfmot wrapper tracks its inner layer's variables (the inner layer may not)
        if not kernels:
            continue
        values = [k.numpy() for k in kernels]
        total = sum(v.size for v in values)
        zeros = sum(int(np.count_nonzero(v == 0)) for v in values)
        per_channel = max(_distinct_per_channel(inner, v) for v in values)
        distinct = len(np.unique(np.concatenate([v.ravel() for v in values])))
        ok = _m_by_n_ok(inner, values[0], STRUCTURED[structured]) if structured else None
        weights = {id(w): w for w in [*inner.weights, *kernels]}.values()
        stats.append(LayerStats(name=inner.name, layer_class=type(inner).__name__, techniques=[],
                                params=int(sum(w.shape.num_elements() for w in weights)),
                                kernel_weights=int(total), sparsity=zeros / total if total else 0.0,
                                distinct=int(distinct), distinct_per_channel=int(per_channel), structured_ok=ok,
                                trainable=bool(inner.trainable)))
    return stats


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _unwrapped(layer):
    while isinstance(layer, keras.layers.Wrapper) and type(layer).__module__.startswith("tensorflow_model_opt"):
        layer = layer.layer
    return layer


def _kernels(layer) -> list:
    """The kernel variables of a layer (Dense/Conv kernel, depthwise/pointwise kernels, embeddings)."""
    found = {}
    for w in layer.weights:
        if _short_name(w) in _KERNEL_NAMES:
            found.setdefault(id(w), w)
    return list(found.values())


def _short_name(variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def _distinct_per_channel(layer, kernel: np.ndarray) -> int:
    """Most distinct values in one output channel of `kernel`."""
    if kernel.ndim < 2:
        return len(np.unique(kernel))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        channels = kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1])
    elif isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose,
                            keras.layers.Conv3DTranspose)):
        channels = np.moveaxis(kernel, -2, -1).reshape(-1, kernel.shape[-2])
    else:
        channels = kernel.reshape(-1, kernel.shape[-1])
    return max(len(np.unique(channels[:, c])) for c in range(channels.shape[1]))


def _m_by_n_ok(layer, kernel: np.ndarray, m_by_n: tuple[int, int]) -> bool | None:
    """Whether every n consecutive weights along the input-channel axis (TFLite layout) hold >= m zeros."""
    if not _m_by_n_fits(layer):
        return None
    m, n = m_by_n
    rows = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1, kernel.shape[-2])  # (out, positions, in)
    groups = rows.reshape(rows.shape[0], rows.shape[1], -1, n)
    return bool(np.all(np.count_nonzero(groups == 0, axis=-1) >= m))


def _m_by_n_fits(layer, n: int = 4) -> bool:
    """2:4 applies to Dense and Conv2D kernels whose input channels are a multiple of n."""
    if type(layer) not in (keras.layers.Dense, keras.layers.Conv2D) or getattr(layer, "groups", 1) != 1:
        return False
    kernel = getattr(layer, "kernel", None)
    return kernel is not None and len(kernel.shape) in (2, 4) and kernel.shape[-2] % n == 0


def _sparsity(model) -> float:
    """Fraction of zeros over every kernel the model computes with (as the wrappers apply them)."""
    zeros = total = 0
    for layer in _leaf_layers(model):
        for value in _effective_kernels(layer):
            zeros += int(np.count_nonzero(value == 0))
            total += value.size
    return zeros / total if total else 0.0


def _effective_kernels(layer) -> list[np.ndarray]:
    from tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper import ClusterWeights
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    if isinstance(layer, PruneLowMagnitude):
        return [(w * m).numpy() for w, m, _ in layer.pruning_vars]
    if isinstance(layer, ClusterWeights) and not layer.cluster_per_channel:
        return [_clustered(layer, name) for name in layer.cluster_centroids]
    return [k.numpy() for k in _kernels(layer)]


def _clustered(wrapper, name: str) -> np.ndarray:
    """The kernel a ClusterWeights wrapper computes with; its zero centroid is re-zeroed on every call (the
    optimizer moves it slightly after the last one)."""
    centroids = wrapper.cluster_centroids[name].numpy().copy()
    if wrapper.preserve_sparsity:
        centroids[int(wrapper.zero_idx[name].numpy())] = 0.0
    return centroids[wrapper.pulling_indices[name].numpy()]


# --------------------------------------------------------------------------------------------- QAT support


_OUTPUT_ONLY = ("Rescaling", "Normalization")  # affine, weightless at run time: quantize only their output


def qat_unsupported(model) -> list[tuple[str, str]]:
    """Layers tfmot's default 8-bit QAT cannot wrap, found without training anything.

    It runs tfmot's own layout transforms (which fold e.g. BatchNormalization into the conv before it) and then
    asks tfmot's registry about every layer, as `quantize_apply` would. Nested models are looked into.

    Args:
        model: a tf_keras model.

    Returns:
        [(layer name, reason)], empty when the whole model can be quantize-aware trained.

    Raises:
        UnsupportedModel: a subclassed model.

    Example:
        qat_unsupported(model)   # [('elu', 'ELU has no 8-bit QAT config in tfmot')]
    """
    import tensorflow_model_optimization as tfmot

    flat = flatten(model) if _is_nested(model) else model
    _check_graph_model(flat, "the model")
    scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    qmap = {layer.name: _explicit_config(layer) for layer in flat.layers
            if not isinstance(layer, keras.layers.InputLayer)}
    for layer in flat._input_layers:
        qmap[layer.name] = {}
    with tfmot.quantization.keras.quantize_scope(), _quiet_tfmot():
        transformed, qmap = scheme.get_layout_transformer().apply(flat, qmap)
    registry = scheme.get_quantize_registry()
    found = []
    for layer in transformed.layers:
        if (isinstance(layer, keras.layers.InputLayer) or qmap.get(layer.name, {}).get("quantize_config")
                or type(layer).__module__.startswith("tensorflow_model_optimization")):  # e.g. its QuantizeLayer
            continue
        if not registry.supports(layer):
            found.append((layer.name, _unsupported_reason(layer)))
    return found


def _explicit_config(layer) -> dict:
    if type(layer).__name__ in _OUTPUT_ONLY:
        return {"quantize_config": _output_config()}
    return {}


def _output_config():
    # tfmot's own config (in quantize_scope, so saved QAT models need no custom objects); not in the public API.
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    return configs.Default8BitOutputQuantizeConfig()


def _noop_config():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )

    return configs.NoOpQuantizeConfig()


def _unsupported_reason(layer) -> str:
    name = type(layer).__name__
    if isinstance(layer, keras.layers.Lambda):
        return "Lambda layers cannot be quantize-annotated (their code is opaque to tfmot)"
    if isinstance(layer, keras.layers.BatchNormalization):
        return "BatchNormalization is only supported right after a Conv2D/DepthwiseConv2D/Dense (folded into it)"
    if not type(layer).__module__.startswith(("tf_keras", "keras")):
        return f"custom layer {name} has no 8-bit QAT config (tfmot needs a QuantizeConfig for it)"
    return f"{name} has no 8-bit QAT config in tfmot"


@contextmanager
def _quiet_tfmot():
    """Silence tfmot's own warnings (they go to the root logger and `warnings`); our `skipped` says it better."""
    root = logging.getLogger()
    noise = _Drop(("Input layer does not contain zero weights", "No clustering performed"))
    root.addFilter(noise)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*No clustering performed.*")
            warnings.filterwarnings("ignore", message=".*Lambda layers are not supported.*")
            yield
    finally:
        root.removeFilter(noise)


class _Drop(logging.Filter):
    def __init__(self, fragments):
        super().__init__()
        self.fragments = fragments

    def filter(self, record):
        return not any(f in record.getMessage() for f in self.fragments)


# --------------------------------------------------------------------------------------------- data and loss


@dataclass
class _Data:
    x: Any
    y: np.ndarray
    n: int
    val: tuple | None
    loss: Any
    metrics: Any


def _prepare_data(model, source, t: Techniques, x, y, x_val, y_val, loss, metrics) -> _Data:
    """Checked arrays, labels in the form the loss expects, and the loss and metrics (`source`: the caller's model,
    which holds the compile settings; `model`: its flattened copy)."""
    x = _check_x(model, x, "x_train")
    n = _length(x)
    y = _check_y(y, n, "y_train")
    if n < t.batch_size:
        raise BadInput(f"x_train has {n} sample(s), fewer than one batch of {t.batch_size}",
                       fix="give more training data or a smaller batch size (--batch-size)")
    if (x_val is None) != (y_val is None):
        raise BadInput("x_val and y_val must be given together")
    loss, metrics = _loss_and_metrics(source, y, loss, metrics)
    y = _labels_for(model, loss, y)
    val = None
    if x_val is not None:
        x_val = _check_x(model, x_val, "x_val")
        val = (x_val, _labels_for(model, loss, _check_y(y_val, _length(x_val), "y_val")))
    return _Data(x=x, y=y, n=n, val=val, loss=loss, metrics=metrics)


def _check_x(model, x, what: str):
    names = [layer.name for layer in model._input_layers]
    if isinstance(x, dict):
        missing = sorted(set(names) - set(x))
        if missing:
            raise BadInput(f"{what} has no array for input(s) {missing}; found keys {sorted(x)}",
                           fix=f"give a dict with one array per input: {', '.join(names)}")
        arrays = {name: np.asarray(x[name]) for name in names}
    elif len(names) == 1:
        arrays = {names[0]: np.asarray(x)}
    else:
        raise BadInput(f"the model has {len(names)} inputs ({', '.join(names)}) but {what} is one array",
                       fix="pass a dict {input name: array}")
    lengths = {len(a) if a.ndim else 0 for a in arrays.values()}
    if len(lengths) != 1:
        raise BadInput(f"{what}: the input arrays have different numbers of samples ({sorted(lengths)})")
    for (name, a), kt in zip(arrays.items(), model.inputs):
        want = tuple(kt.shape[1:])
        if a.ndim != len(want) + 1 or any(w is not None and w != g for w, g in zip(want, a.shape[1:])):
            raise BadInput(f"{what}[{name!r}] has shape {a.shape}; the model expects (samples, "
                           f"{', '.join('any' if w is None else str(w) for w in want)})")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise BadInput(f"{what}[{name!r}] contains NaN or infinite values")
    return arrays[names[0]] if len(names) == 1 and not isinstance(x, dict) else arrays


def _length(x) -> int:
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _check_y(y, n: int, what: str) -> np.ndarray:
    if isinstance(y, dict):
        raise BadInput(f"{what} must be one array, got a {type(y).__name__}: optimize supports models with "
                       "one output", fix="give one label array (class indices, one-hot rows or target values)")
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != n:
        raise BadInput(f"{what} has {len(y) if y.ndim else 0} label(s) for {n} sample(s)",
                       fix="give one label (class index, one-hot row or target value) per sample")
    return y


def _loss_and_metrics(model, y, loss, metrics):
    """The given loss/metrics, else the model's compile settings, else what its last layer implies."""
    compiled = getattr(model, "compiled_loss", None) is not None
    if loss is None and compiled:
        loss = model.loss
        if metrics is None:
            metrics = tf.nest.map_structure(_fresh_metric, model.compiled_metrics._user_metrics or [])
    if loss is None:
        loss, default_metrics = _default_loss(model, y)
        metrics = default_metrics if metrics is None else metrics
    return loss, metrics if metrics is not None else []


def _fresh_metric(metric):
    """A new metric object with the same settings (metric objects hold state of the model they came from)."""
    if isinstance(metric, keras.metrics.Metric):
        return metric.__class__.from_config(metric.get_config())
    return metric


def _default_loss(model, y):
    if len(model.outputs) != 1:
        raise BadInput(f"the model has {len(model.outputs)} outputs and was not compiled: no default loss",
                       fix="compile the model (with one loss per output) or pass loss=")
    activation, units = _output_activation(model)
    one_hot = y.ndim == 2 and y.shape[1] == units and units > 1 and np.isin(y, (0, 1)).all()
    if activation == "softmax":
        return ("categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy"), ["accuracy"]
    if activation == "sigmoid" and units == 1:
        return "binary_crossentropy", ["accuracy"]
    if activation in ("linear", None):
        return "mse", ["mae"]
    raise BadInput(f"no default loss for an output layer with activation {activation!r} and {units} unit(s)",
                   fix="compile the model before saving it, or pass loss=")


def _output_activation(model) -> tuple[str | None, int]:
    layer = model.outputs[0]._keras_history.layer
    units = int(model.outputs[0].shape[-1] or 0)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax", units
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None), units


def _loss_name(loss) -> str:
    if isinstance(loss, str):
        return loss
    return getattr(loss, "__name__", None) or getattr(loss, "name", None) or type(loss).__name__


def _labels_for(model, loss, y: np.ndarray) -> np.ndarray:
    """Class indices or one-hot rows, whichever the loss expects."""
    name = _loss_name(loss).lower()
    units = int(model.outputs[0].shape[-1] or 0) if len(model.outputs) == 1 else 0
    sparse = "sparse_categorical" in name
    if sparse and y.ndim == 2 and y.shape[1] == units > 1:
        return np.argmax(y, axis=1)
    if not sparse and "categorical" in name and (y.ndim == 1 or y.shape[-1] == 1) and units > 1:
        return keras.utils.to_categorical(y.reshape(-1), units)
    return y


# --------------------------------------------------------------------------------------------- stages


def pruning_schedule(techniques: Techniques, steps: int):
    """The tfmot schedule that reaches `techniques.prune` within `steps` fine-tune steps.

    Masks are updated every `frequency` steps (about 10 updates) up to `end_step` = 70% of the steps, rounded
    down to a multiple of the frequency so that the last update applies the full target; the remaining steps
    fine-tune with the final mask. Training steps are counted from 1 (tfmot's UpdatePruningStep).

    Args:
        techniques: the settings (prune, prune_schedule).
        steps: training steps of the pruning stage (steps per epoch x epochs), >= 1.

    Returns:
        A `PolynomialDecay` (from sparsity 0, begin step 0) or a `ConstantSparsity` (from step 1).

    Example:
        pruning_schedule(Techniques(prune=0.8), 90).get_config()["config"]["end_step"]   # 60
    """
    import tensorflow_model_optimization as tfmot

    target = float(techniques.prune if techniques.prune is not None else 0.5)
    end_target = max(1, int(steps * PRUNE_END_FRACTION))
    frequency = max(1, end_target // MAX_MASK_UPDATES)
    end = (end_target // frequency) * frequency
    schedules = tfmot.sparsity.keras
    if techniques.prune_schedule == "constant":
        end = 1 + ((end - 1) // frequency) * frequency
        return schedules.ConstantSparsity(target, begin_step=1, end_step=end, frequency=frequency)
    return schedules.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target, begin_step=0, end_step=end,
                                     frequency=frequency)


class _Stage:
    """One fine-tuning stage: wraps the layers it can handle, records what it could not."""

    name = ""

    def __init__(self, techniques: Techniques):
        self.t = techniques
        self.skipped: list[tuple[str, str, str]] = []
        self.applied: set[str] = set()
        self.callbacks: list = []

    def skip(self, layer, technique: str, reason: str) -> None:
        self.skipped.append((layer.name, technique, reason))

    def wrap(self, model, steps: int):
        raise NotImplementedError

    def strip(self, wrapped):
        raise NotImplementedError


class _PruneStage(_Stage):
    name = "prune"

    def wrap(self, model, steps: int):
        import tensorflow_model_optimization as tfmot

        self.callbacks = [tfmot.sparsity.keras.UpdatePruningStep()]
        schedule = pruning_schedule(self.t, steps)
        m_by_n = STRUCTURED.get(self.t.structured)

        def wrap_layer(layer):
            kind = self._kind(layer, m_by_n)
            if kind is None:
                return layer
            _thaw(layer)
            wrapper = tfmot.sparsity.keras.prune_low_magnitude(
                layer, pruning_schedule=schedule, sparsity_m_by_n=m_by_n if kind == "m_by_n" else None)
            self.applied.add(layer.name)
            return wrapper

        return keras.models.clone_model(model, clone_function=wrap_layer)

    def _kind(self, layer, m_by_n) -> str | None:
        """"m_by_n", "unstructured", or None (left as it is; recorded in `skipped` when it has a kernel)."""
        from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

        if not _kernels(layer):
            return None
        size = _kernel_size(layer)
        registry = prune_registry.PruneRegistry
        if not registry.supports(layer) or not (registry._is_rnn_layer(layer) or registry._weight_names(layer)):
            self.skip(layer, "prune", f"tfmot prunes no weights of {type(layer).__name__} layers")
            return None
        if size < SMALL_KERNEL:
            why = ("and can break a stem or preprocessing conv" if "Conv" in type(layer).__name__
                   else "and costs accuracy out of proportion in so small a layer")
            self.skip(layer, "prune", f"only {size} kernel weights (< {SMALL_KERNEL}): pruning saves almost nothing "
                                      f"there {why}; left dense")
            return None
        if m_by_n is None:
            return "unstructured"
        if _m_by_n_fits(layer):
            return "m_by_n"
        fate = f"pruned unstructured to {self.t.prune:g}" if self.t.prune is not None else "left dense"
        self.skip(layer, f"structured {self.t.structured}", f"{_m_by_n_misfit(layer)}; {fate}")
        return "unstructured" if self.t.prune is not None else None

    def strip(self, wrapped):
        import tensorflow_model_optimization as tfmot

        return tfmot.sparsity.keras.strip_pruning(wrapped)


def _kernel_size(layer) -> int:
    return int(sum(k.shape.num_elements() for k in _kernels(layer)))


def _thaw(layer) -> bool:
    """Make a frozen layer with a kernel of SMALL_KERNEL weights or more trainable for the stage that wraps it
    (`_refreeze` restores the flag afterwards); whether it did."""
    if layer.trainable or _kernel_size(layer) < SMALL_KERNEL:
        return False
    layer.trainable = True
    return True


def _m_by_n_misfit(layer) -> str:
    if type(layer) not in (keras.layers.Dense, keras.layers.Conv2D):
        return f"2:4 sparsity applies to Dense and Conv2D kernels, not {type(layer).__name__}"
    channels = _kernels(layer)[0].shape[-2]
    return f"{channels} input channel(s), not a multiple of 4"


class _ClusterStage(_Stage):
    name = "cluster"

    def wrap(self, model, steps: int):
        import tensorflow_model_optimization as tfmot
        from tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper import ClusterWeights

        init = getattr(tfmot.clustering.keras.CentroidInitialization, CLUSTER_INITS[self.t.cluster_init])
        preserve = self.t.prunes

        def wrap_layer(layer):
            thawed = _thaw(layer)  # tfmot clusters only trainable weights
            if not self._clusterable(layer):
                if thawed:
                    layer.trainable = False
                return layer
            # the wrapper itself: tfmot's cluster_weights() raises on a frozen Conv2D ("no weights to cluster")
            wrapper = ClusterWeights(layer, int(self.t.cluster), init, preserve_sparsity=preserve)
            self.applied.add(layer.name)
            return wrapper

        return keras.models.clone_model(model, clone_function=wrap_layer)

    def _clusterable(self, layer) -> bool:
        from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

        kernels = _kernels(layer)
        if not kernels:
            return False
        if not layer.trainable:
            self.skip(layer, "cluster", f"frozen, and its kernel has only {_kernel_size(layer)} weights "
                                        f"(< {SMALL_KERNEL}): left as it is")
            return False
        registry = clustering_registry.ClusteringRegistry
        if not registry.supports(layer) or not registry._weight_names(layer):
            self.skip(layer, "cluster", f"tfmot cannot cluster the weights of {type(layer).__name__} layers")
            return False
        size = min(k.shape.num_elements() for k in kernels)
        if size <= self.t.cluster:
            self.skip(layer, "cluster", f"its kernel has {size} weights, not more than the {self.t.cluster} "
                                        "clusters; left as it is")
            return False
        return True

    def strip(self, wrapped):
        import tensorflow_model_optimization as tfmot

        return tfmot.clustering.keras.strip_clustering(wrapped)


class _QatStage(_Stage):
    name = "qat"

    def __init__(self, techniques: Techniques, unsupported: list[tuple[str, str]]):
        super().__init__(techniques)
        self.unsupported = dict(unsupported)

    def scheme(self):
        import tensorflow_model_optimization as tfmot

        if self.t.cluster is not None:
            # not exported by tfmot 0.8.1's public API (collab_opts has only the prune-preserve scheme)
            from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
                default_8bit_cluster_preserve_quantize_scheme as cluster_preserve,
            )

            return cluster_preserve.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=self.t.prunes)
        if self.t.prunes:
            return tfmot.quantization.keras.collab_opts.Default8BitPrunePreserveQuantizeScheme()
        return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()

    def wrap(self, model, steps: int):
        import tensorflow_model_optimization as tfmot

        qk = tfmot.quantization.keras
        collab = self.t.prunes or self.t.cluster is not None

        def annotate(layer):
            if layer.name in self.unsupported:
                self.skip(layer, "qat", f"{self.unsupported[layer.name]}; left in float")
                if collab:
                    # The prune/cluster-preserving registries call themselves "supporting" any layer without
                    # trainable weights, then fail on it when it feeds an annotated layer; a no-op config keeps it
                    # float just the same.
                    return qk.quantize_annotate_layer(layer, _noop_config())
                return layer
            self.applied.add(layer.name)
            _thaw(layer)
            config = _explicit_config(layer).get("quantize_config")
            return qk.quantize_annotate_layer(layer, config)

        annotated = keras.models.clone_model(model, clone_function=annotate)
        with qk.quantize_scope(), _quiet_tfmot():
            try:
                return qk.quantize_apply(annotated, self.scheme())
            except (ValueError, RuntimeError) as e:
                raise UnsupportedModel(f"tfmot could not make the model quantize-aware: {first_line(e)}",
                                       fix="pass --allow-float-fallback to leave unsupported layers in float, or "
                                           "drop --qat (int8 post-training quantization still works)") from e

    def strip(self, wrapped):
        return None  # the plain model is rebuilt by `_float_copy` from the QAT weights


def _float_copy(plain, qat_model) -> tuple[Any, list[str]]:
    """`plain`'s architecture with the weights QAT fine-tuned, and the layers whose weights were not found.

    The weights are read from the QAT model's variables by name: tfmot's wrappers replace the inner layer's
    kernel attribute by the fake-quantized tensor, so the inner layer's own `get_weights()` misses it.
    """
    variables = {v.name: v for v in qat_model.weights}
    copy = _clone_with_weights(plain)
    missing = []
    for layer in copy.layers:
        sources = [variables.get(w.name) for w in layer.weights]
        if any(v is None or tuple(v.shape) != tuple(w.shape) for v, w in zip(sources, layer.weights)):
            missing.append(layer.name)
            continue
        for w, v in zip(layer.weights, sources):
            w.assign(v)
    return copy, missing


def _clone_with_weights(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


# --------------------------------------------------------------------------------------------- training


class _Progress(keras.callbacks.Callback):
    """One INFO line per epoch (loss, metrics, sparsity) and the caller's `on_epoch(epoch, logs)`."""

    def __init__(self, stage: str, first_epoch: int, total_epochs: int, history: dict, stages: list,
                 on_epoch: Callable | None):
        super().__init__()
        self.stage, self.first, self.total = stage, first_epoch, total_epochs
        self.history, self.stages, self.on_epoch = history, stages, on_epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        logs["sparsity"] = _sparsity(self.model)
        number = self.first + epoch + 1
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.stages.append(self.stage)
        text = "  ".join(f"{k} {v:.4g}" for k, v in logs.items())
        log.info("%s epoch %d/%d: %s", self.stage, number, self.total, text)
        if self.on_epoch is not None:
            self.on_epoch(number, {**logs, "stage": self.stage})


def _finetune(wrapped, stage: _Stage, data: _Data, t: Techniques, progress: _Progress) -> None:
    metrics = tf.nest.map_structure(_fresh_metric, data.metrics)
    wrapped.compile(optimizer=keras.optimizers.Adam(t.lr), loss=data.loss, metrics=metrics)
    wrapped.fit(data.x, data.y, batch_size=t.batch_size, epochs=t.finetune_epochs, validation_data=data.val,
                shuffle=True, verbose=0, callbacks=[*stage.callbacks, progress])


def _max_diff(a, b, x) -> float:
    sample = {k: v[:64] for k, v in x.items()} if isinstance(x, dict) else x[:64]
    outs_a = tf.nest.flatten(a(sample, training=False))
    outs_b = tf.nest.flatten(b(sample, training=False))
    return float(max(np.max(np.abs(np.asarray(p) - np.asarray(q))) for p, q in zip(outs_a, outs_b)))


def optimize(model, techniques: Techniques, x_train, y_train, *, x_val=None, y_val=None, loss=None, metrics=None,
             seed: int = 0, on_epoch: Callable | None = None, allow_float_fallback: bool = False) -> Optimized:
    """Prune, cluster and/or quantize-aware train a copy of `model` (see the module docstring for the stages).

    Args:
        model: a tf_keras Functional or Sequential model (nested sub-models are inlined first); not modified.
        techniques: what to apply (`Techniques`).
        x_train: numpy array, or {input name: array} for several inputs.
        y_train: labels: class indices or one-hot rows (classifiers), or targets (regression).
        x_val, y_val: optional validation data (val_* metrics in the history and the progress lines).
        loss, metrics: default: the model's compile settings, else from its last layer (softmax: sparse
            categorical cross-entropy + accuracy; sigmoid with 1 unit: binary cross-entropy + accuracy;
            linear: mse + mae).
        seed: seeds Python, NumPy and TensorFlow (`keras.utils.set_random_seed`) before fine-tuning.
        on_epoch: called as on_epoch(epoch, logs) after every epoch; epoch counts from 1 over all stages, logs
            holds the Keras metrics, "sparsity" and "stage".
        allow_float_fallback: with QAT, leave layers tfmot cannot quantize unannotated (float) instead of failing.

    Returns:
        An `Optimized` (plain model, QAT model, per-layer statistics, skipped layers, history).

    Raises:
        BadInput: bad settings or data (e.g. fewer samples than one batch), checked before any training.
        UnsupportedModel: QAT asked and layers cannot be quantize-aware (without allow_float_fallback), checked
            before any training; a subclassed model.

    Example:
        x, y, x_test, y_test = digits_data()
        opt = optimize(model, Techniques(prune=0.8, cluster=16, qat=True), x, y)
        opt.model.save("pcqat.h5")
    """
    t0 = time.perf_counter()
    techniques.check()
    _check_graph_model(model, "the model")
    plain = flatten(model)
    data = _prepare_data(plain, model, techniques, x_train, y_train, x_val, y_val, loss, metrics)
    unsupported = _check_qat(plain, techniques, allow_float_fallback)
    keras.utils.set_random_seed(int(seed))
    run = _Run(plain, techniques, data, on_epoch)
    log.info("compressing %s: %s, %d stage(s) x %d epoch(s), %d samples, learning rate %g", model.name,
             techniques.combination(), len(techniques.stages), techniques.finetune_epochs, data.n, techniques.lr)
    stages = [_QatStage(techniques, unsupported) if name == "qat" else
              {"prune": _PruneStage, "cluster": _ClusterStage}[name](techniques) for name in techniques.stages]
    for stage in stages:
        run.stage(stage)
    run.plain.compile(optimizer=keras.optimizers.Adam(techniques.lr), loss=data.loss,
                      metrics=tf.nest.map_structure(_fresh_metric, data.metrics))
    return Optimized(model=run.plain, qat_model=run.qat_model, layers=_stats(run.plain, stages, techniques),
                     skipped=[s for stage in stages for s in stage.skipped], history=run.history,
                     seconds=time.perf_counter() - t0, techniques=techniques, stages=run.epoch_stages,
                     strip_diff=run.strip_diff)


def _check_qat(plain, techniques: Techniques, allow_float_fallback: bool) -> list[tuple[str, str]]:
    """The layers QAT cannot wrap (before any training); UnsupportedModel when some and no fallback."""
    unsupported = qat_unsupported(plain) if techniques.qat else []
    if unsupported and not allow_float_fallback:
        raise UnsupportedModel(
            f"QAT cannot wrap {len(unsupported)} layer(s): " + "; ".join(f"{n} ({r})" for n, r in unsupported),
            fix="pass --allow-float-fallback (allow_float_fallback=True) to leave them unannotated (they stay float "
                "in the .tflite), replace them with supported layers (e.g. ELU -> ReLU), or drop --qat")
    return unsupported


class _Run:
    """The stages of one `optimize` call: the current plain model and what the stages recorded."""

    def __init__(self, plain, techniques: Techniques, data: _Data, on_epoch):
        self.plain, self.t, self.data, self.on_epoch = plain, techniques, data, on_epoch
        self.frozen = {layer.name for layer in plain.layers if layer.weights and not layer.trainable}
        if self.frozen:
            log.info("%d frozen layer(s): compressed, and %s", len(self.frozen),
                     "fine-tuned while compressed; frozen again in the result" if techniques.finetune_frozen else
                     "kept frozen while the other layers fine-tune around them")
        self.steps = math.ceil(data.n / techniques.batch_size) * techniques.finetune_epochs
        self.history: dict[str, list[float]] = {}
        self.epoch_stages: list[str] = []
        self.strip_diff: dict[str, float] = {}
        self.qat_model = None
        self.done = 0

    def stage(self, stage: _Stage) -> None:
        """Wrap, fine-tune and strip: `self.plain` becomes the stage's plain result."""
        with _quiet_tfmot():
            wrapped = stage.wrap(self.plain, self.steps)
        if not self.t.finetune_frozen:
            _freeze_wrapped(wrapped, self.frozen)
        if stage.name == "qat":
            _init_qat_ranges(wrapped, self.plain, self.data.x)
        epochs = self.t.finetune_epochs
        progress = _Progress(stage.name, self.done * epochs, len(self.t.stages) * epochs, self.history,
                             self.epoch_stages, self.on_epoch)
        _finetune(wrapped, stage, self.data, self.t, progress)
        self.done += 1
        if stage.name == "qat":
            self.qat_model = wrapped
            stripped, missing = _float_copy(self.plain, wrapped)
            stage.skipped += [(name, "qat", "tfmot rebuilt this layer for QAT: the float model keeps its pre-QAT "
                                            "weights (the QAT model has the fine-tuned ones)") for name in missing]
        else:
            with _quiet_tfmot():
                stripped = _clone_with_weights(stage.strip(wrapped))
        self.strip_diff[stage.name] = _max_diff(wrapped, stripped, self.data.x)
        _refreeze(stripped, self.frozen)
        self.plain = stripped


def _inner_name(layer) -> str:
    """The name of the layer a tfmot wrapper wraps ("quant_conv0a", "prune_low_magnitude_conv0a" -> "conv0a")."""
    inner = getattr(layer, "layer", None)
    return inner.name if inner is not None else layer.name


def _freeze_wrapped(wrapped, frozen: set[str]) -> None:
    """Keep the wrappers of frozen layers frozen (finetune_frozen=False): masks, centroids and quantization ranges
    still apply to them, but their weights do not train."""
    for layer in wrapped.layers:
        if _inner_name(layer) in frozen:
            layer.trainable = False


_SMALL_RANGE = 0.25  # see _init_qat_ranges
_TFMOT_START = 6.0  # tfmot starts every activation range at [-6, 6]


def _init_qat_ranges(wrapped, plain, x) -> None:
    """Start the activation quantizers of a QAT model whose activations are far smaller than tfmot's start at the
    range those activations have on the data.

    tfmot starts every range at [-6, 6] and moves it by an exponential average (decay 0.999), so in a short
    fine-tune it stays there: activations far smaller than that (a deep stack of frozen convolutions) quantize to
    zero and the QAT model outputs one constant (measured on a frozen VGG19 base: accuracy 0.333 = chance, for 3
    classes). Activations far larger than that (the same base fed 0-255 pixels, activations in the hundreds) clip
    at 6 instead: the int8 file of a 4-step fine-tune gave 0.5/0.5 where its Keras model said 0.65/0.35, and
    0.93 where it said 1.0. Ranges spanning 0.25 or more (5 of the 256 int8 levels at tfmot's start) and lying
    within [-6, 6] keep tfmot's start: on the digits CNN, whose activations are of order 1, starting all of them at
    the measured range cost one to three test images in each of 3 seeds (0.28 points each).
    """
    sample = {k: v[:256] for k, v in x.items()} if isinstance(x, dict) else x[:256]
    probes = [layer for layer in plain.layers if type(layer).__name__ != "InputLayer"
              and not isinstance(layer.output, (list, tuple))]
    outputs = keras.Model(plain.inputs, [layer.output for layer in probes]).predict(sample, verbose=0,
                                                                                   batch_size=64)
    ranges = {layer.name: (min(float(np.min(out)), 0.0), max(float(np.max(out)), 0.0))
              for layer, out in zip(probes, outputs if isinstance(outputs, list) else [outputs])}
    flat_inputs = list(sample.values()) if isinstance(sample, dict) else [sample]
    input_ranges = [(min(float(np.min(a)), 0.0), max(float(np.max(a)), 0.0)) for a in flat_inputs]
    for layer in wrapped.layers:
        kind = type(layer).__name__
        if kind == "QuantizeLayer" and input_ranges:
            lo, hi = input_ranges.pop(0) if len(input_ranges) > 1 else input_ranges[0]
        elif _inner_name(layer) in ranges:
            lo, hi = ranges[_inner_name(layer)]
        else:
            continue
        if hi - lo >= _SMALL_RANGE and lo >= -_TFMOT_START and hi <= _TFMOT_START:
            continue
        for v in layer.weights:  # the activation ranges: post_activation_min/max, output_min/max, ...
            name = v.name.split("/")[-1].split(":")[0]
            if "kernel" in name or "pre_activation" in name:
                continue
            if name.endswith("_min"):
                v.assign(np.full(v.shape, lo, v.dtype.as_numpy_dtype))
            elif name.endswith("_max"):
                v.assign(np.full(v.shape, max(hi, lo + 1e-6), v.dtype.as_numpy_dtype))


def _refreeze(model, frozen: set[str]) -> None:
    """Give the layers that were frozen in the caller's model their trainable=False back."""
    for layer in model.layers:
        if layer.name in frozen:
            layer.trainable = False


def _stats(model, stages: list[_Stage], techniques: Techniques) -> list[LayerStats]:
    stats = layer_stats(model, techniques.structured)
    for s in stats:
        s.techniques = [stage.name for stage in stages if s.name in stage.applied]
        if techniques.structured and "prune" in s.techniques and s.structured_ok is not None:
            s.techniques[s.techniques.index("prune")] = f"prune {techniques.structured}"
    return stats


__all__ = ["Techniques", "Optimized", "LayerStats", "Wrapped", "optimize", "wrap", "flatten", "qat_unsupported",
           "layer_stats", "pruning_schedule", "CLUSTER_INITS", "STRUCTURED", "DEFAULT_LEARNING_RATE"]


# -- building blocks for your own training loop -----------------------------------------------------------------
_STAGES = {"prune": _PruneStage, "cluster": _ClusterStage}


@dataclass
class Wrapped:
    """A model wrapped for one technique, ready for your own `fit`: pass `callbacks` to it, then `strip()`."""

    model: Any
    callbacks: list
    technique: str
    skipped: list[tuple[str, str, str]]
    _stage: Any = field(default=None, repr=False)
    _plain: Any = field(default=None, repr=False)

    def strip(self):
        """The plain tf_keras model (wrappers removed; sparsity, clusters or QAT weights baked in; loads without
        custom objects)."""
        if self.technique == "qat":
            return _float_copy(self._plain, self.model)[0]
        with _quiet_tfmot():
            return _clone_with_weights(self._stage.strip(self.model))


def wrap(model, technique: str, techniques: Techniques, steps: int, *, allow_float_fallback: bool = False) -> Wrapped:
    """Wrap a flattened copy of `model` for one technique ("prune", "cluster" or "qat"), for a training loop of
    your own; `optimize` runs the same stages and fine-tunes them for you.

    Args:
        model: a tf_keras model (not modified).
        technique: "prune" (unstructured and/or 2:4 from `techniques`), "cluster" or "qat".
        techniques: the settings (`Techniques`); a combination picks the preserving schemes (e.g. QAT after
            pruning keeps the zeros when `techniques.prune` is set).
        steps: the training steps you will run (the pruning schedule reaches its target within them).
        allow_float_fallback: QAT: leave layers it cannot wrap in float instead of raising.

    Returns:
        A `Wrapped`: `.model` to compile and fit with `.callbacks`, then `.strip()`.

    Raises:
        BadInput: an unknown technique or bad settings. UnsupportedModel: QAT cannot wrap a layer.

    Example:
        w = wrap(model, "prune", Techniques(prune=0.8), steps=len(x) // 32 * 4)
        w.model.compile("adam", "sparse_categorical_crossentropy")
        w.model.fit(x, y, epochs=4, callbacks=w.callbacks)
        plain = w.strip()
    """
    techniques.check()
    if technique not in ("prune", "cluster", "qat"):
        raise BadInput(f"unknown technique {technique!r}; valid: prune, cluster, qat")
    plain = flatten(model)
    stage = _QatStage(techniques, _check_qat(plain, techniques, allow_float_fallback)) if technique == "qat" \
        else _STAGES[technique](techniques)
    with _quiet_tfmot():
        wrapped = stage.wrap(plain, steps)
    return Wrapped(model=wrapped, callbacks=list(stage.callbacks), technique=technique, skipped=list(stage.skipped),
                   _stage=stage, _plain=plain)
