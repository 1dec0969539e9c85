"""Aggregate a synthetic paper-size grid and print how long it takes.

7 models x 8 datasets x 11 rows (base + 10 train bins) x 10 test bins = 6,160 cells, 100 questions per
test bin (1,000 per dataset), 1,000 bootstrap resamples: the real code path of the `aggregate` rule (one
table per (model, dataset), read from cell files on disk) and of `cell_table` (all of them in one).
Goal: <= 10 s on the 2-core development machine.

    python benchmarks/aggregate_grid.py [--resamples 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflow_scripts.steps import aggregation  # noqa: E402  (first: it sets BLAS threads)
from tests.support import synthetic_cells  # noqa: E402
from workflow_scripts.lib import config_files  # noqa: E402

import pandas as pd  # noqa: E402

MODELS = [f"model-{k}" for k in range(7)]
DATASETS = ["arc", "bbh", "gpqa_extended", "gsm8k", "mmlu_pro", "musr", "math", "ifeval"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resamples", type=int, help="default: the schema's statistics.bootstrap_resamples")
    parser.add_argument("--questions-per-bin", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        paths = synthetic_cells.write_grid(Path(folder), MODELS, DATASETS, 10, args.questions_per_bin)
        print(f"wrote {len(paths)} cells in {time.perf_counter() - started:.1f} s (not timed below)")

        started = time.perf_counter()
        study = config_files.schema_defaults("statistics")
        bootstrap = aggregation.Bootstrap.from_statistics(
            study, resamples=args.resamples or study["bootstrap_resamples"]
        )
        tables = []
        for model in MODELS:
            for dataset in DATASETS:
                cells = sorted((Path(folder) / "cells" / model / dataset).glob("train-*/test-*.json"))
                tables.append(aggregation.tidy_table(cells, bootstrap, {dataset: "acc,none"}))
        pairs_done = time.perf_counter()
        table = pd.concat(tables, ignore_index=True)
        table.to_parquet(Path(folder) / "cells.parquet", index=False)
        elapsed = time.perf_counter() - started

    assert len(table) == len(paths) * 2 and table["ci_low"].notna().all()
    print(
        f"aggregated {len(paths)} cells ({len(table)} rows, {args.resamples} resamples): "
        f"per-pair tables {pairs_done - started:.2f} s, total {elapsed:.2f} s (goal <= 10 s)"
    )


if __name__ == "__main__":
    main()
