"""Training prompts and targets, one formatter per dataset format.

The layouts follow the study's training code (see shared/STYLE.md, section 1): a user turn built from
the row, and the assistant turn (the target) that the loss is computed on.
"""

from __future__ import annotations

import ast
import math as _math  # `math` is also the name of the MATH formatter below
import re
import string
from collections.abc import Callable, Mapping, Sequence

LETTERS = string.ascii_uppercase

# BBH's 21 subtasks by answer format, as the study groups them (ids look like bbh_<subtask>_<n>).
BBH_GROUPS = {
    "boolean": ["boolean_expressions"],
    "multichoice": [
        "date_understanding",
        "disambiguation_qa",
        "geometric_shapes",
        "hyperbaton",
        "logical_deduction_five_objects",
        "logical_deduction_seven_objects",
        "logical_deduction_three_objects",
        "movie_recommendation",
        "reasoning_about_colored_objects",
        "ruin_names",
        "salient_translation_error_detection",
        "temporal_sequences",
        "tracking_shuffled_objects_five_objects",
        "tracking_shuffled_objects_seven_objects",
        "tracking_shuffled_objects_three_objects",
    ],
    "yesno": ["navigate", "sports_understanding", "web_of_lies"],
    "numeric": ["object_counting"],
    "valid_invalid": ["formal_fallacies"],
}


def is_missing(value) -> bool:
    """No usable value: None, NaN or pandas' NA (what a missing string becomes in a pandas table; both
    are truthy, so `value or fallback` does not catch them), a blank string, or an empty list."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(value, float):
        return _math.isnan(value)
    if isinstance(value, str):
        return not value.strip()
    return hasattr(value, "__len__") and len(value) == 0


# The columns each format's targets come from (the training target and the evaluation's reference).
# A row missing one of them is refused at download (workflow_scripts/steps/data.py), except where the study
# falls back: math_solutions trains on `solution` when `model_solution` is missing.
TARGET_COLUMNS = {
    "arc": ["answerKey"],
    "gsm8k": ["answer"],
    "mmlu_pro": ["answer"],
    "gpqa_extended": ["answer"],
    "bbh": ["answer"],
    "musr": ["answer"],
    "math": ["answer"],
    "math_solutions": ["answer"],  # the math task's reference; training: model_solution, else solution
    "ifeval": ["answer", "instruction_id_list"],  # an empty instruction list would score 1 for anything
}
FALLBACKS = {"math_solutions": ("model_solution", "solution")}


def gpqa_letter(answer) -> str:
    """GPQA's answer letter from either form the data may use: 'B' or '(B)', surrounding spaces allowed.
    (The study compares the raw value with the choices '(A)'..'(D)', which scores 0 for the 'B' form.)"""
    found = re.fullmatch(r"\s*(?:\(\s*([A-D])\s*\)|([A-D]))\s*", str(answer))
    if not found:
        raise ValueError(f"gpqa answer {answer!r} is not a letter A-D, bare or in parentheses")
    return found.group(1) or found.group(2)


def gpqa_answer_form(answer) -> str:
    """How an answer is written, with its letter as X: 'X', '(X)', ' (X) ' ... (for the logs)."""
    return re.sub(r"[A-D]", "X", str(answer), count=1)


def _lettered_options(options: Sequence[str]) -> str:
    return "\n".join(f"{letter}) {text}" for letter, text in zip(LETTERS, options))


def arc(row: Mapping) -> tuple[str, str]:
    choices = row["choices"]
    if str(row["answerKey"]) not in [str(label) for label in choices["label"]]:
        raise ValueError(f"answerKey {row['answerKey']!r} is not one of the labels {list(choices['label'])}")
    lines = "\n".join(f"{label}) {text}" for label, text in zip(choices["label"], choices["text"]))
    return f"Question: {row['question']}\n{lines}\nAnswer:\n", str(row["answerKey"])


def lettered_multiple_choice(row: Mapping) -> tuple[str, str]:
    """mmlu_pro and gpqa_extended: options lettered A, B, C, ...; the target is the letter."""
    return (
        f"Question: {row['question']}\n{_lettered_options(list(row['options']))}\nAnswer:\n",
        str(row["answer"]),
    )


GSM8K_MARKER = "#### "  # starts the final-answer line of a gsm8k answer


def gsm8k_target(answer: str) -> str:
    """The rationale without calculator marks, then the study's closing sentence."""
    markers = answer.count(GSM8K_MARKER)
    if not markers:
        raise ValueError("gsm8k answer has no '#### <number>' line")
    if markers > 1:
        # Cut at the first, the target would carry the rest, second marker and all, as its "number".
        raise ValueError(f"gsm8k answer has {markers} '#### ' markers; it needs exactly one")
    rationale, _, final = answer.partition(GSM8K_MARKER)
    rationale = re.sub(r"<<.*?>>", "", rationale).strip()
    return f"{rationale} So the answer is {final}"


def gsm8k(row: Mapping) -> tuple[str, str]:
    return f"Q: {row['question']}\nA:\n", gsm8k_target(row["answer"])


def bbh(row: Mapping) -> tuple[str, str]:
    return f"Question: {row['question']}\nAnswer:\n", str(row["answer"])


def musr_options(options) -> list[str]:
    """MuSR options arrive as a list or as a string holding a Python list literal."""
    if isinstance(options, str):
        options = ast.literal_eval(options)
    return [str(o) for o in options]


def musr_answer_index(options, answer) -> int:
    """The position of MuSR's answer among the options, read as lm-eval reads the study's task: a
    number is the option's index (from 0), anything else the option's text."""
    options, answer = musr_options(options), str(answer)
    if answer.isdigit() and int(answer) < len(options):
        return int(answer)
    if answer in options:
        return options.index(answer)
    raise ValueError(f"musr answer {answer!r} is neither an option nor an option's index")


def musr(row: Mapping) -> tuple[str, str]:
    musr_answer_index(row["options"], row["answer"])  # a row the evaluation could not score is refused
    numbered = "".join(f"{i} - {option}\n" for i, option in enumerate(musr_options(row["options"]), 1))
    return f"{row['narrative']}\n\n{row['question']}\n\n{numbered}\nAnswer:", str(row["answer"])


def math(row: Mapping) -> tuple[str, str]:
    return f"Problem:\n{row['question']}\n\nAnswer:", str(row["answer"])


def math_solutions(row: Mapping) -> tuple[str, str]:
    """Model-written MATH solutions: train on ``model_solution``, fall back to ``solution`` (the study's
    rule) where it is missing: None, NaN, blank (a blank one the study would train on as it is)."""
    solution = row.get("model_solution")
    if is_missing(solution):
        solution = row["solution"]
    return f"Problem:\n{row['question']}\n\nSolution:", str(solution)


def ifeval(row: Mapping) -> tuple[str, str]:
    return str(row["prompt"]), str(row["answer"])


FORMATTERS: dict[str, Callable[[Mapping], tuple[str, str]]] = {
    "arc": arc,
    "gsm8k": gsm8k,
    "mmlu_pro": lettered_multiple_choice,
    "gpqa_extended": lettered_multiple_choice,
    "bbh": bbh,
    "musr": musr,
    "math": math,
    "math_solutions": math_solutions,
    "ifeval": ifeval,
}


def render(prompt_format: str, row: Mapping) -> tuple[str, str]:
    """Return (user turn, target) for one dataset row."""
    try:
        formatter = FORMATTERS[prompt_format]
    except KeyError:
        raise ValueError(f"unknown prompt format {prompt_format!r}; use one of {sorted(FORMATTERS)}") from None
    return formatter(row)
