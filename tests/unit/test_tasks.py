"""Golden tests of the eight datasets: exact prompts and targets, and each task's real lm-eval scoring
applied to handcrafted model outputs (the task objects are built by lm-eval from tasks/)."""

from __future__ import annotations

import pytest

from tests.support.task_scoring import evaluation_utils, score
from workflow_scripts.demo import sample_data
from workflow_scripts.lib import prompts

DATASETS = ["arc", "gsm8k", "mmlu_pro", "gpqa_extended", "bbh", "musr", "math", "ifeval"]


# ---- prompts and targets ---------------------------------------------------------------------


def test_mmlu_pro_and_gpqa_prompt():
    row = {"question": "Which is largest?", "options": ["1", "5", "3"], "answer": "B"}
    assert prompts.render("mmlu_pro", row) == ("Question: Which is largest?\nA) 1\nB) 5\nC) 3\nAnswer:\n", "B")
    assert prompts.render("gpqa_extended", row) == prompts.render("mmlu_pro", row)


def test_bbh_prompt():
    row = {"doc_id": "bbh_navigate_3", "question": "Take 2 steps. Are you back?", "answer": "No"}
    assert prompts.render("bbh", row) == ("Question: Take 2 steps. Are you back?\nAnswer:\n", "No")


@pytest.mark.parametrize("options", [["Ana", "Ben"], "['Ana', 'Ben']"])
def test_musr_prompt_accepts_list_or_string(options):
    row = {"narrative": "A story.", "question": "Who?", "options": options, "answer": "Ben"}
    assert prompts.render("musr", row) == ("A story.\n\nWho?\n\n1 - Ana\n2 - Ben\n\nAnswer:", "Ben")


def test_math_prompts_and_solution_fallback():
    row = {"question": "What is $1+1$?", "answer": "2", "solution": "It is $\\boxed{2}$.", "model_solution": None}
    assert prompts.render("math", row) == ("Problem:\nWhat is $1+1$?\n\nAnswer:", "2")
    assert prompts.render("math_solutions", row) == ("Problem:\nWhat is $1+1$?\n\nSolution:", "It is $\\boxed{2}$.")
    row["model_solution"] = "So $\\boxed{2}$."
    assert prompts.render("math_solutions", row)[1] == "So $\\boxed{2}$."
    # A missing string read through pandas is NaN, which is truthy: it must still fall back.
    for missing in (float("nan"), "", "  "):
        row["model_solution"] = missing
        assert prompts.render("math_solutions", row)[1] == "It is $\\boxed{2}$."


def test_ifeval_prompt():
    row = {"key": 1, "prompt": "Write in lowercase.", "answer": "fine."}
    assert prompts.render("ifeval", row) == ("Write in lowercase.", "fine.")


# ---- sample data -----------------------------------------------------------------------------


def test_samples_have_the_real_schema():
    gpqa = sample_data.gpqa_extended_rows(30)
    assert gpqa["doc_id"].map(type).eq(int).all() and gpqa["options"].map(len).eq(4).all()
    bbh = sample_data.bbh_rows(30)
    assert bbh["doc_id"].str.startswith("bbh_").all()
    assert {evaluation_utils().bbh_subtask(i) for i in bbh["doc_id"]} == {
        name for names in evaluation_utils().BBH_GROUPS.values() for name in names
    }
    assert len({evaluation_utils().bbh_subtask(i) for i in bbh["doc_id"]}) == 21
    musr = sample_data.musr_rows(4)
    assert musr["options"].map(type).eq(str).all() and prompts.musr_options(musr["options"][0])
    ifeval = sample_data.ifeval_rows(4)
    assert any(v is None for kwargs in ifeval["kwargs"] for entry in kwargs for v in entry.values())
    solutions = sample_data.math_solutions_rows(8)
    assert solutions["model_solution"].isna().any() and solutions["model_solution"].notna().any()
    for name, generate in sample_data.GENERATORS.items():
        table = generate(30)
        assert {"1pl_diff", "1pl_quantile"} <= set(table.columns), name
        assert table["1pl_quantile"].min() == 0.0 and table["1pl_quantile"].max() == 1.0, name
        assert "GPQA" not in " ".join(map(str, table.to_numpy().ravel())), name


# ---- scoring with the real task objects ------------------------------------------------------


def text(response: str):
    return lambda doc, instance: response


def test_gsm8k_strict_versus_flexible():
    row = {"question": "Add 2 and 3.", "answer": "2 + 3 = 5.\n#### 5", "item_id": "0"}
    assert score("cross_difficulty_gsm8k", [row], text("2 + 3 = 5. So the answer is 5.")) == {
        "exact_match,strict-match": 1.0,
        "exact_match,flexible-extract": 1.0,
    }
    # No trained closing sentence: only the flexible extraction (last number) finds it.
    assert score("cross_difficulty_gsm8k", [row], text("2 + 3 makes 5")) == {
        "exact_match,strict-match": 0.0,
        "exact_match,flexible-extract": 1.0,
    }


