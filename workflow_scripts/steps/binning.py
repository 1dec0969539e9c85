"""Split a normalized dataset into equal-width difficulty bins of its quantile column.

Bin k holds rows with k/n <= q < (k+1)/n; q == 1.0 goes to the last bin. Bin 0 is the easiest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from workflow_scripts.lib import layout
from workflow_scripts.lib.bins import assign_bins, bin_edges
from workflow_scripts.lib.heldout import too_few_rows
from workflow_scripts.lib.io_utils import atomic_write_json, atomic_write_parquet, one_line_errors, read_parquet


def split_into_bins(table: pd.DataFrame, n_bins: int, quantile_key: str) -> list[pd.DataFrame]:
    if quantile_key not in table.columns:
        raise ValueError(
            f"quantile column {quantile_key!r} not in the data (columns: {sorted(table.columns)}); "
            "set quantile_key in the config to one of them"
        )
    ids = table["item_id"] if "item_id" in table.columns else None
    bins = assign_bins(table[quantile_key], n_bins, ids)
    parts = [table[bins == k].reset_index(drop=True) for k in range(n_bins)]
    empty = [k for k, part in enumerate(parts) if part.empty]
    if empty:
        raise ValueError(f"difficulty bins {empty} of {n_bins} are empty; lower n_bins or add data")
    return parts


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="normalized parquet from the download step")
    parser.add_argument("--n-bins", type=int, required=True)
    parser.add_argument("--quantile-key", required=True)
    parser.add_argument("--out-dir", required=True, help="bin-<k>.parquet and manifest.json go here")
    parser.add_argument("--min-rows", type=int, default=1, help="each bin trains a model: its fewest rows")
    args = parser.parse_args(argv)

    table = read_parquet(args.data, "dataset table")
    parts = split_into_bins(table, args.n_bins, args.quantile_key)
    problem = too_few_rows({k: len(part) for k, part in enumerate(parts)}, args.min_rows)
    if problem:
        raise ValueError(f"{problem}; fix: lower n_bins, add data, or lower min_train_rows")
    out = Path(args.out_dir)
    for k, part in enumerate(parts):
        atomic_write_parquet(part, out / layout.bin_file_name(k))
    manifest = {
        "n_bins": args.n_bins,
        "quantile_key": args.quantile_key,
        "edges": bin_edges(args.n_bins).tolist(),
        "counts": {str(k): len(part) for k, part in enumerate(parts)},
        "n_items": len(table),
    }
    atomic_write_json(manifest, out / "manifest.json")
    print(json.dumps(manifest))


if __name__ == "__main__":
    main()
