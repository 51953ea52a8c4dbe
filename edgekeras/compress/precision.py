"""Per-layer precision search (`compress --max-accuracy-drop PP --eval DATA --precision auto`): each Keras layer gets
one of six precisions so that the file keeps the accuracy bound with the fewest bytes (`objective="size"`) or the
lowest measured latency (`objective="latency"`); every candidate is a real `.tflite` measured on LiteRT with its
default kernels (XNNPACK) on the evaluation data, as the accuracy gate measures its own.

**The precisions** (`PRECISIONS`, in the order they are tried when a layer is given back; bytes per weight):

| name | weights | activations / maths | bytes |
|---|---|---|---|
| int8 | int8 | int8 (static ranges from calibration) | 1 |
| weights-int8 | int8, dequantized to float at run time | float32 | 1 |
| dynamic | int8 | quantized per sample at run time (hybrid kernels, float output) | 1 |
| int16x8 | int8 | int16 (static ranges) | 1 |
| float16 | float16, dequantized to float | float32 | 2 |
| float32 | float32 | float32 | 4 |

Layers without weights (concatenation, pooling, normalization by constants folded away...) only take int8,
int16x8 or float32: the weight-only precisions are float32 for them.

**The engine.** Every candidate is quantized from one float32 file by `litert-quantizer` (AI Edge Quantizer renamed,
`Quantizer(model, recipe)`): its recipe is a list of rules, one for the default (int8) and one per layer that
differs, each matching that layer's ops by their exact scope (their output tensor names), so the recipe recorded in
the card rebuilds the file (`rebuild`). The TFLite converter can only keep layers in float32 beside int8
(`denylisted_nodes`); 16-bit activations, dynamic range and float16 are whole-model modes there. Calibration runs
once (the ranges are the same whatever the bit width) and every candidate reuses it.

**The search** (`search`, pure: no TensorFlow; it calls a `measure(assignment)` it is given):
1. plain int8 (every layer int8). If it keeps the bound, it is the answer.
2. *Find a passing set*: the layers are ranked by what int8 does to them (`gate`'s measure, on the same file), and
   the top k are lifted, k as small as holds (k doubling, then bisection): first to weights-int8 (int8 weights,
   float maths: no byte more than int8; float32 for layers without weights); when even every layer there breaks
   the bound, every layer stays at weights-int8 and the top k go on to float32.
3. *Give back*: every lifted layer is *probed* (the passing file with that layer alone at int8, measured) and the
   layers are ranked by what they gain (gzip bytes saved, or milliseconds with the latency objective) per point of
   accuracy lost; layers joined by an op that ties its int8 inputs to one scale (CONCATENATION, PACK) or rescales
   them (ADD, SUB) are also tried *together*, before alone. Then for each precision, cheapest first, the longest
   prefix of that ranking that keeps the bound together is given it (all of them first, then bisection; past a
   layer that breaks it, the rest again, `_Search.SKIPS` times), and last the layers still float32 one at a time.
   Every step is a new file measured again: a probe measured on another set is never trusted.
4. With the size objective a change is kept when the file gets smaller (gzip bytes), or, for a move to int8
   (full-integer kernels, the target format), when it grows by at most `INT8_BYTES_MARGIN`; never when it makes the
   file `SLOWER_LIMIT` times slower than where the give-back started, timed twice (int16x8 kernels run outside
   XNNPACK). Those are the only timings it reads, and only far from their noise: the same data give the same file,
   byte for byte. With the latency objective a change is kept when the file is not slower than the file now
   (within `LATENCY_NOISE`) nor than the passing file the give-back started from; among the passing files of step
   2 the fastest is kept, and among the precisions that hold for a layer the fastest. Its files depend on timings:
   two runs can differ where two candidates time alike.

At most `budget` candidates are measured (default `DEFAULT_BUDGET`), give or take the search for a passing set,
which always ends (at most 2 log2(layers) + 2 files per level); layers not reached keep the precision that holds, with
a note.

Example:
    result = search_file(src, f32_bytes, calib, {"image": x}, y, metric="accuracy", kind="probabilities",
                         output="probs", keras_value=0.956, max_drop=0.5)
    Path("m.mixed.tflite").write_bytes(result.data)
    card_settings = result.settings()
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import BadInput, UnsupportedModel, first_line

#: Candidates measured at most (plain int8 and the comparisons not counted).
DEFAULT_BUDGET = 120
#: With the latency objective, a change that makes the file slower by more than this share is refused, and a
#: precision is preferred for speed only when it is faster by more than it (timings on a shared CPU are noisy).
LATENCY_MARGIN = 0.10
OBJECTIVES = ("size", "latency")
#: Threads of the one-sample latency the search measures (as `edgekeras bench` and `edgekeras sweep` measure by
#: default): int8, hybrid and float kernels rank differently with 1 thread than with several.
MEASURE_THREADS = 1
#: With the size objective, a change that makes the file slower than this many times the slower of plain int8 and
#: the passing file the give-back starts from is refused: no byte is worth that (int16x8 kernels outside XNNPACK
#: made a file 14x slower than float32). Far from timing noise, so the same data still give the same file.
SLOWER_LIMIT = 1.5
#: With the latency objective, a change may make the file this much slower than the file now (timing noise), never
#: slower than the passing file the give-back started from.
LATENCY_NOISE = 0.02
#: With the size objective a layer may move to int8 (full-integer kernels, the target format) while the file grows by
#: at most this share (its activations' scales and zero points).
INT8_BYTES_MARGIN = 0.01
#: Ops whose int8 inputs the quantizer ties to the output's scale, or rescales to it.
SHARED_SCALE_OPS = ("CONCATENATION", "PACK", "ADD", "SUB")
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Precision:
    """One precision a layer can take (see the module doc's table)."""

    name: str
    text: str
    weight_bytes: int  # bytes per weight element in the file
    weightless: bool  # offered to layers without weights

    def rule(self, regex: str) -> dict:
        """The litert-quantizer recipe rule giving this precision to the ops matching `regex`."""
        if self.name == "float32":
            return {"regex": regex, "operation": "*", "algorithm_key": "no_quantize"}
        return {"regex": regex, "operation": "*",
                "algorithm_key": "float_casting" if self.name == "float16" else "min_max_uniform_quantize",
                "op_config": _OP_CONFIGS[self.name]}


def _weights(bits: int, dtype: str = "INT", symmetric: bool = True, granularity: str = "CHANNELWISE") -> dict:
    return {"num_bits": bits, "symmetric": symmetric, "granularity": granularity, "dtype": dtype}


_COMMON = {"explicit_dequantize": False, "skip_checks": False, "min_weight_elements": 0}
_OP_CONFIGS = {
    "int8": {"activation_tensor_config": _weights(8, symmetric=False, granularity="TENSORWISE"),
             "weight_tensor_config": _weights(8), "compute_precision": "INTEGER", **_COMMON},
    "weights-int8": {"weight_tensor_config": _weights(8), "compute_precision": "FLOAT",
                     **_COMMON, "explicit_dequantize": True},
    "dynamic": {"weight_tensor_config": _weights(8), "compute_precision": "INTEGER", **_COMMON},
    "int16x8": {"activation_tensor_config": _weights(16, granularity="TENSORWISE"),
                "weight_tensor_config": _weights(8), "compute_precision": "INTEGER", **_COMMON},
    "float16": {"weight_tensor_config": _weights(16, dtype="FLOAT", granularity="TENSORWISE"),
                "compute_precision": "FLOAT", **_COMMON, "explicit_dequantize": True},
}

PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("int8", "int8 weights and activations", 1, True),
    Precision("weights-int8", "int8 weights dequantized to float, float maths", 1, False),
    Precision("dynamic", "int8 weights, activations quantized per sample at run time", 1, False),
    Precision("int16x8", "int8 weights, int16 activations", 1, True),
    Precision("float16", "float16 weights, float maths", 2, False),
    Precision("float32", "float32 weights and maths", 4, True),
)}


