"""grid_status on a synthetic results folder: every state counted where it should be, for the paper grid."""

import base64
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.support import synthetic_cells
from tests.support.workflow import REPO, demo_config
from workflow_scripts.tools import grid_status


def mark_incomplete(workdir, relative_path):
    """What Snakemake writes when a job starts: a marker named by the base64 of its output path."""
    folder = workdir / ".snakemake" / "incomplete"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / base64.urlsafe_b64encode(relative_path.encode()).decode()).write_text("{}")


def setup_grid(workdir):
    """The paper config; two (model, dataset) pairs touched in known ways, the rest pending."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["results_dir"] = "results/paper"
    results = workdir / "results/paper"
    models, datasets = list(config["models"]), list(config["datasets"])
    model, dataset = models[0], datasets[0]
    # First pair: every cell done, except 3 failed (the row's score log, no cell), 2 running, 1 left
    # incomplete.
    synthetic_cells.write_grid(results, [model], [dataset], 10, 5)
    removed = [("base", 0), ("3", 4), ("9", 9), ("1", 1), ("2", 2)]
    for train, test_bin in removed:
        cell = results / "cells" / model / dataset / f"train-{train}" / f"test-{test_bin}.json"
        cell.unlink()
        raw = results / "raw" / model / dataset / f"train-{train}" / f"test-{test_bin}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text("{}")
        log = results / "logs/score" / model / dataset / f"train-{train}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("Traceback ...")
    for train, test_bin in (("1", 1), ("2", 2)):
        mark_incomplete(workdir, f"results/paper/cells/{model}/{dataset}/train-{train}/test-{test_bin}.json")
    for b in range(4):
        (results / "models" / model / dataset / f"train-{b}" / "hf").mkdir(parents=True)
    # Second pair: one done cell.
    path = results / "cells" / models[1] / datasets[1] / "train-base/test-0.json"
    synthetic_cells.write_cell(path, models[1], datasets[1], "base", 0, np.ones(3), ["a", "b", "c"])
    return config, models, datasets


def test_counts_per_pair_with_and_without_a_live_run(tmp_path):
    config, models, datasets = setup_grid(tmp_path)
    rows = {(r["model"], r["dataset"]): r for r in grid_status.grid_status(config, tmp_path)}
    assert len(rows) == 7 * 8 and sum(r["cells"] for r in rows.values()) == 6160
    first = rows[models[0], datasets[0]]
    # No run holds the results folder: incomplete markers are interrupted jobs, hence failed.
    assert {k: first[k] for k in grid_status.STATES} == {"done": 105, "running": 0, "failed": 5, "pending": 0}
    assert first["trained"] == 4
    assert sorted(first["failed_logs"])[0].endswith(f"score/{models[0]}/{datasets[0]}/train-1.log")
    second = rows[models[1], datasets[1]]
    assert (second["done"], second["pending"], second["failed"]) == (1, 109, 0)
    touched = {(models[0], datasets[0]), (models[1], datasets[1])}
    assert all(r["pending"] == 110 for key, r in rows.items() if key not in touched)

    # A live run (this process holds the lock): the marked cells are running.
    (tmp_path / "results/paper/.run.lock").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    rows = {(r["model"], r["dataset"]): r for r in grid_status.grid_status(config, tmp_path)}
    first = rows[models[0], datasets[0]]
    assert {k: first[k] for k in grid_status.STATES} == {"done": 105, "running": 2, "failed": 3, "pending": 0}


def test_command_line_prints_the_table(tmp_path):
    config, models, datasets = setup_grid(tmp_path)
    configfile = tmp_path / "paper.yaml"
    configfile.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow_scripts.tools.grid_status",
            "--configfile",
            str(configfile),
            "--directory",
            str(tmp_path),
            "--list-failed",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "dataset", "cells", "done", "running", "failed", "pending", "trained"]
    first = next(line.split() for line in lines if line.startswith(models[0] + " ") and f" {datasets[0]} " in line)
    assert first[2:] == ["110", "105", "0", "5", "0", "4/10"]
    total = next(line.split() for line in lines if line.startswith("total"))
    assert total[1:] == ["6160", "106", "0", "5", str(6160 - 111), "4/560"]
    assert sum(line.startswith("failed: ") for line in lines) == 5


def small_config(**switches) -> dict:
    """The demo's shape (one model, one dataset, 3 bins) with the switches beyond the study set."""
    config = demo_config(results_dir="results/small", **switches)
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    from snakemake.utils import validate

    validate(config, str(REPO / "config/schema.yaml"))
    return config


