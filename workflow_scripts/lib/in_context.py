"""The in-context baseline: the base model with k examples of one bin in its prompt, no training.

It answers "how much of fine-tuning on bin b could k examples of bin b in the prompt have given?" at the
cost of evaluation jobs only. Each example is written the way fine-tuning sees it (prompts.render: the
training prompt's user turn and its target, e.g. gsm8k's "... So the answer is N"), examples are
separated by a blank line, and the test question follows in the task's own prompt, all in one user turn
(what lm-eval itself does with few-shot examples under a chat template unless asked for multi-turn).

Which k: the source pool (the bin's items, or its training part with eval_split: heldout) is ordered by a
keyed hash of the item id (the seed keys it, so each seed is another draw), and each test item gets the
first k of that order that are not itself; on other bins every test item sees the same k examples.

The evaluation step hands lm-eval a copy of the test bin with two added columns, `in_context_prompt`
(used as the task's doc_to_text) and `in_context_ids` (logged per question).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from workflow_scripts.lib import prompts, task_files
from workflow_scripts.lib.heldout import hash_key
from workflow_scripts.lib.io_utils import read_parquet, remake_folder

PROMPT_COLUMN = "in_context_prompt"
IDS_COLUMN = "in_context_ids"
EXAMPLE_SEPARATOR = "\n\n"


def draw_order(pool_ids: Sequence, seed: int) -> list[str]:
    """The pool's item ids in the order examples are taken from, fixed by the seed."""
    return sorted(map(str, pool_ids), key=lambda item_id: (hash_key(item_id, seed, "in-context"), item_id))


def example_ids(item_id, order: Sequence[str], k: int) -> list[str]:
    """The first k ids of the draw order that are not the test item itself."""
    chosen = [other for other in order[: k + 1] if other != str(item_id)][:k]
    if len(chosen) < k:
        raise ValueError(
            f"in_context.k = {k} but the source pool has only {len(chosen)} other item(s); fix: lower in_context.k"
        )
    return chosen


def example_text(row: Mapping, prompt_format: str) -> str:
    """One example as fine-tuning sees it: the user turn, then its target."""
    user, target = prompts.render(prompt_format, row)
    return user + target if user[-1:].isspace() else f"{user} {target}"


@functools.cache
def question_renderer(task: str):
    """The task's own prompt for a test item (its doc_to_text: a hook in tasks/utils.py, a column name
    or a Jinja template); for a group, the prompt its sub-tasks share."""
    definition = task_files.read(task_files.task_file(task))
    if "group" in definition:
        shared = {task_files.read(task_files.task_file(child))["doc_to_text"] for child in definition["task"]}
        if len(shared) != 1:
            raise ValueError(f"the sub-tasks of {task} prompt differently; the in-context baseline needs one prompt")
        (doc_to_text,) = shared
    else:
        doc_to_text = definition["doc_to_text"]
    hook = getattr(task_files.hooks(), doc_to_text, None)
    if callable(hook):
        return hook

    def render(doc: Mapping) -> str:
        if doc_to_text in doc:
            return str(doc[doc_to_text])
        from lm_eval.utils import apply_template

        return apply_template(doc_to_text, dict(doc))

    return render


def in_context_prompt(doc: Mapping, examples: Sequence[Mapping], prompt_format: str, task: str) -> str:
    blocks = [example_text(example, prompt_format) for example in examples]
    return EXAMPLE_SEPARATOR.join([*blocks, question_renderer(task)(doc)])


def with_examples(
    test_docs: Sequence[Mapping], pool_docs: Sequence[Mapping], k: int, seed: int, prompt_format: str, task: str
) -> tuple[list[str], list[list[str]]]:
    """For each test item: its prompt with k examples of the pool, and those examples' ids."""
    by_id = {str(doc["item_id"]): doc for doc in pool_docs}
    order = draw_order(by_id, seed)
    texts, ids = [], []
    for doc in test_docs:
        chosen = example_ids(doc["item_id"], order, k)
        texts.append(in_context_prompt(doc, [by_id[i] for i in chosen], prompt_format, task))
        ids.append(chosen)
    return texts, ids


def prepare_cell(
    task: str, test_file: str, pool_file: str, k: int, seed: int, prompt_format: str, folder
) -> tuple[str, dict]:
    """Write the test bin with its in-context prompts into `folder`; returns (that file, the task keys
    that make lm-eval read the prompt from it)."""
    given = {"--in-context-pool": pool_file, "--in-context-seed": seed, "--prompt-format": prompt_format}
    missing = [flag for flag, value in given.items() if value is None]
    if missing:
        raise ValueError(f"--in-context-k {k} needs {', '.join(missing)} (the rule passes the row's)")
    # Read once here first: a broken file fails naming itself (the datasets library's error names neither),
    # and both need item_id, which keys the draw and keeps a test item out of its own examples.
    read_parquet(test_file, "test bin", remake_folder(test_file), ["item_id"])
    read_parquet(pool_file, "in-context pool", remake_folder(pool_file), ["item_id"])
    import datasets

    test = datasets.load_dataset("parquet", data_files={"test": str(test_file)}, split="test")
    pool = datasets.load_dataset("parquet", data_files={"test": str(pool_file)}, split="test")
    texts, ids = with_examples(list(test), list(pool), k, seed, prompt_format, task)
    path = Path(folder) / "in-context-test.parquet"
    test.add_column(PROMPT_COLUMN, texts).add_column(IDS_COLUMN, ids).to_parquet(str(path))
    return str(path), {"doc_to_text": PROMPT_COLUMN}
