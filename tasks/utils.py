"""Hooks (``!function utils.x``) for the cross-difficulty lm-eval tasks.

The prompt text is the training prompt's user turn, so a model is evaluated on the layout it was
trained on; both come from workflow_scripts/lib/prompts.py where possible.
"""

import re
import sys
from collections import Counter
from pathlib import Path

from lm_eval.api.filter import Filter
from lm_eval.tasks.bbh.zeroshot import utils as bbh_filters

# The task folder sits beside workflow_scripts/ in the repository.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflow_scripts.lib import prompts  # noqa: E402


def arc_doc_to_text(doc) -> str:
    return prompts.arc(doc)[0]


# ---- multiple choice: gpqa_extended, musr ------------------------------------------------------


def lettered_doc_to_text(doc) -> str:
    """mmlu_pro and gpqa_extended: the training prompt's user turn."""
    return prompts.lettered_multiple_choice(doc)[0]


def gpqa_doc_to_target(doc) -> int:
    """Either answer form, 'B' or '(B)' (the study's task compares the raw value with '(A)'..'(D)', so
    it scores every question 0 if the data has the bare letter)."""
    return "ABCD".index(prompts.gpqa_letter(doc["answer"]))


_logged_bins: set[str] = set()


def gpqa_docs(dataset):
    """Leaves the documents as they are; logs which answer form this bin has (once per bin file)."""
    key = getattr(dataset, "_fingerprint", None) or str(id(dataset))
    if key not in _logged_bins:
        _logged_bins.add(key)
        forms = Counter(prompts.gpqa_answer_form(answer) for answer in dataset["answer"])
        print(f"cross_difficulty_gpqa_extended: answer forms in this bin (letter as X): {dict(forms)}", file=sys.stderr)
    return dataset


def musr_doc_to_text(doc) -> str:
    # The study's evaluation prompt: no blank line before "Answer:" (its training prompt has one).
    numbered = "".join(f"{i} - {option}\n" for i, option in enumerate(prompts.musr_options(doc["options"]), 1))
    return f"{doc['narrative']}\n\n{doc['question']}\n\n{numbered}Answer:"


def musr_doc_to_choice(doc) -> list[str]:
    return prompts.musr_options(doc["options"])


def musr_doc_to_target(doc) -> int:
    return prompts.musr_answer_index(doc["options"], doc["answer"])


# ---- mmlu_pro ---------------------------------------------------------------------------------


class FirstLetterFilter(Filter):
    """The study's extraction: the first capital A-J anywhere in the response (fragile: the "A" of
    "Answer" or of a sentence start counts)."""

    def apply(self, resps, docs):
        return [[(m.group(0) if (m := re.search(r"[A-J]", r)) else "[invalid]") for r in rs] for rs in resps]


COMMITTED_PATTERNS = [
    r"answer is:?\s*\(?([A-J])\)?(?![A-Za-z])",
    r"answer:\s*\(?([A-J])\)?(?![A-Za-z])",
    r"^\s*\(?([A-J])\)?(?:[.):\s]|$)",
    r"\(([A-J])\)",
    r"(?<![A-Za-z])([A-J])\)",
]


class CommittedLetterFilter(Filter):
    """The letter the response commits to: "the answer is (C)", "Answer: C", a response that starts
    with the letter, then a parenthesised or "C)"-style letter; the last such commitment wins."""

    def apply(self, resps, docs):
        return [[committed_letter(r) for r in rs] for rs in resps]


def committed_letter(response: str) -> str:
    for pattern in COMMITTED_PATTERNS:
        found = re.findall(pattern, response, flags=re.IGNORECASE | re.MULTILINE)
        found = [f.upper() for f in found if f.upper() in "ABCDEFGHIJ"]
        if found:
            return found[-1]
    return "[invalid]"


# ---- bbh --------------------------------------------------------------------------------------

BBH_GROUPS = prompts.BBH_GROUPS


def bbh_subtask(doc_id: str) -> str:
    """'bbh_logical_deduction_five_objects_12' -> 'logical_deduction_five_objects' (longest match)."""
    names = sorted((n for ns in BBH_GROUPS.values() for n in ns), key=len, reverse=True)
    return next((n for n in names if str(doc_id).startswith(f"bbh_{n}")), "")


def _bbh_docs(group: str):
    def keep(dataset):
        return dataset.filter(lambda doc: bbh_subtask(doc["doc_id"]) in BBH_GROUPS[group])

    return keep


bbh_boolean_docs = _bbh_docs("boolean")
bbh_multichoice_docs = _bbh_docs("multichoice")
bbh_yesno_docs = _bbh_docs("yesno")
bbh_numeric_docs = _bbh_docs("numeric")
bbh_valid_invalid_docs = _bbh_docs("valid_invalid")


class _QuestionAsInput:
    """lm-eval's BBH filters read the question from doc["input"]; ours is doc["question"]."""

    def __init__(self, **kwargs):
        self.inner = self.inner_class(**kwargs)

    def apply(self, resps, docs):
        return self.inner.apply(resps, [{"input": doc["question"]} for doc in docs])


class BBHMultiChoiceFilter(_QuestionAsInput):
    inner_class = bbh_filters.MultiChoiceRegexFilter


class BBHMapFilter(_QuestionAsInput):
    inner_class = bbh_filters.MapRegexFilter


class BBHNumberFilter(_QuestionAsInput):
    inner_class = bbh_filters.NumberParseRegexFilter


# ---- math -------------------------------------------------------------------------------------


def math_doc_to_text(doc) -> str:
    # The study's evaluation prompt asks for a solution (its training prompt for `math` says "Answer:").
    return f"Problem:\n{doc['question']}\n\nSolution:"


def math_process_results(doc, results) -> dict:
    """math-verify equivalence of the response with the reference answer read as LaTeX."""
    from math_verify import LatexExtractionConfig, parse, verify

    response = results[0] if results else ""
    try:
        gold = parse(f"${doc['answer']}$", extraction_config=[LatexExtractionConfig()])
        correct = verify(gold, parse(response)) or verify(gold, parse(f"${response}$"))
    except Exception:  # math-verify raises on unparsable input: that response is wrong, not fatal
        correct = False
    return {"exact_match": int(bool(correct))}


# ---- ifeval -----------------------------------------------------------------------------------


# lm-eval's IFEval module tries to download NLTK data when imported: import it only for IFEval cells.


def ifeval_process_results(doc, results) -> dict:
    """lm-eval's own instruction checkers, given the kwargs with their null entries dropped."""
    from lm_eval.tasks.ifeval import utils as ifeval_utils

    cleaned = dict(doc)
    cleaned["kwargs"] = [{k: v for k, v in (kw or {}).items() if v is not None} for kw in doc["kwargs"]]
    return ifeval_utils.process_results(cleaned, results)


def agg_inst_level_acc(items) -> float:
    from lm_eval.tasks.ifeval import utils as ifeval_utils

    return ifeval_utils.agg_inst_level_acc(items)