def parse_precisions(value) -> tuple[str, ...]:
    """The precisions a search may use, in `PRECISIONS` order: "auto" (all), or names ("int8,dynamic" or a list);
    int8 (where the search starts) and float32 (where it can always fall back) are always included.

    Raises:
        BadInput: an unknown name.

    Example:
        parse_precisions("auto")            # all six
        parse_precisions("dynamic,float16")  # ("int8", "dynamic", "float16", "float32")
    """
    if value is None or value == "auto" or value == ["auto"]:
        return tuple(PRECISIONS)
    if not isinstance(value, (str, list, tuple)) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"precision must be 'auto' or precision names, got {value!r}",
                       fix=f"e.g. precision='auto' or ['int8', 'dynamic']; valid: {', '.join(PRECISIONS)}")
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in PRECISIONS]
    if unknown or not names:
        raise BadInput(f"unknown precision(s) {unknown or names!r}; valid: auto, {', '.join(PRECISIONS)}",
                       fix="e.g. --precision auto, or --precision int8,dynamic,float16")
    chosen = set(names) | {"int8", "float32"}
    return tuple(p for p in PRECISIONS if p in chosen)


# ------------------------------------------------------------------------------------------------- the search
@dataclass(frozen=True)
class Layer:
    """What the search knows of a Keras layer in the float file."""

    name: str
    weight_elements: int = 0  # elements of its float weight tensors (0: no weights)
    ops: tuple[str, ...] = ()  # its TFLite op types
    feeds: tuple[str, ...] = ()  # layers whose outputs it reads

    @property
    def shares_scale(self) -> bool:
        return any(op in SHARED_SCALE_OPS for op in self.ops)


@dataclass
class Trial:
    """One candidate file, measured as deployed.

    Attributes:
        assignment: {layer: precision} for the layers not int8.
        purpose: why it was built ("plain int8", "find: top 4 in float32", "probe conv1", "give back conv1 ->
            dynamic", ...).
        value, drop: the metric on the evaluation data and what the file loses against Keras (`gate.drop_of`).
        holds: the drop is within the bound.
        bytes, gzip_bytes, latency_ms, int8_weight_fraction: as for the gate's candidates.
    """

    assignment: dict[str, str]
    purpose: str
    value: float
    drop: float
    holds: bool
    bytes: int
    gzip_bytes: int
    latency_ms: float
    int8_weight_fraction: float

    def summary(self) -> dict:
        return {"purpose": self.purpose, "precisions": dict(sorted(self.assignment.items())),
                "value": round(self.value, 6), "drop": _round(self.drop), "holds": self.holds, "bytes": self.bytes,
                "gzip_bytes": self.gzip_bytes, "latency_ms": round(self.latency_ms, 4),
                "int8_weight_fraction": round(self.int8_weight_fraction, 4)}


@dataclass
class Outcome:
    """What `search` found: the chosen trial (it keeps the bound when `met`), every trial in order, and for each
    layer its precision and why."""

    met: bool
    chosen: Trial
    trials: list[Trial]
    precisions: dict[str, str]
    reasons: dict[str, str]
    notes: list[str] = field(default_factory=list)


Measure = Callable[[dict[str, str], str], Trial]


def check_objective(objective: str) -> str:
    """`objective`, when it is one of `OBJECTIVES`.

    Raises:
        BadInput: another value (the message lists the valid ones).
    """
    if objective not in OBJECTIVES:
        raise BadInput(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}",
                       fix="--objective size (fewest bytes) or --objective latency (fastest measured)")
    return objective


def search(layers: list[Layer], ranking: list[str], measure: Measure, *, max_drop: float, objective: str = "size",
           precisions: tuple[str, ...] = tuple(PRECISIONS), budget: int = DEFAULT_BUDGET,
           unit: str = "points", retime: Callable[[dict[str, str]], float] | None = None,
           measure_many: Callable[[list[tuple[dict[str, str], str]]], list[Trial]] | None = None) -> Outcome:
    """The search of the module doc, on any `measure` (tests give it a model of accuracy; the worker real files).

    Args:
        layers: every layer of the file; ranking: layer names, worst under int8 first (the escalation order).
        measure: builds and measures the file for {layer: precision} (others int8); its second argument is the
            trial's purpose. Its `Trial.holds` is the bound's verdict.
        max_drop: the bound (for the notes); objective: "size" or "latency"; precisions: those allowed
            (`parse_precisions`); budget: candidates at most after plain int8; unit: the drop's unit, for notes.
        retime: times a file measured before once more (ms); a move the size objective would make for speed alone
            is made only when a second timing of both files, back to back, agrees.
        measure_many: measures several independent assignments at once (the probes of the give-back), as
            `[measure(a, purpose) for a, purpose in items]` would; the worker gives one that fans them out on a
            Ray cluster. The decisions are the same either way.

    Returns:
        An `Outcome`.

    Raises:
        BadInput: an unknown objective.

    Example:
        out = search(layers, ["small", "cat"], measure, max_drop=0.5)
        out.precisions  # {"small": "weights-int8", "cat": "float32", "hidden": "int8", ...}
    """
    check_objective(objective)
    return _Search(layers, ranking, measure, max_drop, objective, precisions, budget, unit, retime,
                   measure_many).run()


