"""The per-layer precision search's decisions (edgekeras.compress.precision.search), without TensorFlow: a model of
a file's accuracy and size given each layer's precision stands in for building and measuring real files."""

from __future__ import annotations

import pytest

from edgekeras.compress import precision
from edgekeras.compress.precision import PRECISIONS, Layer, Trial, parse_precisions, recipe_for, search
from edgekeras.errors import BadInput

BYTES = {p.name: p.weight_bytes for p in PRECISIONS.values()}
#: A conv net with an outlier branch: "side" produces values ~1e4 that "cat" joins with the conv features.
LAYERS = [Layer("conv1", 300, ("CONV_2D",)), Layer("conv2", 9000, ("CONV_2D",), ("conv1",)),
          Layer("side", 130, ("FULLY_CONNECTED",)), Layer("cat", 0, ("CONCATENATION",), ("conv2", "side")),
          Layer("dense", 20000, ("FULLY_CONNECTED",), ("cat",)), Layer("probs", 650, ("FULLY_CONNECTED",), ("dense",))]
RANKING = ["cat", "side", "dense", "probs", "conv2", "conv1"]


def drop_model(assignment: dict[str, str]) -> float:
    """Points lost: the concatenation at int8 rounds the conv features away (20 points) unless it is float or 16-bit
    (0.2); "side" at int8 loses 3 points more, at a weight-only precision 0.1; everything else costs nothing."""
    p = {layer.name: assignment.get(layer.name, "int8") for layer in LAYERS}
    lost = {"int8": 20.0, "int16x8": 0.2}.get(p["cat"], 0.0)
    lost += {"int8": 3.0, "int16x8": 0.3, "dynamic": 0.4}.get(p["side"], 0.0 if p["side"] == "float32" else 0.1)
    return lost


def smallest_holding(max_drop: float) -> int:
    """The fewest bytes of any assignment of the model that keeps the bound (brute force)."""
    import itertools

    names = [layer.name for layer in LAYERS]
    options = [[p for p in PRECISIONS if layer.weight_elements or PRECISIONS[p].weightless] for layer in LAYERS]
    best = None
    for combo in itertools.product(*options):
        a = dict(zip(names, combo))
        if drop_model(a) <= max_drop:
            size = 1000 + sum(layer.weight_elements * BYTES[a[layer.name]] for layer in LAYERS)
            best = size if best is None else min(best, size)
    return best


class Files:
    """`measure` for `search`: the drop from `drop_model`, bytes from the precisions, latency from a table."""

    def __init__(self, max_drop: float = 0.5, slow: dict[str, float] | None = None, model=drop_model):
        self.max_drop, self.slow, self.calls, self.model = max_drop, slow or {}, [], model

    layers = LAYERS

    def __call__(self, assignment: dict[str, str], purpose: str) -> Trial:
        self.calls.append((dict(assignment), purpose))
        drop = self.model(assignment)
        size = 1000 + sum(layer.weight_elements * BYTES[assignment.get(layer.name, "int8")] for layer in self.layers)
        latency = 1.0 + sum(self.slow.get(p, 0.0) for p in assignment.values())
        return Trial(dict(assignment), purpose, 0.9 - drop / 100, drop, drop <= self.max_drop, size, size // 2,
                     latency, 0.0)


