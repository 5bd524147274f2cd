"""W&B sweep configs: a corpus, each accepted or refused exactly as docs/sweeps.md says, and the
expansion: grid in W&B's order, random reproducible from the seed, child by child."""

from __future__ import annotations

import math
from typing import Any

import pytest

from launchq.spec.sweeps import MAX_CHILDREN, parse_sweep
from launchq.spec.validation import ItemError

# (config, None if accepted else a fragment of the refusal, with its path)
CORPUS: list[tuple[str, dict[str, Any], str | None]] = [
    ("grid of values", {"method": "grid", "parameters": {
        "lr": {"values": [0.1, 0.01]}, "optimizer": {"values": ["adam", "sgd"]}}}, None),
    ("W&B docs random example", {"method": "random", "run_cap": 20,
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"optimizer": {"values": ["adam", "sgd"]}, "epochs": {"value": 15},
                       "learning_rate": {"distribution": "uniform", "min": 0, "max": 0.1},
                       "batch_size": {"distribution": "q_log_uniform", "q": 1,
                                      "min": math.log(32), "max": math.log(256)}}}, None),
    ("inferred int_uniform and uniform", {"method": "random", "run_cap": 5, "parameters": {
        "layers": {"min": 1, "max": 4}, "dropout": {"min": 0.1, "max": 0.5}}}, None),
    ("every distribution", {"method": "random", "run_cap": 3, "parameters": {
        "a": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        "b": {"distribution": "q_log_uniform_values", "min": 16, "max": 512, "q": 16},
        "c": {"distribution": "inv_log_uniform", "min": 1, "max": 3},
        "d": {"distribution": "normal", "mu": 0, "sigma": 2},
        "e": {"distribution": "q_normal", "mu": 10, "sigma": 3, "q": 1},
        "f": {"distribution": "log_normal"},
        "g": {"distribution": "q_log_normal", "q": 0.5},
        "h": {"distribution": "beta", "a": 2, "b": 5},
        "i": {"distribution": "q_beta", "q": 0.1},
        "j": {"values": ["x", "y"], "probabilities": [0.9, 0.1]},
        "k": {"distribution": "log_uniform", "min": -5, "max": 0}}}, None),
    ("nested parameters", {"method": "grid", "parameters": {"model": {"parameters": {
        "depth": {"values": [2, 3]}, "width": {"value": 128}}}}}, None),
    ("grid with int_uniform and q_uniform", {"method": "grid", "parameters": {
        "seed": {"distribution": "int_uniform", "min": 1, "max": 3},
        "frac": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}}}, None),
    ("a name, a program and a command are W&B's", {"method": "grid", "name": "s", "program":
        "train.py", "command": ["${env}", "python", "${program}"], "parameters": {
        "x": {"value": 1}}}, None),
    ("bayes", {"method": "bayes", "metric": {"name": "loss"}, "parameters": {
        "x": {"values": [1, 2]}}}, "sweep.method: 'bayes' is not supported"),
    ("hyperband", {"method": "random", "run_cap": 2, "early_terminate": {"type": "hyperband",
        "min_iter": 3}, "parameters": {"x": {"values": [1]}}}, "sweep.early_terminate"),
    ("random without run_cap", {"method": "random", "parameters": {"x": {"values": [1]}}},
        "sweep.run_cap: a random sweep needs run_cap"),
    ("grid over a continuous range", {"method": "grid", "parameters": {
        "lr": {"distribution": "uniform", "min": 0, "max": 1}}},
        "sweep.parameters.lr: a grid takes value, values, int_uniform or q_uniform, not uniform"),
    ("grid with probabilities", {"method": "grid", "parameters": {
        "x": {"values": [1, 2], "probabilities": [0.5, 0.5]}}}, "not categorical_w_probabilities"),
    ("a typo in a distribution", {"method": "random", "run_cap": 1, "parameters": {
        "x": {"distribution": "log_unifrom", "min": 0, "max": 1}}},
        "did you mean 'log_uniform'?"),
    ("inv_log_uniform_values", {"method": "random", "run_cap": 1, "parameters": {
        "x": {"distribution": "inv_log_uniform_values", "min": 1, "max": 2}}},
        "'inv_log_uniform_values' is not supported"),
    ("a key a distribution does not take", {"method": "random", "run_cap": 1, "parameters": {
        "x": {"distribution": "uniform", "min": 0, "max": 1, "mu": 3}}},
        "sweep.parameters.x.mu: uniform takes max, min"),
    ("min above max", {"method": "random", "run_cap": 1, "parameters": {
        "x": {"min": 5, "max": 1}}}, "min is above max"),
    ("log values at 0", {"method": "random", "run_cap": 1, "parameters": {
        "x": {"distribution": "log_uniform_values", "min": 0, "max": 1}}}, "values above 0"),
    ("empty parameters", {"method": "grid", "parameters": {}}, "at least one parameter"),
    ("an unknown top-level key", {"method": "grid", "parmeters": {}},
        "sweep.parmeters: unknown key; did you mean 'parameters'?"),
    ("a grid too big", {"method": "grid", "parameters": {
        "a": {"min": 1, "max": 200}, "b": {"min": 1, "max": 200}}}, "at most 10,000"),
    ("run_cap of 0", {"method": "grid", "run_cap": 0, "parameters": {"x": {"value": 1}}},
        "sweep.run_cap"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "refusal"), [(c, r) for _, c, r in CORPUS],
                         ids=[name for name, _, _ in CORPUS])  # fmt: skip
