"""The cell table the aggregate step writes and the figures and seed summary read: its label columns'
types, its row order, and reading it back."""

from __future__ import annotations

import pandas as pd

from workflow_scripts.lib.io_utils import read_csv, read_parquet

NULLABLE_INTEGERS = ["train_bin", "in_context_k", "seed"]


def typed(table: pd.DataFrame) -> pd.DataFrame:
    """Label columns as pandas' nullable integers: empty (not NaN floats) where they do not apply."""
    return table.astype({column: "Int64" for column in NULLABLE_INTEGERS if column in table.columns})


def row_order(train_kind: str, train_bin, in_context_k) -> tuple[int, int, int]:
    """Base first, then train bins in numeric order, then in-context rows (by k, then source bin)."""
    if train_kind == "base":
        return (0, 0, 0)
    if train_kind == "bin":
        return (1, int(train_bin), 0)
    return (2, int(in_context_k), int(train_bin))


def row_orders(table: pd.DataFrame) -> pd.Series:
    """row_order of each row of a table, from its train_kind, train_bin and in_context_k columns."""
    columns = zip(table["train_kind"], table["train_bin"], table["in_context_k"])
    return pd.Series([row_order(*labels) for labels in columns], index=table.index, dtype=object)


# What every reader of a table uses (tables made before the label columns lack those); `headline` marks
# the rows of the dataset's headline metric, which the figures draw.
TABLE_COLUMNS = ["model", "dataset", "row_label", "test_bin", "metric", "filter", "headline", "value"]


def read_table(path) -> pd.DataFrame:
    """A table written by the aggregate step (steps/aggregation.py) (csv or parquet), with `row_label` kept as text ('base', '0', ...)."""
    if str(path).endswith(".parquet"):
        return read_parquet(path, "table", columns=TABLE_COLUMNS)
    integers = {column: "Int64" for column in NULLABLE_INTEGERS}
    types = {"row_label": str, "filter": str, "metric": str, "eval_split": str, **integers}
    return read_csv(path, "table", columns=TABLE_COLUMNS, dtype=types)
