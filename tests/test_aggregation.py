"""Tables and heatmap matrices from synthetic cells of known values."""

import json

import numpy as np
import pytest

from workflow_scripts import aggregation, plots


def write_cells(folder, values):
    """values[train][test_bin] = accuracy; returns the cell paths."""
    paths = []
    for train, row in values.items():
        for test_bin, value in enumerate(row):
            path = folder / f"train-{train}-test-{test_bin}.json"
            path.write_text(json.dumps({
                "model": "m", "dataset": "d", "train": train, "test_bin": test_bin, "task": "t", "n": 10,
                "metrics": {"acc,none": value, "acc_norm,none": value / 2},
            }))  # fmt: skip
            paths.append(path)
    return paths


VALUES = {"base": [0.5, 0.4, 0.3], "0": [0.7, 0.4, 0.2], "1": [0.6, 0.6, 0.3], "2": [0.5, 0.5, 0.5]}


def test_table_and_change_are_exact(tmp_path):
    table = aggregation.tidy_table(write_cells(tmp_path, VALUES))
    assert len(table) == 4 * 3 * 2
    row = table[(table.train == "0") & (table.test_bin == 2) & (table.metric == "acc")].iloc[0]
    assert (row.value, row.base_value, row.change_vs_base) == (0.2, 0.3, pytest.approx(-0.1))
    assert table["train"].tolist()[:3] == ["base"] * 3


def test_heatmap_matrices(tmp_path):
    table = aggregation.tidy_table(write_cells(tmp_path, VALUES))
    accuracy, change = plots.matrices(table, "acc", "none")
    assert accuracy.index.tolist() == ["base", "0", "1", "2"]
    np.testing.assert_allclose(accuracy.to_numpy(), np.array(list(VALUES.values())))
    np.testing.assert_allclose(change.to_numpy(), np.array(list(VALUES.values()))[1:] - VALUES["base"])
    with pytest.raises(ValueError, match="acc,none"):
        plots.matrices(table, "exact_match", "none")
    plots.draw(table, "m", "d", "acc,none", tmp_path / "a.png", tmp_path / "c.png", dpi=60)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_corrupt_cell_is_named(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"model": "m"')
    with pytest.raises(ValueError, match="broken.json"):
        aggregation.tidy_table([bad])