class _Search:
    """One search's state: the trials so far, the current passing file and its assignment, each layer's reason."""

    def __init__(self, layers, ranking, measure, max_drop, objective, precisions, budget, unit, retime=None,
                 measure_many=None):
        self.retime, self.measure_many = retime, measure_many
        self.by_name = {layer.name: layer for layer in layers}
        self.layers = layers
        ranked = [name for name in ranking if name in self.by_name]
        # layers the ranking has no measure for (e.g. their tensors are float in the int8 file) come last
        self.ranked = ranked + [layer.name for layer in layers if layer.name not in set(ranked)]
        self.measure, self.max_drop, self.objective = measure, max_drop, objective
        self.precisions, self.budget, self.unit = tuple(precisions), budget, unit
        self.trials: list[Trial] = []
        self.notes: list[str] = []
        self.reasons = {layer.name: "int8: plain int8 keeps the bound" for layer in layers}
        self.state: dict[str, str] = {}
        self.current: Trial | None = None
        self.verdicts: dict[str, dict[str, str]] = {}  # layer -> {cheaper precision refused: why}
        self.refused = ""  # why `accept` refused its last candidate
        self.found_at = 0  # trials measured when the give-back starts
        self.seen: dict[tuple, Trial] = {}
        self.reference_ms = math.inf  # the size objective refuses files slower than SLOWER_LIMIT times this
        self.start_ms = math.inf  # the passing file's latency, where the give-back starts

    def trial(self, assignment: dict[str, str], purpose: str) -> Trial:
        """The file for `assignment`, measured (once: a set measured before is not measured again)."""
        a = {k: v for k, v in assignment.items() if v != "int8"}
        key = tuple(sorted(a.items()))
        if key not in self.seen:
            self.seen[key] = self.measure(a, purpose)
            self.trials.append(self.seen[key])
        return self.seen[key]

    def trial_many(self, items: list[tuple[dict[str, str], str]]) -> list[Trial]:
        """Files for several independent assignments, measured together (`measure_many`, e.g. fanned out on a Ray
        cluster; else one after another), and recorded in the order `trial` would have recorded them."""
        keys = []
        new: dict[tuple, tuple[dict[str, str], str]] = {}
        for assignment, purpose in items:
            a = {k: v for k, v in assignment.items() if v != "int8"}
            key = tuple(sorted(a.items()))
            keys.append(key)
            if key not in self.seen and key not in new:
                new[key] = (a, purpose)
        if self.measure_many is not None and len(new) > 1:
            measured = self.measure_many(list(new.values()))
        else:
            measured = [self.measure(a, purpose) for a, purpose in new.values()]
        for key, t in zip(new, measured):
            self.seen[key] = t
            self.trials.append(t)
        return [self.seen[key] for key in keys]

    @property
    def spent(self) -> bool:
        return len(self.trials) > self.budget

    def run(self) -> Outcome:
        plain = self.trial({}, "plain int8")
        if plain.holds:
            return Outcome(True, plain, self.trials, {n: "int8" for n in self.by_name}, self.reasons, self.notes)
        if not self.find(plain):
            best = min(self.trials, key=lambda t: (t.drop, len(t.assignment)))
            precisions = {n: best.assignment.get(n, "int8") for n in self.by_name}
            return Outcome(False, best, self.trials, precisions,
                           {n: f"{p}: the bound cannot be met; the best file measured" for n, p in precisions.items()},
                           self.notes)
        self.found_at = len(self.trials)
        self.give_back()
        final = {n: self.state.get(n, "int8") for n in self.by_name}
        return Outcome(True, self.current, self.trials, final, self.reasons, self.notes)

    # -- 2. a passing set: the top k ranked layers in float32 (k doubling, then bisection)
    def find(self, plain: Trial) -> bool:
        """A passing set: the top k ranked layers lifted, k as small as holds. First to the level that costs no
        byte (weights-int8 for layers with weights: int8 weights, float maths; float32 for the others); when even
        every ranked layer there breaks the bound, every layer stays there and the top k go on to float32."""
        w8 = "weights-int8" in self.precisions
        cheap = (lambda n: "weights-int8" if self.by_name[n].weight_elements else "float32") if w8 else None
        base: dict[str, str] = {}
        base_name, last = "", plain
        level_text = {"weights-int8": "to weights-int8, or float32 for a layer without weights",
                      "float32": "to float32"}
        for name, level in ([("weights-int8", cheap)] if w8 else []) + [("float32", lambda n: "float32")]:
            every = self.trial({**base, **{n: level(n) for n in self.ranked}}, f"find: every ranked layer at {name}")
            if not every.holds:
                last, base, base_name = every, ({n: cheap(n) for n in self.ranked} if w8 else {}), name
                continue
            tried = self.fewest(base, last, every, level, name)
            k = self.best_of({k: t for k, t in tried.items() if t.holds})
            self.current = tried[k]
            self.state = dict(self.current.assignment)
            lifted = (f"every layer at {base_name} loses {last.drop:.2f} {self.unit}, so all stay there and " if base
                      else "")
            for i, n in enumerate(self.ranked):
                self.reasons[n] = (f"{self.state.get(n, 'int8')}: {lifted}ranked {i + 1} of {len(self.ranked)} by "
                                   f"int8 error, " + (f"among the {k} lifted" if i < k else f"below the {k} lifted")
                                   + f" ({level_text[name]}) to find a passing file")
            self.reference_ms = max(self.current.latency_ms, plain.latency_ms)
            self.start_ms = self.current.latency_ms
            return True
        self.notes.append(f"the bound of {self.max_drop:g} {self.unit} cannot be met: plain int8 loses "
                          f"{plain.drop:.2f}, every ranked layer in float32 loses {last.drop:.2f}; kept the best "
                          "file measured")
        return False

    def fewest(self, base: dict[str, str], start: Trial, every: Trial, level, name: str) -> dict[int, Trial]:
        """The files with the top k ranked layers lifted to `level` (over `base`), by k, measured to find the fewest
        that keep the bound: k doubling from 1, then bisection; `start` is the file with none lifted, `every` with
        all."""
        tried = {0: start, len(self.ranked): every}

        def holds(k: int) -> bool:
            if k not in tried:
                tried[k] = self.trial({**base, **{n: level(n) for n in self.ranked[:k]}},
                                      f"find: top {k} ranked layer(s) at {name}")
            return tried[k].holds

        lo, hi, k = 0, len(self.ranked), 1
        while k < hi:
            if holds(k):
                hi = k
                break
            lo = k
            k = 2 * k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            hi, lo = (mid, lo) if holds(mid) else (hi, mid)
        return tried

    def best_of(self, holding: dict[int, Trial]) -> int:
        """Among passing files (by how many layers they lift), the one the objective prefers: the fastest
        (latency), the smallest in gzip bytes (size; ties: fewer lifted). Lifting to weights-int8 costs no byte: the
        fewest lifted is not always the smallest."""
        if self.objective == "latency":
            return min(holding, key=lambda k: (holding[k].latency_ms, k))
        return min(holding, key=lambda k: (holding[k].gzip_bytes, k))

    # -- 3. give back
    def options(self, name: str) -> list[str]:
        """The precisions cheaper than float32 this layer can take, in the order they are tried."""
        layer = self.by_name[name]
        return [p for p in self.precisions if p != "float32" and (layer.weight_elements or PRECISIONS[p].weightless)]

    def gain(self, after: Trial) -> float:
        before = self.current
        if self.objective == "latency":
            return before.latency_ms - after.latency_ms
        return float(before.gzip_bytes - after.gzip_bytes)

    def accept(self, candidate: Trial) -> bool:
        """Whether a candidate that moved some layers to cheaper precisions is kept (the module doc's rule 4); when
        not, `refused` says why."""
        self.refused = ""
        if not candidate.holds:
            self.refused = f"loses {candidate.drop:.2f}"
            return False
        ms, now = candidate.latency_ms, self.current.latency_ms
        if self.objective == "latency":  # not slower than the file now (noise aside), nor than where it started
            if ms <= min((1 + LATENCY_NOISE) * now, self.start_ms):
                return True
            self.refused = f"holds ({candidate.drop:.2f}) but is slower ({ms:.4g} ms against {now:.4g})"
            return False
        to_int8 = candidate.assignment.items() <= self.state.items()  # only layers moved to int8
        if not (candidate.gzip_bytes < self.current.gzip_bytes
                or to_int8 and candidate.gzip_bytes <= (1 + INT8_BYTES_MARGIN) * self.current.gzip_bytes):
            self.refused = f"holds ({candidate.drop:.2f}) but saves no byte"
            return False
        if ms > SLOWER_LIMIT * self.reference_ms and (
                self.retime is None or self.retime(candidate.assignment) > SLOWER_LIMIT * self.reference_ms):
            self.refused = (f"holds ({candidate.drop:.2f}) but is {ms / self.reference_ms:.1f}x slower than where "
                            "the search started" + (" (timed twice)" if self.retime is not None else ""))
            return False  # far slower (e.g. int16x8 kernels outside XNNPACK): not worth the bytes
        return True

    def units(self) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
        """(groups joined by a shared-scale op, single layers) among the layers not int8, in ranking order."""
        lifted = [n for n in self.ranked if self.state.get(n, "int8") != "int8"]
        groups = []
        for name in lifted:
            layer = self.by_name[name]
            members = tuple(dict.fromkeys([name] + [f for f in layer.feeds if f in lifted]))
            if layer.shares_scale and len(members) > 1:
                groups.append(members)
        return groups, [(n,) for n in lifted]

    def give_back(self) -> None:
        groups, singles = self.units()
        # probes: groups, then single layers least hurt by int8 first, at most a third of the budget
        # independent of each other: planned first (the same ones, in the same order, as one at a time), then
        # measured together
        probes: dict[tuple[str, ...], Trial] = {}
        planned, count, new = [], len(self.trials), set()
        for unit in groups + singles[::-1]:
            if count > self.budget // 3 + self.found_at:
                break
            assignment = {**self.state, **{n: "int8" for n in unit}}
            key = tuple(sorted((k, v) for k, v in assignment.items() if v != "int8"))
            if key not in self.seen and key not in new:
                new.add(key)
                count += 1
            planned.append((unit, assignment))
        measured = self.trial_many([(a, f"probe: {' + '.join(unit)} at int8") for unit, a in planned])
        for (unit, _), t in zip(planned, measured):
            probes[unit] = t
            if not self.accept(t):
                for n in unit:
                    self.verdict(n, "int8", self.refused, joint=len(unit) > 1)

        def rank(unit: tuple[str, ...]) -> tuple:
            t = probes.get(unit)
            if t is None:  # not probed: least hurt by int8 first
                return (1, -self.ranked.index(unit[0]), 0)
            lost = max(t.drop - self.current.drop, 0.0) + 1e-3
            return (0, -self.gain(t) / lost, -sum(self.by_name[n].weight_elements for n in unit))

        order = sorted(groups, key=rank) + sorted(singles, key=rank)
        # each precision, cheapest first: the longest prefix of the ranked layers that keeps the bound together
        for p in [q for q in self.precisions if q != "float32"]:
            units = [u for u in order if all(self.can_take(n, p) for n in u)
                     and (p != "int8" or u not in probes or self.accept(probes[u]))]  # int8 alone broke it
            if units and not self.spent:
                self.prefix(units, p)
        # then one at a time, the layers still in float32 (accuracy is not monotonic in the set)
        for unit in [u for u in singles if self.state.get(u[0]) == "float32"]:
            if self.spent:
                self.out_of_budget(unit)
                continue
            held = self.try_unit(unit)
            if held is not None:
                self.take(unit, held)
            else:
                said = "; ".join(f"{p} {why}" for p, why in self.verdicts.get(unit[0], {}).items())
                self.reasons[unit[0]] = f"float32: no cheaper precision is kept ({said or 'none tried'})"

    def verdict(self, name: str, p: str, why: str, joint: bool = False) -> None:
        """What a cheaper precision did for a layer, for its reason (a joint trial says so)."""
        self.verdicts.setdefault(name, {})[p] = why + (" (tried with other layers)" if joint else "")

    def can_take(self, name: str, p: str) -> bool:
        """A precision before the layer's own in `PRECISIONS` order; with the size objective only where it saves
        bytes, or int8 (the target format)."""
        order = list(PRECISIONS)
        now = self.state.get(name, "int8")
        if p not in self.options(name) or order.index(p) >= order.index(now):
            return False
        if self.objective == "latency" or p == "int8":
            return True
        return self.by_name[name].weight_elements > 0 and PRECISIONS[p].weight_bytes < PRECISIONS[now].weight_bytes

    #: Layers that break the bound skipped per precision before the give-back moves on (each costs a few files).
    SKIPS = 3

    def prefix(self, units: list[tuple[str, ...]], p: str) -> None:
        """Give `p` to as many of `units` as keep the bound, in their order: the longest prefix that holds (all of
        them first, then bisection), then past the unit that broke it, the same again with the rest (`SKIPS`
        times at most)."""
        rest = list(units)
        for _ in range(self.SKIPS + 1):
            rest = [u for u in rest if all(self.can_take(n, p) for n in u)]  # given a precision already: not again
            if not rest or self.spent:
                break
            k = self.longest(rest, p)
            rest = rest[k + 1:]  # rest[k] breaks the bound with the set as it is now: it keeps its precision

    def longest(self, units: list[tuple[str, ...]], p: str) -> int:
        """The longest prefix of `units` that keeps the bound at `p` (given it), or 0."""
        tried: dict[int, Trial | None] = {0: None}

        def holds(k: int) -> bool:
            if k not in tried:
                if self.spent:
                    return False
                names = [n for u in units[:k] for n in u]
                t = self.trial({**self.state, **{n: p for n in names}},
                               f"give back: {k} of {len(units)} layer(s) -> {p}")
                tried[k] = t if self.accept(t) else None
                if tried[k] is None:
                    for n in names:
                        self.verdict(n, p, self.refused, joint=len(names) > 1)
            return tried[k] is not None

        lo, hi = 0, len(units)
        if holds(hi):
            lo = hi
        while hi - lo > 1 and not self.spent:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if holds(mid) else (lo, mid)
        for u in units[:lo]:
            self.take(u, tried[lo])
        return lo

    def try_unit(self, unit: tuple[str, ...]) -> Trial | None:
        """The cheapest precision (size) or the fastest (latency) that keeps the bound with `unit` given it."""
        held: list[Trial] = []
        for p in [q for q in self.precisions if q != "float32" and all(self.can_take(n, q) for n in unit)]:
            if self.spent:
                break
            t = self.trial({**self.state, **{n: p for n in unit}}, f"give back: {' + '.join(unit)} -> {p}")
            if not self.accept(t):
                for n in unit:
                    self.verdict(n, p, self.refused, joint=len(unit) > 1)
            else:
                held.append(t)
                if self.objective == "size":
                    break  # the cheapest that holds (the order is by bytes, then by kernel)
        if not held:
            return None
        best = held[0]
        for t in held[1:]:  # latency: a later precision only when it is clearly faster
            if t.latency_ms < (1 - LATENCY_MARGIN) * best.latency_ms:
                best = t
        return best

    def take(self, unit: tuple[str, ...], best: Trial) -> None:
        chosen = best.assignment.get(unit[0], "int8")
        order = list(PRECISIONS)
        for n in unit:
            before = self.state.get(n, "int8")
            self.state[n] = chosen
            cheaper = {p: w for p, w in self.verdicts.get(n, {}).items() if order.index(p) < order.index(chosen)}
            why = "; ".join(f"{p} {w}" for p, w in cheaper.items())
            with_ = f" (given back with {', '.join(m for m in unit if m != n)})" if len(unit) > 1 else ""
            self.reasons[n] = (f"{chosen}: given back from {before}{with_}; the file keeps the bound (loses "
                               f"{best.drop:.2f} {self.unit})" + (f"; cheaper: {why}" if why else ""))
        self.current = best

    def out_of_budget(self, unit: tuple[str, ...]) -> None:
        for n in unit:
            self.reasons[n] = (f"{self.state.get(n, 'int8')}: not tried (the budget of {self.budget} candidates "
                               "was spent)")
        note = (f"the search stopped at its budget of {self.budget} candidates: the layers not reached keep the "
                "precision that holds")
        if note not in self.notes:
            self.notes.append(note)


