"""How far a grid has got: per (model, dataset), how many cells are done, running, failed, pending.

    python -m workflow_scripts.tools.grid_status --configfile config/config.yaml [--directory DIR] [--list-failed]

Reads only the config and the results folder (no Snakemake DAG), so it answers in well under a second
for the paper's 6,160 cells while a run is going. DIR is Snakemake's working directory (where
`.snakemake/` and `results_dir` are; default: the current directory). A cell is

- done:    its cell json exists and Snakemake has not marked it incomplete;
- running: Snakemake marked it incomplete (`.snakemake/incomplete/`: set when a job starts, cleared
           when it ends) and a run holds the results folder's lock (`results_dir/.run.lock`);
- failed:  marked incomplete with no run holding the lock (the run was killed), or its row's generate
           log exists without its raw file, or its row's score log without the cell json (the job ran and failed: Snakemake deletes a failed job's
           outputs, never its log). A failed cell queued again counts as failed until its job starts;
- pending: none of these (not started yet).

The cells are those the config plans (workflow_scripts/lib/layout.py): the base row, each trained row per
seed, and the in-context rows, under the eval_split's tags. `trained` counts the converted models
(`models/{model}/{dataset}/train-{row}/hf`) of each pair's trained rows.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

from workflow_scripts.lib import cell_names, config_files, layout


STATES = ("done", "running", "failed", "pending")


def incomplete_outputs(workdir: Path) -> set[str]:
    """Outputs Snakemake has marked incomplete, as paths relative to its working directory.

    Snakemake's file persistence stores one marker per output under `.snakemake/incomplete/`, named by
    the url-safe base64 of the path (split into '@'-prefixed parts when longer than a file name)."""
    root = workdir / ".snakemake" / "incomplete"
    found = set()
    for folder, _, files in os.walk(root):
        for name in files:
            parts = (Path(folder) / name).relative_to(root).parts
            encoded = "".join(part.removeprefix("@") for part in parts)
            try:
                found.add(os.path.normpath(base64.urlsafe_b64decode(encoded).decode()))
            except (ValueError, UnicodeDecodeError):
                continue  # Snakemake's own bookkeeping files (e.g. migration_underway)
    return found


def run_is_live(results_dir: Path) -> bool:
    """Whether a Snakemake run holds the results folder's lock (taken in rules/common/lock.smk)."""
    return layout.lock_is_live(results_dir)


def files_under(folder: Path, root: Path) -> set[str]:
    """Every file below folder, relative to root: one walk instead of 6,160 stat calls."""
    return {
        os.path.normpath(os.path.relpath(os.path.join(path, name), root))
        for path, _, names in os.walk(folder)
        for name in names
    }


def grid_status(config: dict, workdir: Path) -> list[dict]:
    results = Path(config["results_dir"])
    absolute = results if results.is_absolute() else workdir / results
    cells = files_under(absolute / "cells", workdir)
    logs = files_under(absolute / "logs" / "generate", workdir) | files_under(absolute / "logs" / "score", workdir)
    raw = files_under(absolute / "raw", workdir)
    marked = incomplete_outputs(workdir)
    live = run_is_live(absolute)
    rel = os.path.relpath(absolute, workdir) if not results.is_absolute() else str(results)

    rows = []
    for model in config["models"]:
        for dataset in config["datasets"]:
            bins, names = layout.bins_of(config, dataset), layout.rows_of(config, dataset)
            trained_rows = [name for name in names if cell_names.labels(name)["train_kind"] == "bin"]
            counts = {state: 0 for state in STATES}
            failed = []
            for row in names:
                for test_bin in bins:
                    cell = os.path.normpath(layout.cell(rel, model, dataset, row, test_bin))
                    # A row's jobs (rules/generate.smk, rules/score.smk): its generation writes the raw files, its
                    # scoring the cells; the log of whichever ran without its output is the failed one.
                    raw_file = os.path.normpath(layout.raw_file(rel, model, dataset, row, test_bin))
                    rule = "score" if raw_file in raw else "generate"
                    log = os.path.normpath(layout.row_log(rel, rule, model, dataset, row))
                    if cell in marked or raw_file in marked:
                        state = "running" if live else "failed"
                    elif cell in cells:
                        state = "done"
                    elif log in logs:
                        state = "failed"
                    else:
                        state = "pending"
                    counts[state] += 1
                    if state == "failed" and log not in failed:
                        failed.append(log)
            trained = sum(
                os.path.isdir(layout.trained_model_dir(absolute, model, dataset, row)) for row in trained_rows
            )
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "cells": len(names) * len(bins),
                    **counts,
                    "trained": trained,
                    "bins": len(trained_rows),
                    "failed_logs": failed,
                }
            )
    return rows


def render(rows: list[dict], live: bool) -> str:
    width_model = max([len("model"), *(len(r["model"]) for r in rows)])
    width_dataset = max([len("dataset"), *(len(r["dataset"]) for r in rows)])
    header = (
        f"{'model':<{width_model}}  {'dataset':<{width_dataset}}  {'cells':>6}"
        + "".join(f"  {s:>7}" for s in STATES)
        + f"  {'trained':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['model']:<{width_model}}  {r['dataset']:<{width_dataset}}  {r['cells']:>6}"
            + "".join(f"  {r[s]:>7}" for s in STATES)
            + f"  {str(r['trained']) + '/' + str(r['bins']):>7}"
        )
    totals = {s: sum(r[s] for r in rows) for s in (*STATES, "cells", "trained", "bins")}
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<{width_model}}  {'':<{width_dataset}}  {totals['cells']:>6}"
        + "".join(f"  {totals[s]:>7}" for s in STATES)
        + f"  {str(totals['trained']) + '/' + str(totals['bins']):>7}"
    )
    lines.append("a run holds the results folder" if live else "no run holds the results folder")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", required=True, help="the config the run uses (config/config.yaml)")
    parser.add_argument("--directory", default=".", help="Snakemake's working directory (default: here)")
    parser.add_argument("--list-failed", action="store_true", help="also print the log of every failed cell")
    args = parser.parse_args(argv)
    from snakemake.exceptions import WorkflowError

    try:
        config = config_files.resolved([args.configfile])
    except (OSError, ValueError, KeyError, TypeError, WorkflowError) as error:
        print(f"error: {args.configfile} is not a readable workflow config ({error!r})", file=sys.stderr)
        raise SystemExit(2) from None
    workdir = Path(args.directory)
    rows = grid_status(config, workdir)
    results = Path(config["results_dir"])
    print(render(rows, run_is_live(results if results.is_absolute() else workdir / results)))
    if args.list_failed:
        for row in rows:
            for log in row["failed_logs"]:
                print(f"failed: {log}")


if __name__ == "__main__":
    main()
