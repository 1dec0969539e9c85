"""Cell files -> one tidy table with bootstrap confidence intervals.

A row per (model, dataset, eval split, row label, seed, test bin, metric, filter); ``row_label`` is a bin
number, ``base`` (the zero-shot model) or an in-context row (``icl4-bin3``), and the labels every cell file
carries (see cell_names.labels: eval_split, train_kind, train_bin, in_context_k, seed) are columns, so
every cell the run makes (all seeds, in-context rows) is a row. ``value`` is lm-eval's score of the cell;
its interval comes from resampling the cell's questions (the ``.samples.jsonl`` beside each cell). Each
trained and in-context row also carries the base model's value on the same test bin and eval split (the
base model has no seed: every seed pairs with the one base row) and the change against it, with an
interval from the *paired* bootstrap: trained and base scores are resampled with the same draw of
questions, so the question-to-question spread that both share cancels out of the change, as in a paired
test.

The bootstrap is vectorised: for one test bin, a (resamples x questions) matrix of draw counts is drawn
once, and every cell and metric of that bin is resampled by one matrix product. A metric that scores a
question as a list (ifeval's instruction-level accuracy) is a ratio (sum of scores / number of scores)
and is resampled as one, which reproduces lm-eval's pooled value exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import zlib

# The bootstrap's matrix products are small (tens of rows x ~100 questions x 1,000 resamples); BLAS
# threads only contend for the cores (measured 10x slower on a busy 2-core machine). Set before numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.lib import cell_names, layout
from workflow_scripts.lib.cell_table import read_table, row_orders, typed
from workflow_scripts.lib.io_utils import atomic_write_parquet, atomic_write_text, one_line_errors

# The labels of a row beyond model/dataset/row_label/test bin, appended last so that the study's columns keep
# their places. train_bin, in_context_k and seed are empty where they do not apply (the base model).
LABELS = ["eval_split", "train_kind", "train_bin", "in_context_k", "seed"]
COLUMNS = [
    "model",
    "dataset",
    "row_label",
    "test_bin",
    "task",
    "metric",
    "filter",
    "headline",
    "value",
    "n",
    "ci_low",
    "ci_high",
    "base_value",
    "change_vs_base",
    "change_ci_low",
    "change_ci_high",
    "significant",
    *LABELS,
]


@dataclass(frozen=True)
class Bootstrap:
    """The interval settings: config `statistics` (its defaults, the study's, are the schema's)."""

    resamples: int
    seed: int
    confidence: float

    @classmethod
    def from_statistics(cls, statistics: dict, **changes) -> Bootstrap:
        """From a config's `statistics` section (outside a run: config_files.schema_defaults("statistics"))."""
        keys = {"resamples": "bootstrap_resamples", "seed": "seed", "confidence": "confidence"}
        return cls(**{field: statistics[key] for field, key in keys.items()} | changes)


# ---- reading cells ------------------------------------------------------------------------------


def samples_path(cell_path) -> Path:
    """The per-question file evaluation.py writes beside a cell."""
    return layout.samples(Path(cell_path))


def read_cell(path) -> dict:
    try:
        cell = json.loads(Path(path).read_text())
        # A cell scored before cells carried every label, or before `train` was named `row_label`: its
        # labels follow from its row label (the tags it lacks were the study's: all items, seed 42).
        named = cell_names.labels(str(cell["row_label"] if "row_label" in cell else cell["train"]))
        labels = {key: cell.get(key, named[key]) for key in LABELS}
        return {
            "model": cell["model"],
            "dataset": cell["dataset"],
            "row_label": named["row_label"],
            "test_bin": int(cell["test_bin"]),
            "task": cell["task"],
            "n": int(cell["n"]),
            "metrics": {key: float(value) for key, value in cell["metrics"].items() if "," in key},
            **labels,
        }
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise ValueError(f"cell file {path} is unreadable or incomplete ({error}); fix: delete it to re-run that cell")