def _round(x: float):
    return x if math.isinf(x) else round(x, 4)


# ------------------------------------------------------------------------------------------------- the files
def recipe_for(assignment: dict[str, str], scopes: dict[str, list[str]],
               io: list[tuple[str, list[str]]] = ()) -> list[dict]:
    """The litert-quantizer recipe: int8 for every op, then one rule per precision for the layers given it (their
    ops' exact scopes). Rules are in `PRECISIONS` order and scopes sorted: the same assignment, the same recipe.

    `io` are litert-quantizer's virtual INPUT and OUTPUT ops (their scope: the model's input, or output, tensor
    names) with the layers that read the inputs (or write the outputs): they follow those layers, float when any of
    them computes in float, 16-bit when any takes int16 activations (else an int8 input clips what the float layer
    was kept float for).

    Example:
        recipe_for({"small": "dynamic"}, {"small": ["m/small/MatMul;"]})
    """
    given: dict[str, list[str]] = {}
    for layer, q in assignment.items():
        if q != "int8":
            given.setdefault(q, []).extend(scopes.get(layer, []))
    for scope, layers in io:
        kinds = {assignment.get(layer, "int8") for layer in layers}
        floats = kinds - {"int8", "int16x8"}
        q = "float32" if floats else "int16x8" if "int16x8" in kinds else None
        if q is not None:
            given.setdefault(q, []).append(scope)
    rules = [PRECISIONS["int8"].rule(".*")]
    for p in PRECISIONS:
        names = sorted(set(given.get(p, [])))
        if names:
            rules.append(PRECISIONS[p].rule("^(?:" + "|".join(re.escape(s) for s in names) + ")$"))
    return rules


