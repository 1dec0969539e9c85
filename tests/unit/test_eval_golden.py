"""The workflow's cells equal the golden set (tests/data/eval_golden.json), question by question.

The golden set began with the per-cell evaluation that generate + score replaced (issue 16): every
metric, stderr, sub-task score, question count and label must be the same (tests/support/eval_golden.py says
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

from tests.support import eval_golden

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
