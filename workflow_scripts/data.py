"""Download (or read) one dataset and write it as a normalized parquet table.

Hub datasets and local files go through the same call, ``datasets.load_dataset``: a hub source names
the repository and config (``HF_TOKEN`` and ``HF_HOME`` are honoured by the hub client), a local source
names a parquet or jsonl file with the same columns. Normalizing adds ``item_id``, a string id unique
within the dataset, used to join per-question results later.
"""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd

from workflow_scripts.io_utils import atomic_write_parquet

# Columns the study's configs use as ids, in order of preference; rows without one get their row number.
ID_COLUMNS = ("id", "doc_id", "key")
LOCAL_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def load_source(source: dict) -> pd.DataFrame:
    import datasets

    split = source.get("split", "train")
    if "path" in source:
        path = source["path"]
        extension = os.path.splitext(path)[1]
        if extension not in LOCAL_BUILDERS:
            raise ValueError(f"source.path {path!r}: use a .parquet, .jsonl or .json file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"source.path {path!r} does not exist")
        dataset = datasets.load_dataset(LOCAL_BUILDERS[extension], data_files={split: path}, split=split)
    else:
        dataset = datasets.load_dataset(
            source["hub"], source.get("name"), split=split, token=os.environ.get("HF_TOKEN") or None
        )
    return dataset.to_pandas()


def normalize(table: pd.DataFrame) -> pd.DataFrame:
    table = table.reset_index(drop=True)
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    ids = table[id_column].astype(str) if id_column else pd.Series(range(len(table))).astype(str)
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"column {id_column!r} has duplicate item ids, e.g. {duplicated[:3]}; ids must be unique")
    return table.assign(item_id=ids.values)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="JSON: {hub, name, split} or {path, split}")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    table = normalize(load_source(json.loads(args.source)))
    atomic_write_parquet(table, args.out)
    print(f"wrote {len(table)} rows, columns {list(table.columns)} to {args.out}")


if __name__ == "__main__":
    main()