def _quantizer():
    try:
        from litert_quantizer import quantizer
    except ImportError as e:
        raise BadInput("the precision search needs litert-quantizer (AI Edge Quantizer)",
                       fix="pip install litert-quantizer") from e
    return quantizer


class Builder:
    """Builds candidate files from one float32 file: calibrated once, then `build(assignment)` per candidate."""

    def __init__(self, float_data: bytes, calibration: dict[str, np.ndarray], signature: str):
        self.float_data = bytes(float_data)
        self.signature = signature
        q = self._new(recipe_for({}, {}))
        n = len(next(iter(calibration.values())))
        samples = [{k: np.asarray(v[i:i + 1]) for k, v in calibration.items()} for i in range(n)]
        from litert_quantizer import calibrator
        from litert_quantizer.utils import qsv_utils

        try:
            with contextlib.redirect_stderr(io.StringIO()):
                # the ranges seen (as the TFLite converter calibrates), not litert-quantizer's default moving
                # average of each sample's, which clips what the calibration data did reach
                cal = calibrator.Calibrator(self.float_data, qsv_update_func=qsv_utils.min_max_update)
                cal.calibrate({signature: samples}, q._recipe_manager)
                self.qsvs = cal.get_model_qsvs()
        except (ValueError, RuntimeError, KeyError) as e:
            raise UnsupportedModel(f"litert-quantizer could not calibrate the model: {first_line(e)[:300]}",
                                   fix="rerun without --precision (the accuracy gate keeps float layers with the "
                                       "TFLite converter)") from e
        self.calibration_samples = n

    @classmethod
    def calibrated(cls, float_data: bytes, qsvs: dict, signature: str, samples: int) -> "Builder":
        """A builder with the calibration another one made (`builder.qsvs`): a node of a cluster builds the same
        candidates as the process that calibrated, without calibrating again."""
        b = cls.__new__(cls)
        b.float_data, b.qsvs, b.signature, b.calibration_samples = bytes(float_data), qsvs, signature, samples
        return b

    def _new(self, recipe: list[dict]):
        q = _quantizer().Quantizer(bytearray(self.float_data))
        q.load_quantization_recipe(recipe)
        return q

    def build(self, recipe: list[dict]) -> bytes:
        try:
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                q = self._new(recipe)
                return bytes(q.quantize(self.qsvs if q.need_calibration else None,
                                        enable_progress_report=False).quantized_model)
        except (ValueError, RuntimeError, KeyError, TypeError, NotImplementedError) as e:
            raise UnsupportedModel(f"litert-quantizer failed on this precision mix: {first_line(e)[:300]}",
                                   fix="rerun without --precision, or name fewer precisions (--precision "
                                       "int8,float32)") from e


def rebuild(float_data: bytes, recipe: list[dict], calibration: dict[str, np.ndarray], signature: str) -> bytes:
    """The searched file again, from the float32 file, the card's `recipe` and the same calibration data.

    Example:
        card = json.loads(Path("m.mixed.tflite.edgekeras.json").read_text())
        data = rebuild(Path("m.float32.tflite").read_bytes(), card["steps"][-1]["settings"]["recipe"], calib,
                       "serving_default")
    """
    return Builder(float_data, calibration, signature).build(recipe)


