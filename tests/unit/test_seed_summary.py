"""Across-seed summary: exact means and spreads from a tidy table of known values."""

import math

import pandas as pd
import pytest

from workflow_scripts.steps import seed_summary


def tidy(rows):
    columns = [
        "model",
        "dataset",
        "eval_split",
        "row_label",
        "train_kind",
        "train_bin",
        "in_context_k",
        "test_bin",
        "metric",
        "filter",
        "seed",
        "value",
    ]
    return pd.DataFrame(rows, columns=columns)


ROWS = [
    # a trained cell, three seeds
    ("m", "d", "all", "0", "bin", 0, None, 1, "acc", "none", 42, 0.50),
    ("m", "d", "all", "0", "bin", 0, None, 1, "acc", "none", 43, 0.60),
    ("m", "d", "all", "0", "bin", 0, None, 1, "acc", "none", 44, 0.70),
    # the same cell held out: never merged with the one above
    ("m", "d", "heldout", "0", "bin", 0, None, 1, "acc", "none", 42, 0.20),
    ("m", "d", "heldout", "0", "bin", 0, None, 1, "acc", "none", 43, 0.40),
    # the base model: no seed, one run
    ("m", "d", "all", "base", "base", None, None, 1, "acc", "none", None, 0.30),
    # an in-context row, two seeds
    ("m", "d", "all", "icl2-bin0", "in_context", 0, 2, 1, "acc", "none", 43, 0.35),
    ("m", "d", "all", "icl2-bin0", "in_context", 0, 2, 1, "acc", "none", 42, 0.45),
]


def test_mean_and_spread_per_cell_over_seeds():
    summary = seed_summary.across_seeds(tidy(ROWS))
    assert len(summary) == 4
    cell = summary[(summary.row_label == "0") & (summary.eval_split == "all")].iloc[0]
    assert cell.n_seeds == 3 and cell.seeds == "42,43,44"
    assert cell["mean"] == pytest.approx(0.6) and cell["std"] == pytest.approx(0.1)
    assert (cell["min"], cell["max"], cell["range"]) == (0.5, 0.7, pytest.approx(0.2))
    heldout = summary[(summary.row_label == "0") & (summary.eval_split == "heldout")].iloc[0]
    assert heldout["mean"] == pytest.approx(0.3) and heldout["std"] == pytest.approx(math.sqrt(0.02))
    icl = summary[summary.row_label == "icl2-bin0"].iloc[0]
    assert icl.seeds == "42,43" and icl["mean"] == pytest.approx(0.4)


def test_base_model_without_seed_is_a_cell_of_one_run():
    summary = seed_summary.across_seeds(tidy(ROWS))
    base = summary[summary.row_label == "base"].iloc[0]
    assert base.n_seeds == 1 and base.seeds == "" and base["mean"] == 0.3
    assert math.isnan(base["std"]) and base["range"] == 0.0
    assert pd.isna(base.train_bin) and pd.isna(base.in_context_k)


def test_a_cell_twice_for_one_seed_is_refused():
    with pytest.raises(ValueError, match="repeat a cell for the same seed"):
        seed_summary.across_seeds(tidy(ROWS + [ROWS[0]]))


def test_missing_seed_column_is_named():
    with pytest.raises(ValueError, match="no `seed` column"):
        seed_summary.across_seeds(tidy(ROWS).drop(columns="seed"))


def test_explicit_keys_and_value_column():
    table = tidy(ROWS).rename(columns={"value": "change_vs_base"})
    summary = seed_summary.across_seeds(table, value="change_vs_base", keys=["eval_split", "row_label"])
    assert list(summary.columns[:2]) == ["eval_split", "row_label"]
    assert summary.set_index(["eval_split", "row_label"]).loc[("all", "0"), "mean"] == pytest.approx(0.6)
