"""Split every difficulty bin once into a training part and a held-out part (eval_split: heldout).

The study tests each model on its own training items too, so its diagonal cell is contaminated.
Here a bin's items are ordered by a keyed hash of their item id (SHA-256 of "<seed>:<item id>", never
Python's per-process salted hash()), and the first round(fraction x size) of them are held out, at least
one and never the whole bin. The order depends only on the ids and the seed, so the split is the same
on every run and machine. Training uses `train-<k>.parquet`; every evaluation cell, the base model's
included, uses `heldout-<k>.parquet`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from workflow_scripts.lib import layout
from workflow_scripts.lib.heldout import hash_key, heldout_count, too_few_rows
from workflow_scripts.lib.io_utils import (
    atomic_write_json,
    atomic_write_parquet,
    one_line_errors,
    read_json,
    read_parquet,
    remake_folder,
)


def split_bin(table: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training part, held-out part), each in the bin's own row order."""
    keys = table["item_id"].map(lambda item_id: hash_key(item_id, seed, "heldout"))
    heldout_ids = set(table["item_id"][keys.sort_values(kind="stable").index[: heldout_count(len(table), fraction)]])
    is_heldout = table["item_id"].isin(heldout_ids)
    return table[~is_heldout].reset_index(drop=True), table[is_heldout].reset_index(drop=True)


def read_bins(bins_dir: Path) -> list[pd.DataFrame]:
    """Every bin the bin step wrote, in order, as its manifest counts them."""
    manifest_path = bins_dir / "manifest.json"
    fix = remake_folder(manifest_path)
    n_bins = read_json(manifest_path, "bins manifest", fix).get("n_bins")
    if type(n_bins) is not int or n_bins < 1:  # bool is an int, but no count
        raise ValueError(f"bins manifest {manifest_path} has n_bins = {n_bins!r}, not a bin count; {fix}")
    return [read_parquet(bins_dir / layout.bin_file_name(k), "bin file", fix, ["item_id"]) for k in range(n_bins)]


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bins-dir", required=True, help="bin-<k>.parquet and manifest.json from the bin step")
    parser.add_argument("--fraction", type=float, required=True, help="share of each bin held out")
    parser.add_argument("--seed", type=int, required=True, help="keys the hash that orders the items")
    parser.add_argument("--out-dir", required=True, help="train-<k>.parquet, heldout-<k>.parquet, manifest.json")
    parser.add_argument("--min-train-rows", type=int, default=1, help="each training part trains a model")
    args = parser.parse_args(argv)

    bins_dir, out = Path(args.bins_dir), Path(args.out_dir)
    tables = read_bins(bins_dir)
    parts = {}
    for k, table in enumerate(tables):
        try:
            parts[k] = split_bin(table, args.fraction, args.seed)
        except ValueError as error:
            raise ValueError(f"bin {k}: {error}; fix: lower n_bins, add data, or set eval_split: all") from None
    problem = too_few_rows({k: len(train) for k, (train, _) in parts.items()}, args.min_train_rows)
    if problem:
        raise ValueError(
            f"{problem} after holding out {args.fraction:g} of each bin; fix: lower heldout_fraction or n_bins, "
            "add data, or lower min_train_rows"
        )
    # Written once every bin is read and split: a broken bin leaves no half-made split behind.
    manifest = {"fraction": args.fraction, "seed": args.seed, "bins": {}}
    for k, (train, heldout) in parts.items():
        atomic_write_parquet(train, out / layout.heldout_part_name("train", k))
        atomic_write_parquet(heldout, out / layout.heldout_part_name("heldout", k))
        manifest["bins"][str(k)] = {
            "train": len(train),
            "heldout": len(heldout),
            "heldout_ids": sorted(map(str, heldout["item_id"])),
        }
    atomic_write_json(manifest, out / "manifest.json")
    print(json.dumps({k: {"train": v["train"], "heldout": v["heldout"]} for k, v in manifest["bins"].items()}))


if __name__ == "__main__":
    main()