def test_the_search_gives_layers_back_to_the_cheapest_precision_that_holds():
    files = Files()
    out = search(LAYERS, RANKING, files, max_drop=0.5)
    assert out.met and out.chosen.drop <= 0.5
    # cat has no weights: int8 breaks the bound, int16x8 holds with side in float32, but together with side's
    # cheapest precision the file must be re-measured
    assert out.precisions["dense"] == out.precisions["probs"] == out.precisions["conv1"] == "int8"
    # side: int8 loses 3 points, the first 1-byte precision that holds is weights-int8; cat has no weights: int8
    # breaks the bound and int16x8 would save no byte (only int8 or a byte saved moves a layer with this objective)
    assert out.precisions["side"] == "weights-int8" and out.precisions["cat"] == "float32"
    assert out.chosen.bytes == smallest_holding(0.5)  # as small as any assignment that holds
    assert drop_model({k: v for k, v in out.precisions.items() if v != "int8"}) == pytest.approx(out.chosen.drop)
    assert out.reasons["side"].startswith("weights-int8: ranked 2 of 6")
    assert out.reasons["cat"] == "float32: no cheaper precision is kept (int8 loses 20.10)"
    assert out.reasons["dense"].startswith("int8: ranked")
    assert files.calls[0] == ({}, "plain int8")


def test_each_decision_is_a_measured_file_and_the_chosen_file_is_the_last_accepted():
    files = Files()
    out = search(LAYERS, RANKING, files, max_drop=0.5)
    assert [t.assignment for t in out.trials] == [c[0] for c in files.calls]
    assert out.chosen in out.trials and out.chosen.holds
    assert {t.purpose.split(":")[0] for t in out.trials} >= {"plain int8", "find", "probe"}
    # no file is built and measured twice (probing cat + side together at int8 is plain int8, measured already)
    assert len({tuple(sorted(t.assignment.items())) for t in out.trials}) == len(out.trials)


def test_a_layer_no_8_bit_weight_can_hold_is_lifted_to_float32_then_given_float16():
    def model(assignment):  # dense's weights need more than 8 bits: 5 points at any 1-byte precision
        dense = assignment.get("dense", "int8")
        return drop_model(assignment) + {"float16": 0.2, "float32": 0.0}.get(dense, 5.0)

    out = search(LAYERS, RANKING, Files(model=model), max_drop=0.5)
    assert any(t.purpose == "find: every ranked layer at weights-int8" and not t.holds for t in out.trials)
    assert out.met and out.precisions["dense"] == "float16" and out.chosen.drop <= 0.5
    assert out.reasons["dense"].startswith("float16: given back from float32")
    assert "weights-int8 loses 5.00" in out.reasons["dense"]


def test_plain_int8_is_the_answer_when_it_holds():
    out = search(LAYERS, RANKING, Files(max_drop=25), max_drop=25)
    assert out.met and out.chosen.assignment == {} and len(out.trials) == 1
    assert set(out.precisions.values()) == {"int8"}


def test_an_unreachable_bound_keeps_the_best_file_measured():
    files = Files(max_drop=-1)
    out = search(LAYERS, RANKING, files, max_drop=-1)
    assert not out.met and "cannot be met" in out.notes[0]
    assert out.chosen.drop == min(t.drop for t in out.trials)


def test_the_budget_stops_the_search_with_a_note_and_the_file_still_holds():
    out = search(LAYERS, RANKING, Files(), max_drop=0.5, budget=4)
    assert out.met and out.chosen.holds
    assert len(out.trials) <= 6 and any("budget" in n for n in out.notes)
    assert any("not tried" in r for r in out.reasons.values())


def test_names_of_your_own_limit_the_precisions():
    out = search(LAYERS, RANKING, Files(), max_drop=0.5, precisions=parse_precisions("dynamic"))
    assert out.precisions["cat"] == "float32" and out.precisions["side"] == "dynamic"  # 0.4 points
    assert set(out.precisions.values()) <= {"int8", "dynamic", "float32"}
    assert {p for t in out.trials for p in t.assignment.values()} <= {"int8", "dynamic", "float32"}


def test_the_latency_objective_refuses_a_slower_file():
    slow = {"int16x8": 5.0, "weights-int8": 0.0, "float32": 0.0}
    out = search(LAYERS, RANKING, Files(slow=slow), max_drop=0.5, objective="latency")
    assert out.met and out.precisions["cat"] == "float32"  # int16x8 holds but is 5 ms slower


