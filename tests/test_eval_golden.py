"""The workflow's cells equal the golden set (tests/data/eval_golden.json), question by question.

The golden set began with the per-cell evaluation that generate + score replaced (issue 16): every
metric, stderr, sub-task score, question count and label must be the same (tests/eval_golden.py says
how and which cells: every dataset's task on the sample data with the tiny model, HF backend, and the
held-out, seeds and in-context switches; and every cell of the demo, trained rows included).

Per question (issue 23), everything that is exact on every machine is compared exactly: the chosen
choice, the is-greedy flags, greedy decoding's generated text, every filtered answer and every
per-question score. The log-likelihoods are not: training is deterministic on one machine, but its
floating point differs between CPU types (vector width, summation order in BLAS and torch's kernels),
so a trained model's log-likelihoods differ in their last bits from one CPU to the next. They are
compared within eval_golden.LOGLIKELIHOOD_TOLERANCE, which that module justifies; the fast tests at the
end show that the comparison still reports a changed answer, a moved log-likelihood and a lost question.
"""

from __future__ import annotations

import copy
import json

import pytest

import eval_golden
from conftest import job_counts, snakemake


@pytest.mark.slow
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


# Fast: the comparison itself, on summaries of a made-up multiple-choice cell and a generation cell.


def made_up_golden() -> dict:
    choices = [[-14.021031379699707, False], [-13.874988555908203, False], [-14.000656127929688, True]]
    multiple_choice = {"item_id": "q0", "target": "1", "raw_response": choices[0], "response,none": choices}
    multiple_choice |= {"acc,none": 1.0, "acc_norm,none": 1.0}
    generation = {"item_id": "q1", "target": "5", "raw_response": "It is 5", "response,flexible-extract": ["5"]}
    generation |= {"exact_match,flexible-extract": 1.0}
    cells = {
        "arc": {"task": "arc", "n": 1, "metrics": {"acc,none": 1.0}, "questions": [multiple_choice]},
        "gsm8k": {"task": "gsm8k", "n": 1, "metrics": {"exact_match,none": 1.0}, "questions": [generation]},
    }
    for cell in cells.values():
        cell["questions"] = [eval_golden.question_summary(row) for row in cell["questions"]]
    return {"demo": cells}


def moved(change) -> list[str]:
    """The differences the comparison finds between the made-up golden set and a copy that change edits."""
    golden = made_up_golden()
    now = copy.deepcopy(golden)
    change(now["demo"]["arc"]["questions"][0], now["demo"]["gsm8k"]["questions"][0], now["demo"])
    return eval_golden.differences(golden, now)


def test_a_summary_keeps_the_exact_fields_and_rounds_the_loglikelihoods():
    multiple_choice, generation = (cell["questions"][0] for cell in made_up_golden()["demo"].values())
    assert multiple_choice == {
        "item_id": "q0",
        "target": "1",
        "loglikelihoods,none": [-14.021031, -13.874989, -14.000656],
        "is_greedy,none": [False, False, True],
        "chosen,none": 1,
        "acc,none": 1.0,
        "acc_norm,none": 1.0,
    }
    assert generation == {
        "item_id": "q1",
        "target": "5",
        "generated": "It is 5",
        "response,flexible-extract": ["5"],
        "exact_match,flexible-extract": 1.0,
    }
    golden = made_up_golden()
    assert json.loads(eval_golden.dumps(golden)) == golden
    assert eval_golden.differences(golden, copy.deepcopy(golden)) == []


def test_loglikelihoods_within_the_tolerance_pass():
    def within(multiple_choice, generation, cells):
        shift = 0.9 * eval_golden.LOGLIKELIHOOD_TOLERANCE
        multiple_choice["loglikelihoods,none"] = [ll + shift for ll in multiple_choice["loglikelihoods,none"]]

    assert moved(within) == []


def test_a_changed_answer_is_reported_even_when_its_loglikelihoods_are_within_the_tolerance():
    """Two choices a hair apart: each log-likelihood moves less than the tolerance, but the answer flips."""
    tolerance = eval_golden.LOGLIKELIHOOD_TOLERANCE

    def cell(loglikelihoods):
        row = {"item_id": "q0", "target": "0", "response,none": [[ll, False] for ll in loglikelihoods]}
        return {"demo": {"arc": {"questions": [eval_golden.question_summary(row)]}}}

    golden = cell([-13.875, -13.875 - tolerance / 4])
    now = cell([-13.875, -13.875 + tolerance / 4])
    assert eval_golden.differences(golden, now) == ["demo arc question q0: chosen,none is 1, golden 0"]


@pytest.mark.parametrize(
    "change",
    [
        "a log-likelihood beyond the tolerance",
        "the chosen answer",
        "an is-greedy flag",
        "a per-question score",
        "the generated text",
        "a filtered answer",
        "a lost question",
        "a metric",
        "a lost choice",
    ],
)
def test_the_comparison_reports_a_real_change(change):
    def edit(multiple_choice, generation, cells):
        if change == "a log-likelihood beyond the tolerance":
            multiple_choice["loglikelihoods,none"][2] += 1.5 * eval_golden.LOGLIKELIHOOD_TOLERANCE
        elif change == "the chosen answer":
            multiple_choice["chosen,none"] = 2
        elif change == "an is-greedy flag":
            multiple_choice["is_greedy,none"][0] = True
        elif change == "a per-question score":
            multiple_choice["acc,none"] = 0.0
        elif change == "the generated text":
            generation["generated"] = "It is 6"
        elif change == "a filtered answer":
            generation["response,flexible-extract"] = ["6"]
        elif change == "a lost question":
            cells["gsm8k"]["questions"].pop()
        elif change == "a metric":
            cells["arc"]["metrics"]["acc,none"] = 0.5
        elif change == "a lost choice":
            multiple_choice["loglikelihoods,none"].pop()

    found = moved(edit)
    assert len(found) == 1, found