def read_question_scores(path) -> tuple[list[str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Question ids, and per 'metric,filter' key the per-question (sum of scores, number of scores).

    A question without a score for a key gets (0, 0): it counts for neither sum nor number."""
    try:
        text = Path(path).read_text()
        # One json.loads over the whole file: ~3x faster than a call per line on 6,160 files.
        rows = json.loads("[" + ",".join(line for line in text.splitlines() if line.strip()) + "]")
        ids = [str(row["item_id"]) for row in rows]
    except FileNotFoundError:
        raise ValueError(f"per-question file {path} is missing; fix: delete its cell file to re-run that cell")
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"per-question file {path} is unreadable ({error}); fix: delete its cell file to re-run it")
    scores = {}
    for key in sorted(set().union(*rows)):
        if "," not in key or key.startswith("response,"):
            continue
        values = [row.get(key) for row in rows]
        try:
            flat = np.array(values, dtype=float)  # numbers and booleans; None -> nan
        except (TypeError, ValueError):
            flat = None
        if flat is not None and flat.ndim == 1:
            present = np.isfinite(flat)
            scores[key] = (np.where(present, flat, 0.0), present.astype(float))
            continue
        pairs = [_score_pair(value) for value in values]  # a list of scores per question (ifeval)
        if any(count for _, count in pairs):
            scores[key] = (np.array([s for s, _ in pairs]), np.array([c for _, c in pairs]))
    return ids, scores


def _score_pair(value) -> tuple[float, float]:
    if isinstance(value, list) and all(isinstance(v, (bool, int, float)) for v in value):
        return float(sum(value)), float(len(value))
    if isinstance(value, (bool, int, float)):
        return float(value), 1.0
    return 0.0, 0.0  # not a score (text, None)


# ---- the bootstrap ------------------------------------------------------------------------------


def resample_counts(n_questions: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """How often each question is drawn in each resample: (resamples x questions), rows sum to n."""
    # Count draws per (resample, question) in one bincount over offset indices (int32: half the time).
    index = np.int32 if resamples * n_questions < 2**31 else np.int64
    drawn = rng.integers(0, n_questions, size=(resamples, n_questions), dtype=index)
    drawn += (n_questions * np.arange(resamples, dtype=index))[:, None]
    return np.bincount(drawn.ravel(), minlength=resamples * n_questions).reshape(resamples, n_questions).astype(float)


def resampled_scores(sums: np.ndarray, counts: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(rows x questions) score sums and counts -> (rows x resamples) resampled ratio means."""
    stacked = np.vstack([sums, counts]) @ draws.T  # one product for numerators and denominators
    with np.errstate(invalid="ignore", divide="ignore"):
        return stacked[: len(sums)] / stacked[len(sums) :]


def percentile_interval(estimates: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.full(len(estimates), np.nan), np.full(len(estimates), np.nan)
    finite = np.isfinite(estimates).all(axis=1)  # the usual case; np.percentile is vectorised
    if finite.any():
        low[finite], high[finite] = np.percentile(estimates[finite], [tail, 100 - tail], axis=1)
    partly = ~finite & np.isfinite(estimates).any(axis=1)  # a resample that drew no scored question
    if partly.any():
        low[partly], high[partly] = np.nanpercentile(estimates[partly], [tail, 100 - tail], axis=1)
    return low, high


def group_seed(bootstrap: Bootstrap, model: str, dataset: str, test_bin: int) -> list[int]:
    """One fixed stream per (model, dataset, test bin): a table's intervals do not depend on which other
    cells were aggregated with it, or in which order."""
    return [bootstrap.seed, zlib.crc32(model.encode()), zlib.crc32(dataset.encode()), int(test_bin)]


def _bootstrap_test_bin(cells: list[dict], bootstrap: Bootstrap) -> list[dict]:
    """The rows of every cell of one (model, dataset, eval split, test bin), with intervals (paired with
    `base`). Seeds and in-context rows answer the same questions as the study's rows, so they share the
    draws and adding them changes no interval of the study's rows."""
    first = cells[0]
    question_ids = sorted({q for cell in cells for q in cell["question_ids"]})
    position = {q: i for i, q in enumerate(question_ids)}
    rng = np.random.default_rng(group_seed(bootstrap, first["model"], first["dataset"], first["test_bin"]))
    draws = resample_counts(len(question_ids), bootstrap.resamples, rng) if question_ids else None

    rows, sums, counts = [], [], []
    for cell in cells:
        where = np.fromiter((position[q] for q in cell["question_ids"]), dtype=int, count=len(cell["question_ids"]))
        for key, value in sorted(cell["metrics"].items()):
            metric, filter_name = key.split(",", 1)
            rows.append(
                {
                    "model": cell["model"],
                    "dataset": cell["dataset"],
                    "row_label": cell["row_label"],
                    "test_bin": cell["test_bin"],
                    "task": cell["task"],
                    "metric": metric,
                    "filter": filter_name,
                    "value": value,
                    "n": cell["n"],
                    "_key": key,
                    **{label: cell[label] for label in LABELS},
                }
            )
            row_sums, row_counts = np.zeros(len(question_ids)), np.zeros(len(question_ids))
            if key in cell["scores"]:
                row_sums[where], row_counts[where] = cell["scores"][key]
            sums.append(row_sums)
            counts.append(row_counts)
    if draws is None or not rows:
        estimates = np.full((len(rows), max(bootstrap.resamples, 1)), np.nan)
    else:
        estimates = resampled_scores(np.array(sums), np.array(counts), draws)
        estimates[np.array(counts).sum(axis=1) == 0] = np.nan  # no per-question scores: no interval
    low, high = percentile_interval(estimates, bootstrap.confidence)

    # The change is resampled paired: trained and base estimates of one resample share its questions.
    base_of = {row["_key"]: i for i, row in enumerate(rows) if row["train_kind"] == "base"}
    if len(base_of) < sum(row["train_kind"] == "base" for row in rows):
        raise ValueError(f"two base cells for {first['model']}/{first['dataset']} test bin {first['test_bin']}")
    change_low, change_high = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    paired = [
        (i, base_of[row["_key"]])
        for i, row in enumerate(rows)
        if row["train_kind"] != "base" and row["_key"] in base_of
    ]
    if paired:
        mine, theirs = np.array(paired).T
        changes = estimates[mine] - estimates[theirs]
        change_low[mine], change_high[mine] = percentile_interval(changes, bootstrap.confidence)
    for i, row in enumerate(rows):
        base_index = base_of.get(row.pop("_key"))
        base_value = rows[base_index]["value"] if base_index is not None else np.nan
        # A base row's change against itself is no result: left empty, like its interval.
        change = row["value"] - base_value if row["train_kind"] != "base" else np.nan
        row.update(
            ci_low=low[i],
            ci_high=high[i],
            base_value=base_value,
            change_vs_base=change,
            change_ci_low=change_low[i],
            change_ci_high=change_high[i],
        )
    return rows


def tidy_table(cell_files, bootstrap: Bootstrap, headline_metrics: dict[str, str] | None = None) -> pd.DataFrame:
    """Every metric of every cell as a row, with its interval and its change vs the base model.

    headline_metrics: dataset -> 'metric,filter', marked in the `headline` column."""
    groups: dict[tuple, list[dict]] = {}
    for path in cell_files:
        cell = read_cell(path)
        cell["question_ids"], cell["scores"] = read_question_scores(samples_path(path))
        # Held-out and whole-bin cells score different questions: never resampled or paired together.
        groups.setdefault((cell["model"], cell["dataset"], cell["eval_split"], cell["test_bin"]), []).append(cell)
    rows = [row for key in sorted(groups) for row in _bootstrap_test_bin(groups[key], bootstrap)]
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("headline", "significant")])
    headline_metrics = headline_metrics or {}
    table["headline"] = (table["metric"] + "," + table["filter"]) == table["dataset"].map(headline_metrics)
    # Significant: the change's interval excludes zero (no interval, e.g. a base row: not significant).
    table["significant"] = (table["change_ci_low"] > 0) | (table["change_ci_high"] < 0)
    table["n"] = table["n"].astype(int)
    table["test_bin"] = table["test_bin"].astype(int)
    return sort_rows(typed(table[COLUMNS]))


def sort_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, eval split, metric, filter): rows in row_order, each row's seeds in order
    (the base model, without a seed, first), then test bins."""
    sort_keys = ["model", "dataset", "eval_split", "metric", "filter", "_order", "_seed", "test_bin"]
    return (
        table.assign(_order=row_orders(table), _seed=table["seed"].astype("Float64").fillna(-1))
        .sort_values(sort_keys, kind="stable")
        .drop(columns=["_order", "_seed"])
        .reset_index(drop=True)
    )


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", nargs="*", default=[], help="cell json files (per-pair tables)")
    parser.add_argument("--tables", nargs="*", default=[], help="per-pair csv tables to concatenate")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--parquet")
    parser.add_argument("--headline-metric", action="append", default=[], metavar="DATASET=METRIC,FILTER")
    parser.add_argument("--resamples", type=int, help="with --cells: config statistics.bootstrap_resamples")
    parser.add_argument("--seed", type=int, help="with --cells: config statistics.seed")
    parser.add_argument("--confidence", type=float, help="with --cells: config statistics.confidence")
    args = parser.parse_args(argv)
    if args.cells and None in (args.resamples, args.seed, args.confidence):
        parser.error("--cells needs --resamples, --seed and --confidence (the config's `statistics`)")
    if args.cells:
        headline = dict(item.split("=", 1) for item in args.headline_metric)
        table = tidy_table(args.cells, Bootstrap(args.resamples, args.seed, args.confidence), headline)
    else:
        table = pd.concat([read_table(path) for path in args.tables], ignore_index=True)
    atomic_write_text(table.to_csv(index=False), args.csv)
    if args.parquet:
        atomic_write_parquet(table, args.parquet)
    print(f"{len(table)} rows -> {args.csv}")


if __name__ == "__main__":
    main()