def describe_layers(graph):
    """The layers of a float file (a `gate._TFLiteGraph`: its ops, each given to a Keras layer): their weights, op
    types and the layers they read; each layer's op scopes (litert-quantizer's scope: the op's output tensor names,
    each followed by ";"); and the virtual INPUT and OUTPUT ops' scopes with the layers that read the inputs and
    write the outputs (`recipe_for`'s `io`)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=graph.calibrated,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    details = {t["index"]: t for t in it.get_tensor_details()}
    produced = {i for op in it._get_ops_details() for i in op["outputs"]}
    inputs = {d["index"] for d in it.get_input_details()}
    weights: dict[str, int] = {}
    ops: dict[str, list[str]] = {}
    scopes: dict[str, list[str]] = {}
    feeds: dict[str, list[str]] = {}
    producer = {}
    for (op_name, ins, outs), layer in zip(graph.ops, graph.layers):
        for t in outs:
            producer[t] = layer
    for op, (op_name, ins, outs), layer in zip(it._get_ops_details(), graph.ops, graph.layers):
        if layer is None:
            continue
        ops.setdefault(layer, []).append(op_name)
        if outs:
            scopes.setdefault(layer, []).append(";".join(outs) + ";")
        for i in op["inputs"]:
            if i < 0 or i in produced or i in inputs or i not in details:
                continue
            d = details[i]
            if np.dtype(d["dtype"]).kind == "f" and int(np.prod(d["shape"])) > 1:
                weights[layer] = weights.get(layer, 0) + int(np.prod(d["shape"]))
        for t in ins:
            p = producer.get(t)
            if p is not None and p != layer:
                feeds.setdefault(layer, []).append(p)
    names = list(dict.fromkeys(layer for layer in graph.layers if layer is not None))
    readers = [layer for (_, ins, _), layer in zip(graph.ops, graph.layers)
               if layer is not None and set(ins) & set(graph.inputs)]
    writers = [producer[t] for t in graph.outputs if producer.get(t) is not None]
    io = [(";".join(graph.inputs) + ";", list(dict.fromkeys(readers))),
          (";".join(graph.outputs) + ";", list(dict.fromkeys(writers)))]
    return ([Layer(n, weights.get(n, 0), tuple(ops.get(n, ())), tuple(dict.fromkeys(feeds.get(n, ()))))
             for n in names], scopes, io)


@dataclass
class SearchResult:
    """The searched file and everything the card records (see `settings`)."""

    outcome: Outcome
    data: bytes
    recipe: list[dict]
    layers: list[Layer]
    keras_value: float
    metric: str
    max_drop: float
    objective: str
    precisions_allowed: tuple[str, ...]
    ranking: list[tuple[str, float]]
    compared: dict[str, dict]
    signature: str
    calibration_samples: int
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.outcome.met

    def settings(self) -> dict:
        """The card's convert step: engine, the recipe that rebuilds the file, each layer's precision and why,
        every candidate, the comparison with plain int8 and float32 measured in the same run, the notes."""
        try:
            from importlib.metadata import version
            engine_version = version("litert-quantizer")
        except Exception:  # noqa: BLE001 - the version is a record, not a requirement
            engine_version = "unknown"
        return {
            "mode": "mixed", "engine": "litert-quantizer", "engine_version": engine_version,
            "signature": self.signature, "calibration_samples": self.calibration_samples,
            "recipe": self.recipe,
            "precision_search": {
                **_record(self.outcome, self.layers, self.objective, self.precisions_allowed, self.max_drop,
                          self.metric, self.keras_value),
                "compared_with": self.compared,
                "ranking": [[name, round(err, 4)] for name, err in self.ranking[:50]],
                "measured_on": f"litert (default kernels, {MEASURE_THREADS} thread(s))",
                "candidates": [t.summary() for t in self.outcome.trials],
                "notes": list(self.notes),
            },
        }


def _record(outcome: Outcome, layers: list[Layer], objective: str, allowed, max_drop: float, metric: str,
            keras_value: float) -> dict:
    """What both searches' cards say of the chosen file and of each layer."""
    from .gate import _drop_unit

    c = outcome.chosen
    return {"objective": objective, "precisions_allowed": list(allowed), "max_drop": max_drop, "metric": metric,
            "drop_unit": _drop_unit(metric), "keras_value": round(keras_value, 6), "met": outcome.met,
            "value": round(c.value, 6), "drop": _round(c.drop), "bytes": c.bytes, "gzip_bytes": c.gzip_bytes,
            "latency_ms": round(c.latency_ms, 4), "int8_weight_fraction": round(c.int8_weight_fraction, 4),
            "layers": [{"layer": layer.name, "precision": outcome.precisions.get(layer.name, "int8"),
                        "weights": layer.weight_elements, "why": outcome.reasons.get(layer.name, "")}
                       for layer in layers],
            "layer_count_by_precision": _counts(outcome.precisions)}


def _counts(precisions: dict[str, str]) -> dict[str, int]:
    """How many layers each precision has, in `PRECISIONS` order."""
    values = list(precisions.values())
    return {p: values.count(p) for p in PRECISIONS if p in values}


