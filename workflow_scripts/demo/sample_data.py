"""Deterministic synthetic sample data with the real dataset schemas, for the offline demo and tests.

One generator per config of BatsResearch/Cross-Difficulty (and the model-written MATH solutions), with
the real columns and types: gpqa ``doc_id`` ints, bbh ``bbh_<subtask>_<n>`` ids covering all 21
subtasks, musr options a string holding a Python list, ifeval ``kwargs`` with null entries.
The questions are made up (small arithmetic and the like; never GPQA text); difficulty grows with the
size of the numbers, so the bins mean something. ``1pl_quantile`` spans exactly [0, 1], so both ends of
the bin edges are exercised.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.lib import prompts


def _difficulty(rng: np.random.Generator, magnitude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    diff = np.log1p(magnitude) + rng.normal(0, 0.3, size=len(magnitude))
    quantile = pd.Series(diff).rank(method="first").to_numpy()
    quantile = (quantile - 1) / (len(diff) - 1)
    return diff.round(4), quantile.round(6)


def arc_rows(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, magnitude = [], []
    for i in range(n):
        a, b = (int(x) for x in rng.integers(1, 10 * (1 + i), size=2))
        answer = a + b
        wrong = sorted({answer + d for d in (-2, -1, 1, 2, 3)} - {answer})[:3]
        options = [answer, *wrong]
        order = rng.permutation(4)
        labels = ["A", "B", "C", "D"]
        texts = [str(options[j]) for j in order]
        rows.append(
            {
                "id": f"Synthetic_ARC_{i:04d}",
                "question": f"What is {a} plus {b}?",
                "choices": {"label": labels, "text": texts},
                "answerKey": labels[int(np.where(order == 0)[0][0])],
            }
        )
        magnitude.append(answer)
    table = pd.DataFrame(rows)
    table["1pl_diff"], table["1pl_quantile"] = _difficulty(rng, np.array(magnitude, dtype=float))
    return table


def gsm8k_rows(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, magnitude = [], []
    names = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fay"]
    for i in range(n):
        name = names[i % len(names)]
        a, b = (int(x) for x in rng.integers(1, 5 * (1 + i), size=2))
        total = a + b
        rows.append(
            {
                "question": f"{name} has {a} apples and buys {b} more. How many apples does {name} have now?",
                "answer": f"{name} has {a} + {b} = <<{a}+{b}={total}>>{total} apples.\n#### {total}",
            }
        )
        magnitude.append(total)
    table = pd.DataFrame(rows)
    table["1pl_diff"], table["1pl_quantile"] = _difficulty(rng, np.array(magnitude, dtype=float))
    return table


def _table(rows: list[dict], magnitude, rng) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["1pl_diff"], table["1pl_quantile"] = _difficulty(rng, np.asarray(magnitude, dtype=float))
    return table


def _lettered(rng, answer: int, n_options: int, spread: int) -> tuple[list[str], str]:
    """Numeric options around the answer, shuffled; returns (options, answer letter)."""
    wrong = [answer + d for d in range(-spread, spread + 1) if d != 0][: n_options - 1]
    options = [answer, *wrong]
    order = rng.permutation(n_options)
    shuffled = [str(options[j]) for j in order]
    return shuffled, "ABCDEFGHIJ"[int(np.where(order == 0)[0][0])]


def mmlu_pro_rows(n: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, magnitude = [], []
    for i in range(n):
        a, b = (int(x) for x in rng.integers(2, 4 + i, size=2))
        n_options = int(rng.integers(4, 11))  # MMLU-Pro has up to 10 options
        options, letter = _lettered(rng, a * b, n_options, 6)
        rows.append({"question": f"What is {a} times {b}?", "options": options, "answer": letter})
        magnitude.append(a * b)
    return _table(rows, magnitude, rng)


def gpqa_extended_rows(n: int, seed: int = 3, answer_form: str = "B") -> pd.DataFrame:
    """Synthetic only: GPQA's card asks that its questions never appear in plain text online.
    answer_form: "B" (bare letter) or "(B)"; which one the real data uses is not known offline."""
    if answer_form not in ("B", "(B)"):
        raise ValueError(f"answer_form {answer_form!r}: use 'B' or '(B)'")
    rng = np.random.default_rng(seed)
    rows, magnitude = [], []
    for i in range(n):
        a, b = (int(x) for x in rng.integers(10, 20 + 3 * i, size=2))
        options, letter = _lettered(rng, a - b, 4, 2)
        rows.append(
            {
                "doc_id": 1000 + i,
                "question": f"Synthetic item {i}: what is {a} minus {b}?",
                "options": options,
                "answer": answer_form.replace("B", letter),
            }
        )
        magnitude.append(abs(a - b) + i)
    return _table(rows, magnitude, rng)


def _bbh_item(rng, group: str, i: int) -> tuple[str, str]:
    a, b = (int(x) for x in rng.integers(1, 9, size=2))
    if group == "boolean":
        value = bool(rng.integers(0, 2))
        return f"not ( {not value} ) and True is", str(value)
    if group == "multichoice":
        options, letter = _lettered(rng, a + b, 4, 2)
        listed = "\n".join(f"({l}) {o}" for l, o in zip("ABCD", options))
        return f"Which is {a} plus {b}?\nOptions:\n{listed}", f"({letter})"
    if group == "yesno":
        return f"Is {a} greater than {b}?", "Yes" if a > b else "No"
    if group == "numeric":
        return f"I have {a} apples and {b} pears. How many fruits do I have?", str(a + b)
    return f"If all {a} are {b}, is every {a} a {b}? Argument valid or invalid?", "valid" if i % 2 else "invalid"


def bbh_rows(n: int, seed: int = 4) -> pd.DataFrame:
    """Every one of the 21 subtasks, ids as in the dataset: 'bbh_<subtask>_<n>' strings."""
    rng = np.random.default_rng(seed)
    subtasks = [(group, name) for group, names in prompts.BBH_GROUPS.items() for name in names]
    rows, magnitude = [], []
    for i in range(max(n, len(subtasks))):
        group, subtask = subtasks[i % len(subtasks)]
        question, answer = _bbh_item(rng, group, i)
        rows.append({"doc_id": f"bbh_{subtask}_{i}", "question": question, "answer": answer})
        magnitude.append(i)
    return _table(rows, magnitude, rng)


def musr_rows(n: int, seed: int = 5) -> pd.DataFrame:
    """Options as a string holding a Python list, as the data has them (an Arrow column holds one type;
    the list form is covered by the prompt tests)."""
    rng = np.random.default_rng(seed)
    rows, magnitude = [], []
    names = ["Mara", "Ivo", "Lena", "Theo"]
    for i in range(n):
        culprit = names[int(rng.integers(0, 4))]
        options = list(names)
        rows.append(
            {
                "narrative": f"In room {i}, a vase broke. {culprit} was alone with it; the others were outside.",
                "question": "Who most likely broke the vase?",
                "options": str(options),
                "answer": culprit,
            }
        )
        magnitude.append(i)
    return _table(rows, magnitude, rng)


def math_rows(n: int, seed: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows, magnitude = [], []
    for i in range(n):
        a, b = (int(x) for x in rng.integers(1, 6 + i, size=2))
        rows.append(
            {"question": f"Compute $\\frac{{{a}}}{{{a + b}}} + \\frac{{{b}}}{{{a + b}}}$.", "answer": "1"}
            if i % 3 == 0
            else {"question": f"What is $\\frac{{{a}}}{{{2 * a}}}$ as a fraction?", "answer": "\\frac{1}{2}"}
            if i % 3 == 1
            else {"question": f"Solve $x + {a} = {a + b}$.", "answer": str(b)}
        )
        magnitude.append(a + b)
    return _table(rows, magnitude, rng)


def math_solutions_rows(n: int, seed: int = 7) -> pd.DataFrame:
    """Model-written solutions; some rows lack one (then training falls back to `solution`)."""
    table = math_rows(n, seed)
    table.insert(0, "doc_id", range(len(table)))
    table["solution"] = [f"Working it out gives $\\boxed{{{a}}}$." for a in table["answer"]]
    table["model_solution"] = [
        None if i % 4 == 3 else f"Step by step, the result is $\\boxed{{{a}}}$." for i, a in enumerate(table["answer"])
    ]
    table["is_correct"] = [i % 4 != 3 for i in range(len(table))]
    columns = ["doc_id", "question", "answer", "solution", "model_solution", "is_correct", "1pl_diff", "1pl_quantile"]
    return table[columns]


# Every instruction lm-eval's IFEval checks (its INSTRUCTION_DICT, 25 ids): (id, kwargs, prompt, a
# reference answer that follows it). The answers are the dataset's `answer` column, so a test that
# scores them (tests/unit/test_ifeval_offline.py) runs every checker, the two that need NLTK's Punkt data
# (number_sentences, capital_word_frequency) among them, and expects each followed.
IFEVAL_KINDS = [
    (
        "keywords:existence",
        {"keywords": ["river", "stone"]},
        "Describe a river; mention a stone.",
        "The river ran over a smooth stone.",
    ),
    (
        "keywords:frequency",
        {"keyword": "blue", "frequency": 2, "relation": "at least"},
        "Describe the sky using the word blue at least twice.",
        "The sky is blue and the sea is blue too.",
    ),
    (
        "keywords:forbidden_words",
        {"forbidden_words": ["cold", "dark"]},
        "Describe winter without the words cold or dark.",
        "Winter brings snow and quiet mornings.",
    ),
    (
        "keywords:letter_frequency",
        {"letter": "z", "let_frequency": 2, "let_relation": "at least"},
        "Write a sentence with the letter z at least twice.",
        "The lazy zebra dozed.",
    ),
    (
        "language:response_language",
        {"language": "en"},
        "Answer in English: what do bees make?",
        "Bees make honey from the nectar of flowers, and they store it in their hives for the winter.",
    ),
    (
        "length_constraints:number_sentences",
        {"num_sentences": 3, "relation": "less than"},
        "Describe a sunrise in fewer than 3 sentences.",
        "The sun rose over the hills. Birds began to sing.",
    ),
    (
        "length_constraints:number_paragraphs",
        {"num_paragraphs": 2},
        "Write 2 paragraphs separated by ***.",
        "The morning was calm.\n***\nThe evening was loud.",
    ),
    (
        "length_constraints:number_words",
        {"num_words": 5, "relation": "at least"},
        "Describe the sea in at least 5 words.",
        "The sea is wide and deep and blue.",
    ),
    (
        "length_constraints:nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
        "Write 2 paragraphs; start the second with 'then'.",
        "Morning came early.\n\nThen the rain began.",
    ),
    (
        "detectable_content:number_placeholders",
        {"num_placeholders": 2},
        "Write a note with 2 placeholders in square brackets.",
        "Dear [name], see you at [place].",
    ),
    (
        "detectable_content:postscript",
        {"postscript_marker": "P.S."},
        "Write a short note ending with a P.S.",
        "See you soon.\nP.S. Bring a coat.",
    ),
    (
        "detectable_format:number_bullet_lists",
        {"num_bullets": 2},
        "List 2 fruits as markdown bullets.",
        "* apples\n* pears",
    ),
    (
        "detectable_format:constrained_response",
        {},
        "Is water wet? Answer with one of the given options.",
        "My answer is yes.",
    ),
    (
        "detectable_format:number_highlighted_sections",
        {"num_highlights": 1},
        "Highlight 1 section with markdown.",
        "This is *important* news.",
    ),
    (
        "detectable_format:multiple_sections",
        {"section_spliter": "Section", "num_sections": 2},
        "Write 2 sections marked Section X.",
        "Section 1\nThe plan.\nSection 2\nThe result.",
    ),
    ("detectable_format:json_format", {}, "Give the capital of Norway as JSON.", '{"capital": "Oslo"}'),
    (
        "detectable_format:title",
        {},
        "Write a poem with a title in double angular brackets.",
        "<<A Quiet Town>>\nThe town slept under the stars.",
    ),
    (
        "combination:two_responses",
        {},
        "Give two different answers separated by 6 asterisks.",
        "Yes, it is.\n******\nNo, it is not.",
    ),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Name a color."}, "Name a color.", "Name a color. Blue."),
    (
        "startend:end_checker",
        {"end_phrase": "Is there anything else?"},
        "Describe a cat; end with 'Is there anything else?'",
        "A cat purrs. Is there anything else?",
    ),
    (
        "change_case:capital_word_frequency",
        {"capital_frequency": 2, "capital_relation": "at least"},
        "Use at least 2 words in all capital letters.",
        "The NASA and ESA teams met today.",
    ),
    (
        "change_case:english_capital",
        {},
        "Describe a ship in English, all capital letters.",
        "THE OLD SHIP SAILED SLOWLY ACROSS THE CALM BLUE SEA AT DAWN WITH ITS CREW.",
    ),
    (
        "change_case:english_lowercase",
        {},
        "Describe a cat in one sentence, all in lowercase letters.",
        "a cat is a small and curious animal that likes to sleep in the warm sun.",
    ),
    (
        "punctuation:no_comma",
        {},
        "Write a sentence about rain without using any commas.",
        "Rain falls softly on the quiet town.",
    ),
    ("startend:quotation", {}, "Wrap your whole answer in double quotes.", '"Hello there, friend."'),
]
# The kwargs keys of the real data: every row has them all, unused ones null.
IFEVAL_KWARGS_KEYS = sorted({key for _, kwargs, _, _ in IFEVAL_KINDS for key in kwargs})


def ifeval_rows(n: int, seed: int = 8) -> pd.DataFrame:
    """Real instruction ids from lm-eval's registry, every one of them; kwargs hold every key, unused
    ones null, as the data."""
    rng = np.random.default_rng(seed)
    rows, magnitude = [], []
    for i in range(n):
        instruction, kwargs, prompt, answer = IFEVAL_KINDS[i % len(IFEVAL_KINDS)]
        rows.append(
            {
                "key": 5000 + i,
                # The item number goes after the instruction text, where it cannot break a check
                # that reads the prompt (repeat_prompt compares the answer's start with its kwarg).
                "prompt": f"{prompt} (item {i})",
                "instruction_id_list": [instruction],
                "kwargs": [{k: kwargs.get(k) for k in IFEVAL_KWARGS_KEYS}],
                "answer": answer,
            }
        )
        magnitude.append(i + int(rng.integers(0, 3)))
    return _table(rows, magnitude, rng)


GENERATORS = {
    "arc": arc_rows,
    "gsm8k": gsm8k_rows,
    "mmlu_pro": mmlu_pro_rows,
    "gpqa_extended": gpqa_extended_rows,
    "bbh": bbh_rows,
    "musr": musr_rows,
    "math": math_rows,
    "math_solutions": math_solutions_rows,
    "ifeval": ifeval_rows,
}


def sample_responses(sample: pd.DataFrame, n_subjects: int = 300, missing: float = 0.2, seed: int = 0) -> pd.DataFrame:
    """A synthetic response table (subject, item_id, correct) for sample rows, drawn from a 1PL model
    whose item difficulties are the rows' own standardized ``1pl_diff``: an IRT fit of it should give
    back the shipped bins. Item ids are the ones the download step gives the rows."""
    from workflow_scripts.steps import data, irt

    items = data.normalize(sample)
    difficulty = items["1pl_diff"].to_numpy(dtype=float)
    difficulty = (difficulty - difficulty.mean()) / difficulty.std()
    correct, observed, _ = irt.simulate(n_subjects, len(items), "1pl", missing, seed=seed, difficulty=difficulty)
    subjects = [f"synthetic-model-{i:03d}" for i in range(n_subjects)]
    return irt.to_long(correct, observed, subjects, items["item_id"].tolist())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, choices=sorted(GENERATORS))
    parser.add_argument("--out", required=True, help="jsonl file to write (parquet with --responses-for)")
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--responses-for", help="write a synthetic response table for this sample jsonl instead")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if args.responses_for:
        out.parent.mkdir(parents=True, exist_ok=True)
        table = sample_responses(pd.read_json(args.responses_for, lines=True))
        table.to_parquet(out, index=False)
        print(f"{len(table)} synthetic responses for {args.responses_for} written to {out}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    GENERATORS[args.dataset](args.rows).to_json(out, orient="records", lines=True)
    print(f"{args.rows} synthetic {args.dataset} rows written to {out}")


if __name__ == "__main__":
    main()
