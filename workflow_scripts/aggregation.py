"""Cell files -> one tidy table: a row per (model, dataset, train, test bin, metric, filter).

``train`` is a bin number or ``base`` (the zero-shot model). Each trained row carries the base model's
value on the same test bin and the change against it, the quantity the study reports.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from workflow_scripts.io_utils import atomic_write_parquet, atomic_write_text, one_line_errors

COLUMNS = ["model", "dataset", "train", "test_bin", "task", "metric", "filter", "value", "n"]


def read_cell(path) -> list[dict]:
    try:
        cell = json.loads(Path(path).read_text())
        return [
            {
                "model": cell["model"], "dataset": cell["dataset"], "train": str(cell["train"]),
                "test_bin": int(cell["test_bin"]), "task": cell["task"],
                "metric": key.split(",", 1)[0], "filter": key.split(",", 1)[1],
                "value": float(value), "n": int(cell["n"]),
            }  # fmt: skip
            for key, value in sorted(cell["metrics"].items())
        ]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as error:
        raise ValueError(f"cell file {path} is unreadable or incomplete ({error}); delete it to re-run that cell")


def tidy_table(cell_files) -> pd.DataFrame:
    table = pd.DataFrame([row for path in cell_files for row in read_cell(path)], columns=COLUMNS)
    keys = ["model", "dataset", "test_bin", "task", "metric", "filter"]
    base = table[table["train"] == "base"][keys + ["value"]].rename(columns={"value": "base_value"})
    table = table.merge(base, on=keys, how="left")
    table["change_vs_base"] = table["value"] - table["base_value"]
    # Base rows first, then train bins in numeric order.
    order = table["train"].map(lambda t: -1 if t == "base" else int(t))
    return table.assign(_order=order).sort_values(
        ["model", "dataset", "metric", "filter", "_order", "test_bin"]
    ).drop(columns="_order").reset_index(drop=True)


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", nargs="*", default=[], help="cell json files (per-pair tables)")
    parser.add_argument("--tables", nargs="*", default=[], help="per-pair csv tables to concatenate")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--parquet")
    args = parser.parse_args(argv)
    if args.cells:
        table = tidy_table(args.cells)
    else:
        table = pd.concat([pd.read_csv(path, dtype={"train": str}) for path in args.tables], ignore_index=True)
    atomic_write_text(table.to_csv(index=False), args.csv)
    if args.parquet:
        atomic_write_parquet(table, args.parquet)
    print(f"{len(table)} rows -> {args.csv}")


if __name__ == "__main__":
    main()
