"""The workflow's cells equal the golden set (tests/data/eval_golden.json), question by question: the
generate and score jobs of every dataset's task and of the switches, and every cell of the demo
(tests/support/eval_golden.py says how; tests/unit/test_eval_golden.py why log-likelihoods have a tolerance)."""

from __future__ import annotations

import json

from tests.support import eval_golden
from tests.support.workflow import job_counts, snakemake


def test_generated_then_scored_cells_equal_the_golden_set(tmp_path):
    golden = json.loads(eval_golden.GOLDEN.read_text(encoding="utf-8"))
    workdirs = {}
    golden.pop("demo")  # test_the_demo_cells_equal_the_golden_set
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
    assert eval_golden.differences(golden, now) == []
    # The golden set is not vacuous: every dataset answered, metrics that are not all zero, questions with
    # log-likelihoods and questions with generated text.
    plain = golden["plain"].values()
    assert {cell["task"] for cell in plain} == {f"cross_difficulty_{d}" for d in eval_golden.DATASETS}
    assert all(cell["n"] > 0 and cell["metrics"] and len(cell["questions"]) == cell["n"] for cell in plain)
    assert any(value > 0 for cell in plain for value in cell["metrics"].values())
    questions = [question for cell in plain for question in cell["questions"]]
    assert any("loglikelihoods,none" in question for question in questions)
    assert any("generated" in question for question in questions)
    switches = golden["switches"].values()
    assert {(cell["eval_split"], cell["seed"], cell["in_context_k"]) for cell in switches} >= {
        ("heldout", 42, 1),
        ("heldout", 7, 1),
    }


def test_the_demo_cells_equal_the_golden_set(demo_run):
    """Every cell of the demo, trained rows included."""
    golden = {"demo": json.loads(eval_golden.GOLDEN.read_text(encoding="utf-8"))["demo"]}
    now = eval_golden.collect({"demo": demo_run})
    assert len(golden["demo"]) == 24 and now["demo"].keys() == golden["demo"].keys()
    assert eval_golden.differences(golden, now) == []
    assert {cell["train_kind"] for cell in golden["demo"].values()} == {"base", "bin"}
    trained_arc = [cell for name, cell in golden["demo"].items() if "/arc/" in name and cell["train_kind"] == "bin"]
    assert len(trained_arc) == 9 and all(
        "loglikelihoods,none" in question for cell in trained_arc for question in cell["questions"]
    )
