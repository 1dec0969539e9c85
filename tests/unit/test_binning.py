"""Difficulty bins: the edges k/n <= q < (k+1)/n, every row in one bin, bad quantiles refused in one line."""

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.steps.binning import assign_bins, bin_edges, split_into_bins


def test_edges_follow_the_definition():
    # bin k holds k/n <= q < (k+1)/n: each left edge belongs to its own bin, 1.0 to the last bin.
    assert assign_bins([0.1], 10).tolist() == [1]
    assert assign_bins([1.0], 10).tolist() == [9]
    assert assign_bins([0.0], 10).tolist() == [0]
    assert assign_bins([0.0999999], 10).tolist() == [0]
    assert assign_bins([k / 10 for k in range(10)], 10).tolist() == list(range(10))
    # Values whose float product k/n * n lands below k still go to bin k.
    assert assign_bins([0.3, 0.6, 0.7], 10).tolist() == [3, 6, 7]
    assert assign_bins([1 / 3, 2 / 3, 0.999], 3).tolist() == [1, 2, 2]
    assert bin_edges(4).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_split_keeps_every_row_once():
    q = np.linspace(0, 1, 101)
    table = pd.DataFrame({"item_id": [str(i) for i in range(101)], "1pl_quantile": q})
    parts = split_into_bins(table, 10, "1pl_quantile")
    assert [len(p) for p in parts] == [10] * 9 + [11]
    assert sorted(pd.concat(parts)["item_id"]) == sorted(table["item_id"])
    assert parts[9]["1pl_quantile"].max() == 1.0


@pytest.mark.parametrize(
    "values, message",
    [([0.1, float("nan")], r"\[0, 1\]"), ([0.1, 1.2], r"\[0, 1\]"), ([0.05, 0.07], r"bins \[1\] of 2 are empty")],
)
def test_bad_quantiles_are_rejected(values, message):
    table = pd.DataFrame({"1pl_quantile": values})
    with pytest.raises(ValueError, match=message):
        split_into_bins(table, 2, "1pl_quantile")


def test_missing_quantile_column_names_the_setting():
    with pytest.raises(ValueError, match="quantile_key"):
        split_into_bins(pd.DataFrame({"x": [0.5]}), 2, "1pl_quantile")