@pytest.mark.parametrize(
    "response, first_letter, committed",
    [
        ("C", 1.0, 1.0),
        ("The answer is (C).", 1.0, 1.0),
        ("Answer: C", 0.0, 1.0),  # the study's extraction takes the "A" of "Answer"
        ("Based on the options, the answer is C", 0.0, 1.0),
        ("After checking B) and D), the answer is C", 0.0, 1.0),
        ("B", 0.0, 0.0),
    ],
)
def test_mmlu_pro_both_extractions(response, first_letter, committed):
    row = {"question": "Pick C.", "options": ["x", "y", "z", "w"], "answer": "C", "item_id": "0"}
    scores = score("cross_difficulty_mmlu_pro", [row], text(response))
    assert scores == {"exact_match,first-letter": first_letter, "exact_match,committed-letter": committed}


BBH_ROWS = {
    "boolean": (
        {"doc_id": "bbh_boolean_expressions_1", "question": "not False is", "answer": "True"},
        "It is True.",
        "True",
    ),
    "multichoice": (
        {"doc_id": "bbh_date_understanding_2", "question": "Pick\nOptions:\n(A) one\n(B) two", "answer": "(B)"},
        "I pick (B) two.",
        "(B)",
    ),
    "yesno": (
        {"doc_id": "bbh_sports_understanding_3", "question": "Plausible?", "answer": "yes"},
        "This is plausible.",
        "yes",
    ),
    "numeric": ({"doc_id": "bbh_object_counting_4", "question": "How many?", "answer": "7"}, "I count 7 things.", "7"),
    "valid_invalid": (
        {"doc_id": "bbh_formal_fallacies_5", "question": "Valid?", "answer": "invalid"},
        "The argument is invalid.",
        "invalid",
    ),
}


@pytest.mark.parametrize("group", list(BBH_ROWS))
def test_each_bbh_group_scores_exact_and_extracted_answers(group):
    row, wordy, exact = BBH_ROWS[group]
    row = {**row, "item_id": row["doc_id"]}
    assert score("cross_difficulty_bbh", [row], text(exact)) == {
        "exact_match,strict-match": 1.0,
        "exact_match,flexible-extract": 1.0,
        "exact_match,lenient-extract": 1.0,
    }
    assert score("cross_difficulty_bbh", [row], text(wordy)) == {
        "exact_match,strict-match": 0.0,
        "exact_match,flexible-extract": 1.0,
        "exact_match,lenient-extract": 1.0,
    }


@pytest.mark.parametrize(
    "answer, response, correct",
    [
        ("\\frac{1}{2}", "0.5", 1.0),
        ("\\frac{1}{2}", "The result is $\\boxed{\\frac{2}{4}}$.", 1.0),
        ("\\frac{1}{2}", "$\\boxed{0.4}$", 0.0),
        ("2\\sqrt{2}", "$\\sqrt{8}$", 1.0),
    ],
)
def test_math_verify_equivalence(answer, response, correct):
    row = {"question": "q", "answer": answer, "item_id": "0"}
    assert score("cross_difficulty_math", [row], text(response)) == {"exact_match,none": correct}


def test_ifeval_strict_versus_loose():
    row = {
        "key": 1,
        "prompt": "Answer in lowercase.",
        "instruction_id_list": ["change_case:english_lowercase"],
        "kwargs": [{"num_words": None, "relation": None}],
        "answer": "",
        "item_id": "1",
    }
    scores = score("cross_difficulty_ifeval", [row], text("**Sure**\nall of this is lowercase."))
    # Strictly the first line breaks the rule ("Sure"); loosely, dropping the first line follows it.
    assert scores["prompt_level_strict_acc,none"] == 0.0
    assert scores["prompt_level_loose_acc,none"] == 1.0


def loglikelihood_favouring(index_of):
    """Log-likelihoods that make the choice index_of(doc) the most likely continuation."""

    def respond(doc, instance):
        return (0.0 if instance.idx == index_of(doc) else -5.0, False)

    return respond


@pytest.mark.parametrize(
    "task, row, right",
    [
        (
            "cross_difficulty_arc",
            {"question": "q", "choices": {"label": ["A", "B", "C"], "text": ["x", "y", "z"]}, "answerKey": "C"},
            2,
        ),
        (
            "cross_difficulty_gpqa_extended",
            {"doc_id": 7, "question": "q", "options": ["1", "2", "3", "4"], "answer": "D"},
            3,
        ),
        (
            "cross_difficulty_musr",
            {"narrative": "n", "question": "q", "options": "['Ana', 'Ben', 'Cy']", "answer": "Ben"},
            1,
        ),
    ],
)
def test_loglikelihood_tasks_pick_the_most_likely_choice(task, row, right):
    row = {**row, "item_id": "0"}
    assert score(task, [row], loglikelihood_favouring(lambda doc: right))["acc,none"] == 1.0
    assert score(task, [row], loglikelihood_favouring(lambda doc: 0))["acc,none"] == 0.0