def test_the_corpus_is_accepted_or_refused_as_documented(
    config: dict[str, Any], refusal: str | None
) -> None:
    if refusal is None:
        sweep = parse_sweep(config)
        assert sweep.count >= 1
        assert len(list(sweep.children())) == sweep.count
        return
    with pytest.raises(ItemError) as caught:
        parse_sweep(config)
    assert refusal in str(caught.value)


def test_a_grid_is_every_combination_in_wandbs_order() -> None:
    sweep = parse_sweep({"method": "grid", "parameters": {
        "opt": {"values": ["adam", "sgd"]}, "lr": {"values": [0.1, 0.01, 0.001]},
        "model": {"parameters": {"depth": {"values": [2, 3]}}}}})  # fmt: skip
    children = list(sweep.children())
    assert sweep.count == len(children) == 12
    # Parameters sorted by name (lr, model.depth, opt), the last one fastest: itertools.product.
    assert children[:3] == [
        {"lr": 0.1, "model": {"depth": 2}, "opt": "adam"},
        {"lr": 0.1, "model": {"depth": 2}, "opt": "sgd"},
        {"lr": 0.1, "model": {"depth": 3}, "opt": "adam"},
    ]
    assert len({repr(c) for c in children}) == 12
    capped = parse_sweep({"method": "grid", "run_cap": 5, "parameters": {
        "x": {"min": 1, "max": 100}}})  # fmt: skip
    assert [c["x"] for c in capped.children()] == [1, 2, 3, 4, 5]
    quantized = parse_sweep({"method": "grid", "parameters": {
        "f": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}}})  # fmt: skip
    assert [c["f"] for c in quantized.children()] == [0.0, 0.25, 0.5, 0.75]  # numpy.arange


def test_a_random_sweep_is_the_same_from_the_same_seed_child_by_child() -> None:
    config = {"method": "random", "run_cap": 200, "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "batch": {"distribution": "q_log_uniform_values", "min": 16, "max": 256, "q": 16},
        "layers": {"min": 2, "max": 5}, "opt": {"values": ["adam", "sgd"]}}}  # fmt: skip
    first = list(parse_sweep(config, seed=7).children())
    assert first == list(parse_sweep(config, seed=7).children())
    assert first != list(parse_sweep(config, seed=8).children())
    assert parse_sweep(config, seed=7).child(150) == first[149]  # any child, on its own
    assert all(1e-4 <= c["lr"] <= 1e-1 for c in first)
    assert all(c["batch"] % 16 == 0 and 16 <= c["batch"] <= 256 for c in first)
    assert {c["layers"] for c in first} == {2, 3, 4, 5}  # min and max both inclusive
    assert {c["opt"] for c in first} == {"adam", "sgd"}
    assert all(isinstance(c["batch"], int) for c in first)  # an integer q gives ints, as W&B's
    ints = parse_sweep({"method": "random", "run_cap": 50, "parameters": {
        "n": {"distribution": "q_uniform", "min": 0, "max": 100, "q": 10}}}, seed=1)  # fmt: skip
    assert all(isinstance(c["n"], int) and c["n"] % 10 == 0 for c in ints.children())


def test_weights_and_limits() -> None:
    sweep = parse_sweep({"method": "random", "run_cap": 2000, "parameters": {
        "x": {"values": ["rare", "common"], "probabilities": [1, 9]}}}, seed=3)  # fmt: skip
    common = sum(1 for c in sweep.children() if c["x"] == "common")
    assert 1700 < common < 1900  # 90% of 2000, within a few standard deviations
    assert MAX_CHILDREN == 10_000
    with pytest.raises(IndexError):
        sweep.child(2001)