def test_a_precision_refused_for_speed_says_so():
    def model(assignment):  # dense needs float16 weights at least, and float16 is 3x slower here
        return drop_model(assignment) + {"float16": 0.2, "float32": 0.0}.get(assignment.get("dense", "int8"), 5.0)

    out = search(LAYERS, RANKING, Files(model=model, slow={"float16": 2.0}), max_drop=0.5)
    assert out.precisions["dense"] == "float32"
    assert "float16 holds (0.30) but is 3.0x slower" in out.reasons["dense"]


def test_probes_leave_budget_to_give_layers_back_on_a_deep_model():
    layers = [Layer(f"conv{i}", 1000, ("CONV_2D",)) for i in range(300)]
    ranking = [f"conv{i}" for i in range(299)]  # conv299, the one int8 hurts, is not ranked: it comes last

    def model(assignment):
        return 0.0 if assignment.get("conv299", "int8") != "int8" else 30.0

    files = Files(model=model)
    files.layers = layers
    out = search(layers, ranking, files, max_drop=0.5, budget=120)
    assert out.met and len(out.trials) <= 140
    lifted = [n for n, p in out.precisions.items() if p != "int8"]
    assert "conv299" in lifted and len(lifted) < 50  # given back, not the whole model left lifted


def random_model(rnd, fewest: int):
    """A random model of 'fewest' to 12 layers (with and without weights, some joined by ADD or CONCATENATION) and
    its drop: each layer's cost at its precision, float32 costing nothing."""
    n = rnd.randint(fewest, 12)
    layers = [Layer(f"l{i}", rnd.choice([0, 50, 500]), (rnd.choice(["CONV_2D", "ADD", "CONCATENATION"]),),
                    tuple(f"l{j}" for j in range(i) if rnd.random() < 0.3)) for i in range(n)]
    cost = {(layer.name, p): rnd.choice([0.0, 0.1, 0.4, 2.0, 9.0]) for layer in layers for p in PRECISIONS}

    def model(assignment):
        return sum(cost[(layer.name, assignment.get(layer.name, "int8"))] for layer in layers
                   if assignment.get(layer.name, "int8") != "float32")

    return layers, model


def test_random_models_keep_the_search_s_promises():
    import random

    for seed in range(60):
        rnd = random.Random(seed)
        layers, model = random_model(rnd, fewest=2)
        n = len(layers)
        files = Files(model=model, slow={"int16x8": rnd.choice([0.0, 3.0])})
        files.layers = layers
        ranking = [layer.name for layer in layers]
        rnd.shuffle(ranking)
        out = search(layers, ranking[:rnd.randint(0, n)], files, max_drop=0.5, budget=rnd.choice([6, 40, 120]),
                     objective=rnd.choice(["size", "latency"]))
        assert out.met == out.chosen.holds, seed
        assert {k: v for k, v in out.precisions.items() if v != "int8"} == out.chosen.assignment, seed
        assert all(out.reasons[k].startswith(v) for k, v in out.precisions.items()), seed
        assert len({tuple(sorted(t.assignment.items())) for t in out.trials}) == len(out.trials), seed


def test_the_same_measurements_give_the_same_decisions():
    a = search(LAYERS, RANKING, Files(), max_drop=0.5)
    b = search(LAYERS, RANKING, Files(), max_drop=0.5)
    assert a.precisions == b.precisions and [t.purpose for t in a.trials] == [t.purpose for t in b.trials]


def test_parse_precisions_and_the_objective_are_checked():
    assert parse_precisions("auto") == tuple(PRECISIONS)
    assert parse_precisions("float16, dynamic") == ("int8", "dynamic", "float16", "float32")
    assert parse_precisions(["int16x8"]) == ("int8", "int16x8", "float32")
    with pytest.raises(BadInput, match="unknown precision.*int4"):
        parse_precisions("int8,int4")
    with pytest.raises(BadInput, match="unknown objective 'speed'"):
        search(LAYERS, RANKING, Files(), max_drop=0.5, objective="speed")


