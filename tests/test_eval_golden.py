"""The workflow's cells equal those of the per-cell evaluation it replaced (issue 16), exactly.

tests/data/eval_golden.json was recorded with the per-cell `evaluate` rule (tests/eval_golden.py says
how and which cells: every dataset's task on the sample data with the tiny model, HF backend, and the
held-out, seeds and in-context switches). Here the same configs run through today's generate + score
rules, and every metric, stderr, sub-task score, question count and label must be the same.
"""

from __future__ import annotations

import json

import eval_golden
from conftest import job_counts, snakemake


def test_generated_then_scored_cells_equal_the_per_cell_golden_set(tmp_path):
    golden = json.loads(eval_golden.GOLDEN.read_text())
    workdirs = {}
    golden.pop("demo")  # test_the_demo_cells_equal_the_per_cell_golden_set
    for name, config in eval_golden.write_configs(tmp_path).items():
        workdirs[name] = tmp_path / name
        workdirs[name].mkdir()
        targets = eval_golden.targets()[name]
        plan = snakemake("-n", *targets, "--configfile", str(config), workdir=workdirs[name]).stdout
        rows = len(targets) // 3
        assert job_counts(plan)["generate"] == job_counts(plan)["score"] == rows and "evaluate" not in job_counts(plan)
        snakemake("--configfile", str(config), "--cores", "2", *targets, workdir=workdirs[name])
    now = eval_golden.collect(workdirs)
    assert now.keys() == golden.keys()
    for name in golden:
        assert now[name].keys() == golden[name].keys()
        for cell, expected in golden[name].items():
            assert now[name][cell] == expected, (name, cell)
    # The golden set is not vacuous: every dataset answered, metrics that are not all zero.
    plain = golden["plain"].values()
    assert {cell["task"] for cell in plain} == {f"cross_difficulty_{d}" for d in eval_golden.DATASETS}
    assert all(cell["n"] > 0 and cell["metrics"] for cell in plain)
    assert any(value > 0 for cell in plain for value in cell["metrics"].values())
    switches = golden["switches"].values()
    assert {(cell["eval_split"], cell["seed"], cell["in_context_k"]) for cell in switches} >= {
        ("heldout", 42, 1),
        ("heldout", 7, 1),
    }


def test_the_demo_cells_equal_the_per_cell_golden_set(demo_run):
    """Every cell of the demo, trained rows included, as the per-cell rule wrote it."""
    golden = json.loads(eval_golden.GOLDEN.read_text())["demo"]
    now = eval_golden.collect({"demo": demo_run})["demo"]
    assert len(golden) == 24 and now.keys() == golden.keys()
    for cell, expected in golden.items():
        assert now[cell] == expected, cell
    assert {cell["train_kind"] for cell in golden.values()} == {"base", "bin"}
