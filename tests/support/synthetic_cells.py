"""Cell files of known values, laid out as the evaluate rule writes them (tests and benchmarks only).

Each question of a cell is answered correctly with a chosen probability, so a test knows what the
aggregation must find; the per-question file has the fields evaluation.py writes (item id, target,
responses, one score per 'metric,filter').
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from workflow_scripts.lib import cell_names, layout


def true_accuracy(row: str, test_bin: int, n_bins: int) -> float:
    """A made-up accuracy surface: harder bins score lower; training helps most near its own bin."""
    base = 0.8 - 0.5 * test_bin / max(n_bins - 1, 1)
    labels = cell_names.labels(row)
    if labels["train_kind"] == "base":
        return base
    distance = abs(test_bin - labels["train_bin"])
    return float(np.clip(base + 0.12 - 0.04 * distance, 0.02, 0.98))


def write_cell(
    path: Path,
    model: str,
    dataset: str,
    row: str,
    test_bin: int,
    correct: np.ndarray,
    item_ids: list[str],
    task: str = "synthetic_task",
) -> None:
    """One cell json (acc and acc_norm, lm-eval style keys, the row's labels) and its per-question file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    acc, acc_norm = correct.astype(float), np.roll(correct, 1).astype(float)
    lines = [
        json.dumps(
            {
                "item_id": item,
                "target": "A",
                "raw_response": " A",
                "response,none": [["A", "false"]],
                "acc,none": a,
                "acc_norm,none": b,
            }
        )
        for item, a, b in zip(item_ids, acc, acc_norm)
    ]
    layout.samples(path).write_text("\n".join(lines) + "\n")
    cell = {
        "model": model,
        "dataset": dataset,
        **cell_names.labels(row),
        "test_bin": test_bin,
        "task": task,
        "n": len(item_ids),
        "metrics": {"acc,none": acc.mean(), "acc_norm,none": acc_norm.mean()},
        "stderrs": {},
        "eval_seconds": 0.0,
    }
    path.write_text(json.dumps(cell))


def write_grid(results_dir: Path, models, datasets, n_bins: int, questions_per_bin: int, seed: int = 0) -> list[Path]:
    """Every cell of a grid under results_dir/cells/...; returns the cell paths."""
    rng = np.random.default_rng(seed)
    paths = []
    for model in models:
        for dataset in datasets:
            for row in ["base", *map(str, range(n_bins))]:
                for test_bin in range(n_bins):
                    ids = [f"{dataset}-{test_bin}-{q}" for q in range(questions_per_bin)]
                    correct = rng.random(questions_per_bin) < true_accuracy(row, test_bin, n_bins)
                    path = Path(layout.cell(results_dir, model, dataset, row, test_bin))
                    write_cell(path, model, dataset, row, test_bin, correct, ids)
                    paths.append(path)
    return paths
