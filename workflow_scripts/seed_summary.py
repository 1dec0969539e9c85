"""Across-seed summary: mean and spread of each cell over its seeds, from a tidy table.

The study reports single runs. With `seeds: [42, 43, ...]` every trained (and in-context) cell exists once
per seed; this collapses a tidy table (a row per cell, metric and seed, with a `seed` column) to a row
per cell and metric. The spread over seeds (training noise) belongs beside the bootstrap interval over
questions (test-set noise): they answer different questions and neither replaces the other.

Pure functions, no files: the results tables call them.
"""

from __future__ import annotations

import pandas as pd

# The labels that name a cell apart from its seed (what a cell file carries, see cell_names.labels).
CELL_KEYS = ("model", "dataset", "eval_split", "train", "train_kind", "train_bin", "in_context_k", "test_bin",
             "task", "metric", "filter")  # fmt: skip
SUMMARY_COLUMNS = ("n_seeds", "seeds", "mean", "std", "min", "max", "range")


def across_seeds(table: pd.DataFrame, value: str = "value", keys=None) -> pd.DataFrame:
    """One row per cell: `keys` (default: the CELL_KEYS present in `table`), then n_seeds, the seeds
    (sorted, comma-separated), the mean, the sample standard deviation (ddof=1; NaN with one seed),
    min, max and range (max - min) of `value` over the seeds.

    Rows without a seed (the base model: nothing about it is random) are cells of one run. A cell
    listed twice for the same seed is an error, not something to average away."""
    if "seed" not in table.columns:
        raise ValueError(f"the table has no `seed` column (columns: {sorted(table.columns)})")
    if value not in table.columns:
        raise ValueError(f"the table has no {value!r} column (columns: {sorted(table.columns)})")
    keys = [key for key in CELL_KEYS if key in table.columns] if keys is None else list(keys)
    duplicated = table.duplicated(subset=[*keys, "seed"], keep=False)
    if duplicated.any():
        example = table.loc[duplicated, [*keys, "seed"]].iloc[0].to_dict()
        raise ValueError(f"{int(duplicated.sum())} rows repeat a cell for the same seed, e.g. {example}")
    # dropna=False: the base model's train_bin, in_context_k and seed are empty and must still group.
    groups = table.groupby(keys, dropna=False, sort=True)[[value, "seed"]]
    rows = []
    for key, group in groups:
        values = group[value].astype(float)
        seeds = sorted(int(s) for s in group["seed"].dropna())
        rows.append({
            **dict(zip(keys, key if isinstance(key, tuple) else (key,))),
            "n_seeds": len(group),
            "seeds": ",".join(map(str, seeds)),
            "mean": values.mean(),
            "std": values.std(ddof=1),
            "min": values.min(),
            "max": values.max(),
            "range": values.max() - values.min(),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])