# Rows per switch, spelled out (not derived from layout.py, which grid_status itself uses).
SWITCH_ROWS = {
    "study": ({}, ["base", "0", "1", "2"]),
    "heldout": ({"eval_split": "heldout"}, ["base-heldout", "0-heldout", "1-heldout", "2-heldout"]),
    "seeds": ({"seeds": [42, 43]}, ["base", "0", "1", "2", "0-seed43", "1-seed43", "2-seed43"]),
    "in_context": ({"in_context": {"k": 2}}, ["base", "0", "1", "2", "icl2-bin0", "icl2-bin1", "icl2-bin2"]),
    "all three": (
        {"eval_split": "heldout", "seeds": [42, 43], "in_context": {"k": 2}},
        [
            "base-heldout",
            *(f"{b}-heldout{s}" for s in ("", "-seed43") for b in "012"),
            *(f"icl2-bin{b}-heldout{s}" for s in ("", "-seed43") for b in "012"),
        ],
    ),
}


@pytest.mark.parametrize("case", list(SWITCH_ROWS))
def test_every_planned_row_counts_with_each_switch(tmp_path, case):
    """Held-out, seed and in-context cells are counted as the workflow names them: a finished grid is
    done, not pending forever; a row of the study's plain names is no cell of a held-out grid."""
    switches, rows = SWITCH_ROWS[case]
    config = small_config(**switches)
    results = tmp_path / "results/small"
    for row in rows:
        for test_bin in range(3):
            path = results / "cells/tiny-qwen2/arc" / f"train-{row}" / f"test-{test_bin}.json"
            synthetic_cells.write_cell(path, "tiny-qwen2", "arc", row, test_bin, np.ones(2), ["a", "b"])
    trained = [row for row in rows if not row.startswith(("base", "icl"))]
    for row in trained[:2]:
        (results / "models/tiny-qwen2/arc" / f"train-{row}" / "hf").mkdir(parents=True)
    if case != "study":  # a stray study cell: not part of this grid, so counted nowhere
        synthetic_cells.write_cell(
            results / "cells/tiny-qwen2/arc/train-7/test-0.json", "tiny-qwen2", "arc", "7", 0, np.ones(2), ["a", "b"]
        )
    (row,) = grid_status.grid_status(config, tmp_path)
    assert (row["cells"], row["done"], row["pending"], row["failed"]) == (3 * len(rows), 3 * len(rows), 0, 0)
    assert (row["trained"], row["bins"]) == (2, len(trained))
    # One cell gone and its row's generate log left (no raw file): failed, named by its tagged path.
    gone = results / "cells/tiny-qwen2/arc" / f"train-{rows[-1]}" / "test-2.json"
    gone.unlink()
    log = results / "logs/generate/tiny-qwen2/arc" / f"train-{rows[-1]}.log"
    log.parent.mkdir(parents=True)
    log.write_text("Traceback ...")
    (row,) = grid_status.grid_status(config, tmp_path)
    assert (row["done"], row["failed"]) == (3 * len(rows) - 1, 1)
    assert row["failed_logs"] == [os.path.join("results/small/logs/generate/tiny-qwen2/arc", f"train-{rows[-1]}.log")]


def test_config_with_a_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text((REPO / "config/demo.yaml").read_text() + "n_bins: 4\n")
    result = subprocess.run(
        [sys.executable, "-m", "workflow_scripts.tools.grid_status", "--configfile", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "key 'n_bins' is given twice" in result.stderr
