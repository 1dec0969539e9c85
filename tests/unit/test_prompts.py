"""Training prompts and targets: exact arc and gsm8k strings, musr answer indices, bad rows refused."""

import pytest

from workflow_scripts.lib.prompts import gsm8k_target, musr_answer_index, render

ARC_ROW = {
    "id": "Mercury_7175875",
    "question": "An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?",
    "choices": {
        "label": ["A", "B", "C", "D"],
        "text": [
            "Planetary density will decrease.",
            "Planetary years will become longer.",
            "Planetary days will become shorter.",
            "Planetary gravity will become stronger.",
        ],
    },
    "answerKey": "C",
}
GSM8K_ROW = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
}


def test_arc_prompt_and_target():
    user, target = render("arc", ARC_ROW)
    assert user == (
        "Question: An astronomer observes that a planet rotates faster after a meteorite impact. "
        "Which is the most likely effect of this increase in rotation?\n"
        "A) Planetary density will decrease.\n"
        "B) Planetary years will become longer.\n"
        "C) Planetary days will become shorter.\n"
        "D) Planetary gravity will become stronger.\n"
        "Answer:\n"
    )
    assert target == "C"


def test_gsm8k_prompt_and_target():
    user, target = render("gsm8k", GSM8K_ROW)
    assert user == (
        "Q: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?\nA:\n"
    )
    # Calculator marks removed, rationale stripped, then the study's closing sentence.
    assert target == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May. So the answer is 72"
    )
    assert gsm8k_target("x <<1+1=2>>2\n#### 2") == "x 2 So the answer is 2"


def test_unknown_format_names_the_choices():
    with pytest.raises(ValueError, match="unknown prompt format 'nope'.*'arc'"):
        render("nope", {})


def test_rows_whose_target_cannot_be_scored_are_refused():
    with pytest.raises(ValueError, match="no '#### <number>' line"):
        render("gsm8k", {"question": "q", "answer": "It is 72."})
    with pytest.raises(ValueError, match="2 '#### ' markers; it needs exactly one"):
        render("gsm8k", {"question": "q", "answer": "It is 7.\n#### 7\nNo, 72.\n#### 72"})
    with pytest.raises(ValueError, match="answerKey 'E' is not one of the labels"):
        render("arc", {**ARC_ROW, "answerKey": "E"})
    with pytest.raises(ValueError, match="neither an option nor an option's index"):
        render("musr", {"narrative": "n", "question": "q", "options": ["Ana", "Ben"], "answer": "Cy"})


def test_musr_answer_is_an_index_when_it_is_a_number():
    # As lm-eval reads the study's task ("{{answer}}"): digits are an index from 0, else the option text.
    assert musr_answer_index(["Ana", "Ben"], "Ben") == 1
    assert musr_answer_index(["Ana", "Ben"], 1) == 1
    assert musr_answer_index("['1', '2']", "1") == 1