def test_the_recipe_names_each_layers_ops_exactly_and_in_a_fixed_order():
    scopes = {"side": ["net/side/MatMul;"], "cat": ["net/cat/concat;"], "dense": ["net/dense/MatMul;"]}
    rules = recipe_for({"side": "dynamic", "cat": "float32"}, scopes)
    assert [r["algorithm_key"] for r in rules] == ["min_max_uniform_quantize", "min_max_uniform_quantize",
                                                   "no_quantize"]
    assert rules[0]["regex"] == ".*" and rules[0]["op_config"]["activation_tensor_config"]["num_bits"] == 8
    assert rules[1]["regex"] == r"^(?:net/side/MatMul;)$" and "activation_tensor_config" not in rules[1]["op_config"]
    assert rules[2]["regex"] == r"^(?:net/cat/concat;)$"
    assert recipe_for({"cat": "float32", "side": "dynamic"}, scopes) == rules
    assert precision.PRECISIONS["float16"].rule("x")["algorithm_key"] == "float_casting"


def test_the_model_input_and_output_follow_the_layers_that_read_and_write_them():
    io = [("serving_default_x:0;", ["norm"]), ("PartitionedCall:0;", ["probs"])]
    scopes = {"norm": ["m/norm/sub;"], "probs": ["m/probs/MatMul;"]}
    assert recipe_for({}, scopes, io) == recipe_for({}, scopes)  # int8 reads the input: it is quantized
    rules = recipe_for({"norm": "weights-int8", "probs": "int16x8"}, scopes, io)
    by_key = {r["regex"]: r["algorithm_key"] for r in rules}
    assert by_key[r"^(?:serving_default_x:0;)$"] == "no_quantize"  # a float reader: the input stays float
    sixteen = [r for r in rules if r.get("op_config", {}).get("activation_tensor_config", {}).get("num_bits") == 16]
    assert [r["regex"] for r in sixteen] == [r"^(?:PartitionedCall:0;|m/probs/MatMul;)$"]  # the output follows probs


def test_the_recipe_turns_the_ops_of_a_layer_on_and_off_by_their_scope():
    import re

    rules = recipe_for({"b": "float32"}, {"b": ["m/b/MatMul;", "m/b/Relu;m/b/BiasAdd;"]})
    regex = re.compile(rules[1]["regex"])
    assert regex.search("m/b/MatMul;") and regex.search("m/b/Relu;m/b/BiasAdd;")
    assert not regex.search("m/bb/MatMul;") and not regex.search("m/b/MatMul;m/c/Add;")


def test_probes_measured_together_give_the_same_search():
    """`measure_many` (the probes fanned out, on a Ray cluster in the worker) makes the same trials, in the same
    order, and the same decisions as measuring them one at a time, on random models and budgets."""
    import random

    batches = []
    for seed in range(40):
        rnd = random.Random(seed)
        layers, model = random_model(rnd, fewest=3)
        ranking = [layer.name for layer in layers]
        rnd.shuffle(ranking)
        budget, objective = rnd.choice([6, 40, 120]), rnd.choice(["size", "latency"])
        alone, together = Files(model=model), Files(model=model)
        alone.layers = together.layers = layers

        def many(items, files=together):
            batches.append(len(items))
            return [files(a, purpose) for a, purpose in items]

        a = search(layers, ranking, alone, max_drop=0.5, budget=budget, objective=objective)
        b = search(layers, ranking, together, max_drop=0.5, budget=budget, objective=objective, measure_many=many)
        assert alone.calls == together.calls, seed
        assert [(t.assignment, t.purpose) for t in a.trials] == [(t.assignment, t.purpose) for t in b.trials], seed
        assert a.precisions == b.precisions and a.reasons == b.reasons and a.notes == b.notes, seed
        assert all(k > 1 for k in batches), seed  # a single new probe is measured as one
    assert len(batches) >= 10  # searches that probed several layers at once
