"""Download (or read) one dataset and write it as a normalized parquet table.

Hub datasets and local files go through the same call, ``datasets.load_dataset``: a hub source names
the repository and config (``HF_TOKEN`` and ``HF_HOME`` are honoured by the hub client), a local source
names a parquet or jsonl file with the same columns. Normalizing adds ``item_id``, a string id unique
within the dataset, used to join per-question results later.
"""

from __future__ import annotations

import argparse
import json
import os

import pandas as pd

from workflow_scripts.lib.bins import ID_COLUMNS
from workflow_scripts.lib.io_utils import atomic_write_parquet, one_line_errors

LOCAL_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def load_source(source: dict) -> pd.DataFrame:
    import datasets

    split = source.get("split", "train")
    if "path" in source:
        path = source["path"]
        extension = os.path.splitext(path)[1]
        if extension not in LOCAL_BUILDERS:
            raise ValueError(f"source.path {path!r}: use a .parquet, .jsonl or .json file")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"source.path {path!r} does not exist")
        try:
            dataset = datasets.load_dataset(LOCAL_BUILDERS[extension], data_files={split: path}, split=split)
        except Exception as error:  # datasets raises many types for a broken file; say which file
            raise ValueError(
                f"source.path {path!r} could not be read as {LOCAL_BUILDERS[extension]} "
                f"({type(error).__name__}); fix or regenerate the file"
            ) from error
    else:
        name = f"{source['hub']}" + (f" ({source['name']})" if source.get("name") else "")
        try:
            dataset = datasets.load_dataset(
                source["hub"], source.get("name"), split=split, token=os.environ.get("HF_TOKEN") or None
            )
        except Exception as error:
            if "gated" in str(error).lower() or type(error).__name__ in ("GatedRepoError", "DatasetNotFoundError"):
                raise PermissionError(
                    f"dataset {name} is gated or not visible without a token: accept its terms on the Hub and "
                    "set HF_TOKEN in the environment of the Snakemake process (download runs there)"
                ) from None
            raise
    return dataset.to_pandas()


def normalize(table: pd.DataFrame) -> pd.DataFrame:
    table = table.reset_index(drop=True)
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    ids = table[id_column].astype(str) if id_column else pd.Series(range(len(table))).astype(str)
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise ValueError(f"column {id_column!r} has duplicate item ids, e.g. {duplicated[:3]}; ids must be unique")
    return table.assign(item_id=ids.values)


def _examples(table: pd.DataFrame, rows: pd.Series) -> str:
    return ", ".join(repr(i) for i in table.loc[rows, "item_id"].head(3))


def target_problems(table: pd.DataFrame, prompt_format: str) -> list[str]:
    """Missing or empty target values, one line per column with its count. The study's one fallback
    (math_solutions: model_solution, else solution) is applied, not refused."""
    from workflow_scripts.lib import prompts

    columns = list(prompts.TARGET_COLUMNS.get(prompt_format, []))
    preferred, second = prompts.FALLBACKS.get(prompt_format, (None, None))
    needed = columns + ([second] if second else [])
    absent = [c for c in needed if c not in table.columns]
    if absent:
        return [f"column {c!r} is missing; prompt_format {prompt_format!r} needs it" for c in absent]
    problems = []
    for column in columns:
        missing = table[column].map(prompts.is_missing)
        if missing.any():
            problems.append(
                f"column {column!r} is missing or empty in {missing.sum()} of {len(table)} rows "
                f"(item_id {_examples(table, missing)}); fix the data (the study has no fallback for it)"
            )
    if second:
        if preferred in table.columns:
            without = table[preferred].map(prompts.is_missing)
        else:
            without = pd.Series(True, index=table.index)
        neither = without & table[second].map(prompts.is_missing)
        if neither.any():
            problems.append(
                f"column {second!r} is missing or empty in {neither.sum()} of the {without.sum()} rows "
                f"without {preferred!r} (item_id {_examples(table, neither)}); such a row has no target"
            )
        elif without.any():
            count = f"{without.sum()} of {len(table)} rows"
            print(f"{count} have no {preferred!r}: they train on {second!r}, as the study does")
    if prompt_format == "gpqa_extended" and not problems:
        problems += gpqa_answer_problems(table)
    if prompt_format == "gsm8k" and not problems:
        problems += gsm8k_answer_problems(table)
    return problems


def gsm8k_answer_problems(table: pd.DataFrame) -> list[str]:
    """The target is the rationale before the one '#### ' marker and the number after it: an answer
    without one has no number; one with two would train on everything after the first, while the
    evaluation's reference is what follows the last (the study's code crashes on it)."""
    from workflow_scripts.lib import prompts

    markers = table["answer"].map(lambda answer: str(answer).count(prompts.GSM8K_MARKER))
    problems = []
    for bad, what in ((markers == 0, "no '#### N' line"), (markers > 1, "more than one '#### ' marker")):
        if bad.any():
            problems.append(
                f"column 'answer' has {what} in {bad.sum()} of {len(table)} rows (item_id {_examples(table, bad)}); "
                "fix the data (each answer ends in one '#### N' line)"
            )
    return problems


def gpqa_answer_problems(table: pd.DataFrame) -> list[str]:
    """GPQA answers may be 'B' or '(B)' (spaces around allowed); anything else is refused. Logs the forms."""
    from workflow_scripts.lib import prompts

    def letter(value):
        try:
            return prompts.gpqa_letter(value)
        except ValueError:
            return None

    bad = table["answer"].map(letter).isna()
    if bad.any():
        values = sorted({str(v) for v in table.loc[bad, "answer"]})[:3]
        return [
            f"column 'answer' has {bad.sum()} of {len(table)} values that are not a letter A-D, bare or in "
            f"parentheses (e.g. {values}); fix the data"
        ]
    forms = table["answer"].map(prompts.gpqa_answer_form).value_counts().to_dict()
    print(f"gpqa answer forms (letter shown as X): {forms}")
    return []


def check_rows(table: pd.DataFrame, prompt_format: str) -> None:
    """Every row must render to a training prompt with a real target: missing targets and wrong column
    types fail here, not in training."""
    from workflow_scripts.lib import prompts

    problems = target_problems(table, prompt_format)
    if problems:
        raise ValueError("; ".join(problems))
    for row in table.to_dict("records"):
        try:
            prompts.render(prompt_format, row)
        except (KeyError, IndexError, TypeError, ValueError, SyntaxError, AttributeError) as error:
            raise ValueError(
                f"row item_id={row.get('item_id')!r} does not fit prompt_format {prompt_format!r} "
                f"({type(error).__name__}: {error}); fix the data or the dataset's prompt_format"
            ) from None


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True, help="JSON: {hub, name, split} or {path, split}")
    parser.add_argument("--prompt-format", help="check every row renders with this format")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    table = normalize(load_source(json.loads(args.source)))
    if args.prompt_format:
        check_rows(table, args.prompt_format)
    atomic_write_parquet(table, args.out)
    print(f"wrote {len(table)} rows, columns {list(table.columns)} to {args.out}")


if __name__ == "__main__":
    main()
