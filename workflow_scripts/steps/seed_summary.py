"""Across-seed summary: mean and spread of each cell over its seeds, from a tidy table.

The study reports single runs. With `seeds: [42, 43, ...]` every trained (and in-context) cell exists once
per seed; this collapses a tidy table (a row per cell, metric and seed, with a `seed` column) to a row
per cell and metric. The spread over seeds (training noise) belongs beside the bootstrap interval over
questions (test-set noise): they answer different questions and neither replaces the other.

`across_seeds` and `seed_table` are pure functions; `python -m workflow_scripts.steps.seed_summary` writes the
seeds table (tables/seeds.csv + .parquet) from the tidy table of every cell (tables/cells.parquet).
"""

from __future__ import annotations

import argparse

import pandas as pd

# The labels that name a cell apart from its seed (what a cell file carries, see cell_names.labels).
CELL_KEYS = (
    "model",
    "dataset",
    "eval_split",
    "row_label",
    "train_kind",
    "train_bin",
    "in_context_k",
    "test_bin",
    "task",
    "metric",
    "filter",
)
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
        rows.append(
            {
                **dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                "n_seeds": len(group),
                "seeds": ",".join(map(str, seeds)),
                "mean": values.mean(),
                "std": values.std(ddof=1),
                "min": values.min(),
                "max": values.max(),
                "range": values.max() - values.min(),
            }
        )
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])


# Carried over from the tidy table unchanged: the same for every seed of a cell.
_PER_CELL = ("headline", "n", "base_value")


def seed_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per cell and metric of a tidy table (aggregation.tidy_table): the mean and spread of its value
    over seeds, the mean and spread of its change vs the base model, and beside them the bootstrap
    interval over questions of each.

    The question interval is the average of the per-seed interval bounds. Every seed of a cell answers
    the same questions, so the per-seed bootstrap estimates move together across resamples; for
    estimates that move in lock-step the average of the bounds is exactly the interval of the seed
    mean (quantiles of co-monotone variables add), and with looser coupling it is wider, so it errs on
    the cautious side. Unlike a pooled re-resampling it needs only the tidy table, so this table is a
    cheap job on tables/cells.parquet, and with one seed it is that seed's interval, unchanged.
    `significant`: the averaged change interval excludes 0, as in the tidy table."""
    from workflow_scripts.lib.cell_table import typed

    keys = [key for key in CELL_KEYS if key in tidy.columns]
    value = across_seeds(tidy, "value", keys)
    change = across_seeds(tidy, "change_vs_base", keys)[keys + ["mean", "std", "min", "max"]].rename(
        columns={"mean": "change_mean", "std": "change_std", "min": "change_min", "max": "change_max"}
    )
    bounds = ["ci_low", "ci_high", "change_ci_low", "change_ci_high"]
    per_cell = (
        tidy.groupby(keys, dropna=False, sort=True)
        .agg(**{c: (c, "first") for c in _PER_CELL if c in tidy.columns}, **{c: (c, "mean") for c in bounds})
        .reset_index()
    )
    # Label columns that are empty throughout come out of groupby as objects: one dtype before merging.
    value, change, per_cell = (typed(part) for part in (value, change, per_cell))
    table = value.merge(change, on=keys, how="left").merge(per_cell, on=keys, how="left")
    table["significant"] = (table["change_ci_low"] > 0) | (table["change_ci_high"] < 0)
    columns = [
        *keys,
        *(c for c in _PER_CELL if c in table.columns),
        *SUMMARY_COLUMNS,
        "ci_low",
        "ci_high",
        "change_mean",
        "change_std",
        "change_min",
        "change_max",
        "change_ci_low",
        "change_ci_high",
        "significant",
    ]
    return _sorted(table[columns])


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    from workflow_scripts.lib.cell_table import row_orders, typed

    order = row_orders(table)
    sort_keys = [k for k in ("model", "dataset", "eval_split", "metric", "filter") if k in table.columns]
    return (
        typed(table)
        .assign(_order=order)
        .sort_values([*sort_keys, "_order", "test_bin"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def main(argv=None) -> None:
    from workflow_scripts.lib.cell_table import read_table
    from workflow_scripts.lib.io_utils import atomic_write_parquet, atomic_write_text, one_line_errors

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", required=True, help="the tidy table of every cell (csv or parquet)")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--parquet", required=True)
    args = parser.parse_args(argv)

    @one_line_errors
    def run():
        table = seed_table(read_table(args.table))
        atomic_write_text(table.to_csv(index=False), args.csv)
        atomic_write_parquet(table, args.parquet)
        seeds = sorted(set(table["n_seeds"])) or [0]
        print(f"{len(table)} cells x metrics -> {args.csv} (seeds per cell: {seeds[0]} to {seeds[-1]})")

    run()


if __name__ == "__main__":
    main()