def search_file(source, float_data: bytes, calibration: dict[str, np.ndarray], eval_x: dict[str, np.ndarray],
                eval_y: np.ndarray, *, metric: str, kind: str | None, output: str, keras_value: float,
                max_drop: float, objective: str = "size", precisions="auto", budget: int = DEFAULT_BUDGET,
                compare: dict[str, bytes] | None = None, progress=None, fan_out=None) -> SearchResult:
    """Search the per-layer precisions of `source`'s float32 file (module doc); runs in the worker.

    Args:
        source: the loaded `edgekeras.source.SourceModel` (its Keras layers name the ops).
        float_data: its float32 .tflite (`ptq.convert(source, "float32").data`).
        calibration: representative inputs by input name.
        eval_x, eval_y, metric, kind, output, keras_value, max_drop: as for `gate.search_tflite`.
        objective: "size" or "latency"; precisions: "auto" or names (`parse_precisions`); budget: candidates at most.
        compare: files measured beside the result in the same run, by name (e.g. {"int8": plain, "float32": f32}).
        progress: called with (candidates measured, candidates at most).
        fan_out: builds and scores several candidates elsewhere: `fan_out(context, recipes)` returns one
            `score_candidate` result (file bytes, metric value, runtime note, failed) per recipe
            (`cluster.CandidateFarm.score`); `context` holds the float32 file, the calibration result and the
            evaluation data. Latencies are still measured here, so that every candidate is timed on one machine.

    Returns:
        A `SearchResult`.

    Raises:
        BadInput: as `gate.search_tflite`; an unknown precision or objective.
        UnsupportedModel: litert-quantizer cannot calibrate or quantize the model.
        BadInput: litert-quantizer is not installed (the message gives its install command).
    """
    from .gate import (_check_args, _gzip_size, _measure_file, _rank_tflite, _TFLiteGraph, _meets, drop_of,
                       tflite_int8_weight_fraction)

    allowed = parse_precisions(precisions)
    check_objective(objective)
    _check_args(metric, max_drop, keras_value, eval_x, eval_y, [t.name for t in source.inputs])
    if not calibration:
        raise BadInput("the precision search needs calibration data", fix="pass calibration data (--calib)")
    signature = _signature(float_data)
    graph = _TFLiteGraph(float_data, source.keras_model)
    layers, scopes, io = describe_layers(graph)
    builder = Builder(float_data, calibration, signature)
    plain = builder.build(recipe_for({}, scopes, io))
    from .gate import RANKING_SAMPLES

    samples = {k: np.asarray(v)[:RANKING_SAMPLES] for k, v in calibration.items()}
    ranking, _ = _rank_tflite(graph, plain, samples, source.inputs, True)
    unit = "% of the Keras mae" if metric == "mae" else "points"
    runtime_notes: list[str] = []
    files: dict[str, bytes] = {}
    most = budget + 1

    with tempfile.TemporaryDirectory(prefix="edgekeras-precision-") as tmp:
        def measure_bytes(data: bytes, name: str):
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(data)
            value, latency, note = _measure_file(path, eval_x, eval_y, metric, kind, output, MEASURE_THREADS)
            if note:
                runtime_notes.append(note)
            return value, latency

        def measure(assignment: dict[str, str], purpose: str) -> Trial:
            recipe = recipe_for(assignment, scopes, io)
            key = json.dumps(recipe, sort_keys=True)
            data = files.get(key)
            if data is None:
                data = plain if not assignment else builder.build(recipe)
                files[key] = data
            value, latency = measure_bytes(data, "candidate")
            return record(assignment, purpose, data, value, latency)

        def record(assignment: dict[str, str], purpose: str, data: bytes, value: float, latency: float) -> Trial:
            drop = drop_of(metric, value, keras_value)
            if progress is not None:
                progress(len(trial_log) + 1, max(most, len(trial_log) + 1))
            t = Trial(dict(assignment), purpose, value, drop, _meets(drop, max_drop), len(data), _gzip_size(data),
                      latency, tflite_int8_weight_fraction(data))
            trial_log.append(t)
            return t

        def retime(assignment: dict[str, str]) -> float:
            return _time_file(files[json.dumps(recipe_for(assignment, scopes, io), sort_keys=True)], Path(tmp), eval_x)

        trial_log: list[Trial] = []
        outcome = search(layers, [name for name, _ in ranking], measure, max_drop=max_drop, objective=objective,
                         precisions=allowed, budget=budget, unit=unit, retime=retime,
                         measure_many=None if fan_out is None else _fanned_out(
                             fan_out, {"float_data": float_data, "qsvs": builder.qsvs, "signature": signature,
                                       "samples": builder.calibration_samples, "eval_x": eval_x, "eval_y": eval_y,
                                       "metric": metric, "kind": kind, "output": output},
                             lambda a: recipe_for(a, scopes, io), files, Path(tmp), record, runtime_notes))
        recipe = recipe_for({k: v for k, v in outcome.chosen.assignment.items() if v != "int8"}, scopes, io)
        data = files[json.dumps(recipe, sort_keys=True)]
        compared = {}
        for name, other in (compare or {}).items():
            value, latency = measure_bytes(other, f"compare-{name}")
            again_chosen = measure_bytes(data, "chosen-again")[1]
            compared[name] = {"value": round(value, 6), "drop": _round(drop_of(metric, value, keras_value)),
                              "bytes": len(other), "gzip_bytes": _gzip_size(other), "latency_ms": round(latency, 4),
                              "searched_latency_ms": round(again_chosen, 4),
                              "int8_weight_fraction": round(tflite_int8_weight_fraction(other), 4)}
    if progress is not None:
        progress(len(trial_log), len(trial_log))
    notes = [_summary(outcome, "precision search", objective, unit, max_drop)]
    notes += list(outcome.notes) + list(dict.fromkeys(runtime_notes))
    return SearchResult(outcome=outcome, data=data, recipe=recipe, layers=layers, keras_value=float(keras_value),
                        metric=metric, max_drop=float(max_drop), objective=objective, precisions_allowed=allowed,
                        ranking=ranking, compared=compared, signature=signature,
                        calibration_samples=builder.calibration_samples, notes=list(dict.fromkeys(notes)))


def _fanned_out(fan_out, context: dict, recipe_of, files: dict[str, bytes], tmp: Path, record,
                notes: list[str]):
    """`search`'s measure_many for `search_file`: the candidates built and scored by `fan_out`, timed here (a
    candidate that failed on its data is not timed: 0.0, as `_measure_file` gives it)."""
    def measure_many(items: list[tuple[dict[str, str], str]]) -> list[Trial]:
        recipes = [recipe_of(a) for a, _ in items]
        trials = []
        for (assignment, purpose), recipe, (data, value, note, failed) in zip(items, recipes,
                                                                             fan_out(context, recipes)):
            files[json.dumps(recipe, sort_keys=True)] = data
            if note:
                notes.append(note)
            latency = 0.0 if failed else _time_file(data, tmp, context["eval_x"])
            trials.append(record(assignment, purpose, data, value, latency))
        return trials

    return measure_many


def _time_file(data: bytes, tmp: Path, eval_x: dict[str, np.ndarray]) -> float:
    """Median one-sample latency (ms) of a file's bytes, as the search times every candidate."""
    from ..runtime.session import open_session
    from .gate import _latency_ms

    path = tmp / "timed.tflite"
    path.write_bytes(data)
    return _latency_ms(open_session(path, threads=MEASURE_THREADS), eval_x)


def score_candidate(context: dict, recipe: list[dict]) -> tuple[bytes, float, str, bool]:
    """One candidate of a fanned-out search, built from `context` (see `search_file`'s fan_out) and scored on its
    evaluation data with LiteRT's default kernels, as `search_file` scores its own: (file bytes, value, note,
    whether it failed on the data: then scored as the worst, and not timed)."""
    from .gate import _measure_file

    data = Builder.calibrated(context["float_data"], context["qsvs"], context["signature"],
                              context["samples"]).build(recipe)
    with tempfile.TemporaryDirectory(prefix="edgekeras-candidate-") as tmp:
        path = Path(tmp) / "candidate.tflite"
        path.write_bytes(data)
        value, latency, note = _measure_file(path, context["eval_x"], context["eval_y"], context["metric"],
                                             context["kind"], context["output"], MEASURE_THREADS, latency=False)
    return data, value, note, latency is not None  # not timed when it ran: 0.0 when it failed


def _summary(outcome: Outcome, what: str, objective: str, unit: str, max_drop: float) -> str:
    """The first note of a search: each precision's layer count, the loss, the size, the candidates measured."""
    if not outcome.met:
        return outcome.notes[0] if outcome.notes else "the bound cannot be met"
    head = ", ".join(f"{n} {p}" for p, n in _counts(outcome.precisions).items())
    c, n = outcome.chosen, len(outcome.trials)
    return (f"{what} ({objective}): {head}; the file loses {c.drop:.2f} {unit} (bound {max_drop:g}), {c.bytes:,} "
            f"bytes, {100 * c.int8_weight_fraction:.0f}% of its weight bytes int8, {n} candidate{'' if n == 1 else 's'}"
            " measured")


def _signature(float_data: bytes) -> str:
    from ai_edge_litert.interpreter import Interpreter

    sigs = Interpreter(model_content=float_data).get_signature_list()
    if not sigs:
        raise UnsupportedModel("the float32 file has no signature; litert-quantizer calibrates by signature",
                               fix="please report this model")
    return "serving_default" if "serving_default" in sigs else sorted(sigs)[0]


