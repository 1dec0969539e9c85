"""Training prompts and targets, one formatter per dataset format.

The layouts follow the study's training code (see shared/STYLE.md, section 1): a user turn built from
the row, and the assistant turn (the target) that the loss is computed on.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Callable, Mapping, Sequence

LETTERS = string.ascii_uppercase

# BBH's 21 subtasks by answer format, as the study groups them (ids look like bbh_<subtask>_<n>).
BBH_GROUPS = {
    "boolean": ["boolean_expressions"],
    "multichoice": [
        "date_understanding", "disambiguation_qa", "geometric_shapes", "hyperbaton",
        "logical_deduction_five_objects", "logical_deduction_seven_objects", "logical_deduction_three_objects",
        "movie_recommendation", "reasoning_about_colored_objects", "ruin_names",
        "salient_translation_error_detection", "temporal_sequences", "tracking_shuffled_objects_five_objects",
        "tracking_shuffled_objects_seven_objects", "tracking_shuffled_objects_three_objects",
    ],
    "yesno": ["navigate", "sports_understanding", "web_of_lies"],
    "numeric": ["object_counting"],
    "valid_invalid": ["formal_fallacies"],
}  # fmt: skip


def _lettered_options(options: Sequence[str]) -> str:
    return "\n".join(f"{letter}) {text}" for letter, text in zip(LETTERS, options))


def arc(row: Mapping) -> tuple[str, str]:
    choices = row["choices"]
    lines = "\n".join(f"{label}) {text}" for label, text in zip(choices["label"], choices["text"]))
    return f"Question: {row['question']}\n{lines}\nAnswer:\n", str(row["answerKey"])


def lettered_multiple_choice(row: Mapping) -> tuple[str, str]:
    """mmlu_pro and gpqa_extended: options lettered A, B, C, ...; the target is the letter."""
    return (
        f"Question: {row['question']}\n{_lettered_options(list(row['options']))}\nAnswer:\n",
        str(row["answer"]),
    )


def gsm8k_target(answer: str) -> str:
    """The rationale without calculator marks, then the study's closing sentence."""
    rationale, _, final = answer.partition("#### ")
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


def musr(row: Mapping) -> tuple[str, str]:
    numbered = "".join(f"{i} - {option}\n" for i, option in enumerate(musr_options(row["options"]), 1))
    return f"{row['narrative']}\n\n{row['question']}\n\n{numbered}\nAnswer:", str(row["answer"])


def math(row: Mapping) -> tuple[str, str]:
    return f"Problem:\n{row['question']}\n\nAnswer:", str(row["answer"])


def math_solutions(row: Mapping) -> tuple[str, str]:
    """Model-written MATH solutions: train on ``model_solution``, fall back to ``solution``."""
    solution = row.get("model_solution") or row["solution"]
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
        raise ValueError(
            f"unknown prompt format {prompt_format!r}; use one of {sorted(FORMATTERS)}"
        ) from None
    return formatter(row)
