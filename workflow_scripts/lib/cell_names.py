"""How a row of the matrix is named, and the labels a name stands for.

A row is the zero-shot base model (`base`), a model fine-tuned on one bin (`3`), or the base model with k
examples of one bin in its prompt (`icl4-bin3`). Two tags say how a row was made where that differs from
the study, so the study's own runs keep their plain paths (`train-3`, `train-base`):

- `-heldout`: trained on a bin's training part and tested on held-out items only (eval_split: heldout);
- `-seed{S}`: a seed other than the study's 42 (a repeat of a trained or in-context row).

Three names, three things:
- a row's *name* (`3-heldout-seed43`, `icl4-bin3`, `base`) carries its tags; it is what a path holds
  (`train-{row}`) and what the wildcards `{row}` (any row) and `{trained_row}` (a fine-tuned row) match;
- its `row_label` is the name without tags (`3`): what tables pivot on and figures print, unique per
  (model, dataset, eval_split, seed);
- `train_kind` (base / bin / in_context) and `train_bin` (the int 3) say what the row is; code that needs
  to know reads them, never the name.

The Snakefile builds paths with these functions and the wildcard patterns below; a cell file carries
`labels(name)`, so a table never has to parse a path.
"""

from __future__ import annotations

import re

# The study's seed: runs with it keep the plain names of a one-seed grid.
STUDY_SEED = 42
EVAL_SPLITS = ("all", "heldout")

_TAGS = r"(?P<heldout>-heldout)?(?P<seed>-seed\d+)?"
# Wildcard constraints (no named groups: Snakemake composes them into its own pattern).
TRAINED_ROW_PATTERN = r"\d+(-heldout)?(-seed\d+)?"
ROW_PATTERN = r"base(-heldout)?|(icl\d+-bin)?\d+(-heldout)?(-seed\d+)?"
_NAME = re.compile(r"(?:(?P<base>base)(?P<base_heldout>-heldout)?|(?:icl(?P<k>\d+)-bin)?(?P<bin>\d+)" + _TAGS + r")")


def tags(eval_split: str, seed: int | None) -> str:
    if eval_split not in EVAL_SPLITS:
        raise ValueError(f"eval_split {eval_split!r} is not one of {EVAL_SPLITS}")
    heldout = "-heldout" if eval_split == "heldout" else ""
    return heldout + ("" if seed in (None, STUDY_SEED) else f"-seed{seed}")


def base_name(eval_split: str) -> str:
    """The base model has no seed: nothing about it is random."""
    return "base" + tags(eval_split, None)


def bin_name(train_bin: int | str, eval_split: str, seed: int) -> str:
    return f"{train_bin}{tags(eval_split, seed)}"


def in_context_name(k: int, source_bin: int | str, eval_split: str, seed: int) -> str:
    return f"icl{k}-bin{source_bin}{tags(eval_split, seed)}"


def labels(name: str) -> dict:
    """What a row name stands for, as the labels a cell file carries.

    `row_label` is the name without its tags ("base", "3", "icl4-bin3"). `train_bin` is the bin the row
    learned from (trained on, or shown in its prompt); `seed` is None for the base model."""
    match = _NAME.fullmatch(name)
    if not match:
        raise ValueError(f"{name!r} is not a row name (base, <bin>, icl<k>-bin<bin>, with -heldout/-seed<S> tags)")
    if match["base"]:
        return {
            "row_label": "base",
            "train_kind": "base",
            "train_bin": None,
            "in_context_k": None,
            "seed": None,
            "eval_split": "heldout" if match["base_heldout"] else "all",
        }
    k = int(match["k"]) if match["k"] is not None else None
    seed = int(match["seed"].removeprefix("-seed")) if match["seed"] else STUDY_SEED
    return {
        "row_label": f"icl{k}-bin{match['bin']}" if k is not None else match["bin"],
        "train_kind": "in_context" if k is not None else "bin",
        "train_bin": int(match["bin"]),
        "in_context_k": k,
        "seed": seed,
        "eval_split": "heldout" if match["heldout"] else "all",
    }