# ------------------------------------------------------------------------------------------------- ONNX
#: What ONNX Runtime's static QDQ quantizer can give a layer: its nodes int8 (uint8 activations, int8 weights),
#: their outputs as 16-bit activations (uint16 QDQ, `TensorQuantOverrides`; ONNX Runtime raises the file to opset 21,
#: the first whose QuantizeLinear takes 16 bits, and it stays standard ONNX), or left float (`nodes_to_exclude`).
#: Weight-only and float16 have no static-QDQ form.
ONNX_PRECISIONS = ("int8", "int16x8", "float32")


@dataclass
class OnnxSearchResult:
    """The searched int8 ONNX file and what its card records."""

    outcome: Outcome
    data: bytes
    excluded: list[str]
    sixteen_bit: list[str]
    layers: list[Layer]
    keras_value: float
    metric: str
    max_drop: float
    objective: str
    allowed: tuple[str, ...] = ONNX_PRECISIONS
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.outcome.met

    def settings(self) -> dict:
        import onnxruntime

        from ..export.onnx import INT8_SETTINGS

        return {"mode": "int8", "quantizer": "onnxruntime.quantization.quantize_static",
                "onnxruntime": onnxruntime.__version__, **INT8_SETTINGS, "nodes_to_exclude": list(self.excluded),
                "tensor_quant_overrides": {t: "uint16" for t in self.sixteen_bit},
                "precision_search": {
                    **_record(self.outcome, self.layers, self.objective, self.allowed, self.max_drop, self.metric,
                              self.keras_value),
                    "measured_on": f"onnxruntime (CPU, {MEASURE_THREADS} thread(s))",
                    "candidates": [t.summary() for t in self.outcome.trials],
                    "notes": list(self.notes)}}


def search_onnx_file(float_onnx: Path, out: Path, calibration: dict[str, np.ndarray], eval_x: dict[str, np.ndarray],
                     eval_y: np.ndarray, *, metric: str, kind: str | None, output: str, keras_value: float,
                     max_drop: float, inputs, layers: list[Layer], ranking: list[tuple[str, float]],
                     objective: str = "size", precisions="auto", budget: int = DEFAULT_BUDGET,
                     progress=None) -> OnnxSearchResult:
    """The precision search for the int8 ONNX file (`ONNX_PRECISIONS`), every candidate measured on ONNX Runtime.

    Args:
        float_onnx: the float ONNX file; out: where the chosen file is written.
        layers, ranking: the TFLite search's (`SearchResult.layers`, `.ranking`): the same Keras layers, found in the
            ONNX graph by name (tf2onnx keeps TensorFlow's op names); layers with no node are left out, with a note.
        precisions: as for `search_file`; those ONNX Runtime cannot express (`ONNX_PRECISIONS`) are left out.
        The others: as for `search_file`.

    Returns:
        An `OnnxSearchResult`; its file is also written to `out`.

    Raises:
        BadInput: as `search_file`. UnsupportedModel: ONNX Runtime's quantizer fails on this model.

    Example:
        r = search_onnx_file(Path("m.onnx"), Path("m.int8.onnx"), calib, {"image": x}, y, metric="accuracy",
                             kind="probabilities", output="probs", keras_value=0.97, max_drop=0.5,
                             inputs=src.inputs, layers=tfl.layers, ranking=tfl.ranking)
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .gate import (_check_args, _gzip_size, _measure_file, _meets, _onnx_nodes_by_layer, _quantize_onnx, drop_of,
                       onnx_int8_weight_fraction)

    _check_args(metric, max_drop, keras_value, eval_x, eval_y, [t.name for t in inputs])
    allowed = tuple(p for p in ONNX_PRECISIONS if p in parse_precisions(precisions))
    unit = "% of the Keras mae" if metric == "mae" else "points"
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgekeras-precision-onnx-") as tmp:
        pre, cache = Path(tmp) / "pre.onnx", Path(tmp) / "calibration.json"
        try:
            quant_pre_process(str(float_onnx), str(pre), skip_symbolic_shape=True)
        except (ValueError, RuntimeError, KeyError, TypeError, AssertionError) as e:
            raise UnsupportedModel(f"ONNX Runtime's quantization pre-processing failed: {first_line(e)[:300]}",
                                   fix="rerun with --debug for details") from e
        nodes_of = _onnx_nodes_by_layer(pre, [layer.name for layer in layers])
        outputs_of = {n.name: [o for o in n.output if o] for n in onnx.load(str(pre)).graph.node}
        found = [layer for layer in layers if nodes_of.get(layer.name)]
        absent = [layer.name for layer in layers if not nodes_of.get(layer.name)]
        if absent:
            notes.append(f"{len(absent)} layer(s) have no node in the ONNX graph and stay int8: "
                         f"{', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}")
        files: dict[tuple, tuple[bytes, list[str], list[str]]] = {}

        def build(assignment: dict[str, str]) -> tuple[bytes, list[str], list[str]]:
            key = tuple(sorted(assignment.items()))
            if key not in files:
                exclude = sorted(n for name, p in assignment.items() if p == "float32" for n in nodes_of[name])
                sixteen = sorted(t for name, p in assignment.items() if p == "int16x8"
                                 for n in nodes_of[name] for t in outputs_of.get(n, []))
                path = Path(tmp) / f"candidate{len(files)}.onnx"
                _quantize_onnx(pre, path, calibration, inputs, exclude, cache, sixteen_bit=sixteen)
                files[key] = (path.read_bytes(), exclude, sixteen)
            return files[key]

        def measure(assignment: dict[str, str], purpose: str) -> Trial:
            data, _, _ = build(assignment)
            path = Path(tmp) / "measured.onnx"
            path.write_bytes(data)
            value, latency, note = _measure_file(path, eval_x, eval_y, metric, kind, output, MEASURE_THREADS)
            if note:
                notes.append(note)
            drop = drop_of(metric, value, keras_value)
            if progress is not None:
                progress(len(files), max(len(files), budget + 1))
            return Trial(dict(assignment), purpose, value, drop, _meets(drop, max_drop), len(data), _gzip_size(data),
                         latency, onnx_int8_weight_fraction(path))

        def retime(assignment: dict[str, str]) -> float:
            from ..runtime.session import open_session
            from .gate import _latency_ms

            path = Path(tmp) / "retimed.onnx"
            path.write_bytes(build(assignment)[0])
            return _latency_ms(open_session(path, threads=MEASURE_THREADS), eval_x)

        outcome = search(found, [name for name, _ in ranking], measure, max_drop=max_drop, objective=objective,
                         precisions=allowed, budget=budget, unit=unit, retime=retime)
        data, exclude, sixteen = build(outcome.chosen.assignment)
        Path(out).write_bytes(data)
    if progress is not None:
        progress(len(outcome.trials), len(outcome.trials))
    lead = _summary(outcome, "precision search on ONNX Runtime", objective, unit, max_drop)
    return OnnxSearchResult(outcome=outcome, data=data, excluded=exclude, sixteen_bit=sixteen, layers=found,
                            keras_value=float(keras_value), metric=metric, max_drop=float(max_drop),
                            objective=objective, allowed=allowed,
                            notes=list(dict.fromkeys([lead] + outcome.notes + notes)))
