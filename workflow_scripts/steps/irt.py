"""Fit item difficulty from a response table (1PL or 2PL IRT) and join it to the dataset by item id.

Input: a long table ``subject, item_id, correct`` (0/1; pairs may be missing), e.g. one row per model
and question of a leaderboard. Output: the dataset with ``irt_difficulty``, ``irt_difficulty_se``,
``irt_discrimination`` and ``irt_quantile`` columns (rows whose item has too few responses are left
out and listed in the report), a per-item table, and a JSON report.

The estimator is a joint maximum a posteriori fit of abilities and item parameters on the masked
(subjects x items) matrix, by alternating damped Newton steps: abilities given items, then items given
abilities; each block's Hessian is diagonal (2x2 per item for 2PL), so a step is a few elementwise passes
over the matrix. Model: P(correct) = sigmoid(a_j (theta_i - b_j)); 1PL fixes a_j = 1 (Rasch, as py-irt's
1PL), 2PL fits a_j per item. Priors: theta ~ N(0, 1) (sets the scale), b ~ N(0, 3^2), log a ~ N(0, 1);
they keep an item that everyone (or no one) answered right at a finite, extreme difficulty.
Why not marginal ML by EM on a fixed Gauss-Hermite grid: measured on 500 x 2,000 (1PL, true slope 1)
with 31 nodes it converged to a slope of 0.68, because with thousands of items per subject each
ability posterior is narrower than the grid spacing; a fine enough grid costs more than this whole fit.
Standard errors: from the log posterior's curvature at the estimate, abilities held fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from workflow_scripts.lib.io_utils import (
    atomic_write_json,
    atomic_write_parquet,
    one_line_errors,
    read_csv,
    read_parquet,
)

MODELS = ("1pl", "2pl")
RESPONSE_COLUMNS = ("subject", "item_id", "correct")
DIFFICULTY_PRIOR_SD = 3.0
LOG_SLOPE_PRIOR_SD = 1.0
COLUMNS = {  # what the joined dataset gets; `irt_quantile` is the one a quantile_key names
    "difficulty": "irt_difficulty",
    "difficulty_se": "irt_difficulty_se",
    "discrimination": "irt_discrimination",
    "quantile": "irt_quantile",
}


# ---- reading and checking a response table ------------------------------------------------------


def read_responses(path: str) -> pd.DataFrame:
    """A long response table from parquet or CSV, checked: the three columns, binary `correct`,
    one answer per (subject, item)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"response table {path!r} does not exist")
    extension = os.path.splitext(path)[1].lower()
    # irt.responses names the file, or the responses step made it from lm-eval logs.
    fix = "fix: correct or regenerate it (made from lm-eval logs by the workflow: delete it and run snakemake again)"
    if extension == ".parquet":
        table = read_parquet(path, "response table", fix)
    elif extension in (".csv", ".tsv"):
        sep = "\t" if extension == ".tsv" else ","
        table = read_csv(path, "response table", fix, sep=sep, dtype={"subject": str, "item_id": str})
    else:
        raise ValueError(f"response table {path!r}: use a .parquet or .csv file (or a folder of lm-eval logs)")
    return check_responses(table, path)


def check_responses(table: pd.DataFrame, name: str = "response table") -> pd.DataFrame:
    missing = [c for c in RESPONSE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {missing} (has {list(table.columns)}); "
            "fix: a long table with columns subject, item_id, correct"
        )
    table = table[list(RESPONSE_COLUMNS)].copy()
    if table["subject"].isna().any() or table["item_id"].isna().any():
        raise ValueError(
            f"{name}: empty subject or item_id in {int(table[['subject', 'item_id']].isna().any(axis=1).sum())} "
            "row(s); fix: drop those rows"
        )
    correct = pd.to_numeric(table["correct"], errors="coerce")
    bad = table.loc[~correct.isin([0, 1]), "correct"]
    if len(bad):
        raise ValueError(
            f"{name}: column 'correct' must be 0 or 1 (missing pairs are simply absent rows); "
            f"found {len(bad)} other value(s), e.g. {bad.astype(str).unique()[:3].tolist()}; "
            "fix: threshold scores to 0/1 and drop missing answers"
        )
    table["subject"] = table["subject"].astype(str)
    table["item_id"] = table["item_id"].astype(str)
    table["correct"] = correct.astype(np.int8)
    duplicated = table.duplicated(["subject", "item_id"])
    if duplicated.any():
        example = table.loc[duplicated, ["subject", "item_id"]].iloc[0].tolist()
        raise ValueError(
            f"{name}: {int(duplicated.sum())} repeated (subject, item_id) pair(s), e.g. {example}; "
            "fix: keep one answer per subject and item"
        )
    if table.empty:
        raise ValueError(f"{name} has no rows; fix: point irt.responses at a table with answers")
    return table


@dataclass
class ResponseMatrix:
    correct: np.ndarray  # subjects x items, 1 where answered right, 0 otherwise (also where missing)
    observed: np.ndarray  # subjects x items, 1 where an answer exists
    subjects: list = field(default_factory=list)
    items: list = field(default_factory=list)


def to_matrix(table: pd.DataFrame) -> ResponseMatrix:
    """Dense masked matrices; rows and columns sorted by name, so the input's row order cannot matter."""
    subjects = sorted(table["subject"].unique())
    items = sorted(table["item_id"].unique())
    rows = pd.Index(subjects).get_indexer(table["subject"])
    cols = pd.Index(items).get_indexer(table["item_id"])
    correct = np.zeros((len(subjects), len(items)), dtype=np.float32)
    observed = np.zeros_like(correct)
    correct[rows, cols] = table["correct"].to_numpy()
    observed[rows, cols] = 1.0
    return ResponseMatrix(correct, observed, subjects, items)


# ---- the estimator ---------------------------------------------------------------------------------


@dataclass
class Fit:
    difficulty: np.ndarray
    difficulty_se: np.ndarray
    discrimination: np.ndarray
    ability: np.ndarray  # EAP ability per subject
    iterations: int
    converged: bool
    last_step: float  # largest parameter change in the last iteration
    seconds: float


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free


def fit_irt(correct, observed=None, model: str = "1pl", tol: float = 1e-4, max_iter: int = 200) -> Fit:
    """Joint MAP of abilities and item parameters by alternating damped Newton steps (module docstring)."""
    if model not in MODELS:
        raise ValueError(f"IRT model {model!r} is not one of {list(MODELS)}")
    start = time.perf_counter()
    y = np.asarray(correct, dtype=np.float32)
    m = np.ones_like(y) if observed is None else np.asarray(observed, dtype=np.float32)
    y = y * m
    n_subjects, n_items = y.shape
    answered_by_subject = m.sum(1)
    # Start from the logits of the shares of correct answers: already close for 1PL.
    item_share = (y.sum(0) + 0.5) / (m.sum(0) + 1.0)
    subject_share = (y.sum(1) + 0.5) / (answered_by_subject + 1.0)
    b = -np.log(item_share / (1 - item_share)).astype(np.float64)
    theta = np.log(subject_share / (1 - subject_share)).astype(np.float64)
    theta = (theta - theta.mean()) / max(theta.std(), 1e-6)
    log_a = np.zeros(n_items)

    def residual_and_weight():
        a = np.exp(log_a).astype(np.float32)
        p = _sigmoid(a[None, :] * (theta.astype(np.float32)[:, None] - b.astype(np.float32)[None, :]))
        return m * (y - p), m * p * (1 - p), a

    converged, iteration, change = False, 0, np.inf
    for iteration in range(1, max_iter + 1):
        previous = (theta, b, log_a)
        # Abilities given the items: one Newton step per subject (prior N(0, 1)).
        residual, weight, a = residual_and_weight()
        grad = residual @ a - theta
        hess = weight @ (a * a) + 1.0
        step_theta = np.clip(grad / hess, -1.0, 1.0)
        theta = theta + step_theta
        # Items given the abilities: a Newton step per item on (b) or (b, log a).
        residual, weight, a = residual_and_weight()
        a = a.astype(np.float64)
        r_sum, w_sum = residual.sum(0, dtype=np.float64), weight.sum(0, dtype=np.float64)
        grad_b = -a * r_sum - b / DIFFICULTY_PRIOR_SD**2
        hess_bb = a * a * w_sum + 1 / DIFFICULTY_PRIOR_SD**2
        if model == "2pl":
            t32 = theta.astype(np.float32)
            r_t = (t32 @ residual).astype(np.float64)  # sum_i r_ij theta_i
            w_t = (t32 @ weight).astype(np.float64)
            w_tt = ((t32 * t32) @ weight).astype(np.float64)
            grad_la = a * (r_t - b * r_sum) - log_a / LOG_SLOPE_PRIOR_SD**2
            hess_ll = a * a * (w_tt - 2 * b * w_t + b * b * w_sum) + 1 / LOG_SLOPE_PRIOR_SD**2
            hess_bl = -a * a * (w_t - b * w_sum)
            det = hess_bb * hess_ll - hess_bl**2
            step_b = (hess_ll * grad_b - hess_bl * grad_la) / det
            step_la = (hess_bb * grad_la - hess_bl * grad_b) / det
            log_a = log_a + np.clip(step_la, -0.5, 0.5)
        else:
            step_b = grad_b / hess_bb
        b = b + np.clip(step_b, -1.0, 1.0)  # damping: no jump of more than one logit per step
        if model == "2pl":
            # The likelihood is unchanged by theta -> (theta - mu) / sd with b -> (b - mu) / sd and
            # a -> a sd; alternating steps crawl along that ridge, so put the abilities back on N(0, 1).
            mu, sd = theta.mean(), theta.std()
            theta, b, log_a = (theta - mu) / sd, (b - mu) / sd, log_a + np.log(sd)
        # Measured after the rescaling: a fixed point of (steps + rescaling) is the answer.
        change = max(
            np.abs(theta - previous[0]).max(), np.abs(b - previous[1]).max(), np.abs(log_a - previous[2]).max()
        )
        if change < tol:
            converged = True
            break

    se = _standard_errors(theta, b, log_a, y, m, model)
    a = np.exp(log_a) if model == "2pl" else np.ones(n_items)
    return Fit(b, se, a, theta, iteration, converged, float(change), time.perf_counter() - start)


def _standard_errors(theta, b, log_a, y, m, model):
    """Per-item SE of the difficulty from the curvature of the log posterior at the estimate, abilities
    held at theirs (for 2PL the (b, log a) block is inverted, so the slope's uncertainty counts)."""
    a = np.exp(log_a)
    p = _sigmoid(a.astype(np.float32)[None, :] * (theta.astype(np.float32)[:, None] - b.astype(np.float32)[None, :]))
    weight = m * p * (1 - p)
    w_sum = weight.sum(0, dtype=np.float64)
    hess_bb = a * a * w_sum + 1 / DIFFICULTY_PRIOR_SD**2
    if model == "1pl":
        return 1 / np.sqrt(hess_bb)
    t32 = theta.astype(np.float32)
    w_t = (t32 @ weight).astype(np.float64)
    w_tt = ((t32 * t32) @ weight).astype(np.float64)
    hess_ll = a * a * (w_tt - 2 * b * w_t + b * b * w_sum) + 1 / LOG_SLOPE_PRIOR_SD**2
    hess_bl = -a * a * (w_t - b * w_sum)
    return np.sqrt(hess_ll / (hess_bb * hess_ll - hess_bl**2))


# ---- synthetic data with known parameters (tests, benchmark, demo sample) --------------------------


def simulate(n_subjects: int, n_items: int, model: str = "1pl", missing: float = 0.0, seed: int = 0, difficulty=None):
    """Responses drawn from a 1PL/2PL model: abilities and difficulties N(0, 1) (or the given
    difficulties), 2PL slopes log-normal(0, 0.3). Returns (correct, observed, truth)."""
    rng = np.random.default_rng(seed)
    ability = rng.normal(0, 1, n_subjects)
    b = rng.normal(0, 1, n_items) if difficulty is None else np.asarray(difficulty, dtype=float)
    a = np.exp(rng.normal(0, 0.3, len(b))) if model == "2pl" else np.ones(len(b))
    p = _sigmoid(a[None, :] * (ability[:, None] - b[None, :]))
    correct = (rng.random(p.shape) < p).astype(np.float32)
    observed = (rng.random(p.shape) >= missing).astype(np.float32)
    return correct * observed, observed, {"ability": ability, "difficulty": b, "discrimination": a}


def to_long(correct, observed, subjects=None, items=None) -> pd.DataFrame:
    rows, cols = np.nonzero(observed)
    subjects = np.asarray(subjects if subjects is not None else [f"s{i}" for i in range(correct.shape[0])])
    items = np.asarray(items if items is not None else [f"i{j}" for j in range(correct.shape[1])])
    return pd.DataFrame(
        {"subject": subjects[rows], "item_id": items[cols], "correct": correct[rows, cols].astype(np.int8)}
    )


# ---- the workflow step -----------------------------------------------------------------------------


def quantiles(values: np.ndarray) -> np.ndarray:
    """Rank-based quantile in [0, 1] (0 = easiest); tied difficulties share a quantile (and a bin)."""
    if len(values) == 1:
        return np.zeros(1)
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return (ranks - ranks.min()) / (ranks.max() - ranks.min()) if ranks.max() > ranks.min() else np.zeros(len(values))


def bin_stability(
    matrix: ResponseMatrix, binned: np.ndarray, model: str, n_bins: int, rounds: int, seed: int = 0
) -> np.ndarray:
    """Per item, the share of bootstrap refits (subjects drawn with replacement) that put it in the
    same bin as the fit on all subjects: how much its bin depends on which models happened to answer."""
    from workflow_scripts.lib.bins import assign_bins

    def bins_of(correct, observed):
        difficulty = fit_irt(correct, observed, model=model).difficulty[binned]
        return assign_bins(quantiles(difficulty), n_bins)

    rng = np.random.default_rng(seed)
    reference = bins_of(matrix.correct, matrix.observed)
    same = np.zeros(len(reference))
    for _ in range(rounds):
        rows = rng.integers(0, matrix.correct.shape[0], matrix.correct.shape[0])
        same += bins_of(matrix.correct[rows], matrix.observed[rows]) == reference
    return same / rounds


def fit_items(
    responses: pd.DataFrame, model: str, min_responses: int, bootstrap: int = 0, n_bins: int = 10
) -> tuple[pd.DataFrame, dict]:
    """Per-item table (item_id, n_responses, share_correct, difficulty, SE, discrimination, quantile,
    status; bin_stability with bootstrap rounds) and a report. Items with fewer than min_responses
    answers are fitted with the rest but get no quantile (status `too_few_responses`): never binned."""
    matrix = to_matrix(responses)
    fit = fit_irt(matrix.correct, matrix.observed, model=model)
    n_responses = matrix.observed.sum(0).astype(int)
    share = matrix.correct.sum(0) / np.maximum(n_responses, 1)
    items = pd.DataFrame(
        {
            "item_id": matrix.items,
            "n_responses": n_responses,
            "share_correct": share,
            "difficulty": fit.difficulty,
            "difficulty_se": fit.difficulty_se,
            "discrimination": fit.discrimination,
        }
    )
    status = np.where(
        n_responses < min_responses,
        "too_few_responses",
        np.where(share == 1, "all_correct", np.where(share == 0, "all_wrong", "ok")),
    )
    items["status"] = status
    binned = items["status"] != "too_few_responses"
    items["quantile"] = np.nan
    items.loc[binned, "quantile"] = quantiles(items.loc[binned, "difficulty"].to_numpy())
    if bootstrap:
        items.loc[binned, "bin_stability"] = bin_stability(matrix, binned.to_numpy(), model, n_bins, bootstrap)
    report = {
        "model": model,
        "n_subjects": len(matrix.subjects),
        "n_items": len(matrix.items),
        "n_responses": int(n_responses.sum()),
        "missing_share": round(1 - float(n_responses.sum()) / (len(matrix.subjects) * len(matrix.items)), 6),
        "iterations": fit.iterations,
        "converged": fit.converged,
        "last_step": fit.last_step,
        "fit_seconds": round(fit.seconds, 3),
        "min_responses": min_responses,
        **(
            {
                "bootstrap_rounds": bootstrap,
                "n_bins": n_bins,
                "mean_bin_stability": round(float(items["bin_stability"].mean()), 4),
            }
            if bootstrap
            else {}
        ),
        "too_few_responses": items.loc[~binned, "item_id"].tolist(),
        "all_correct": items.loc[items["status"] == "all_correct", "item_id"].tolist(),
        "all_wrong": items.loc[items["status"] == "all_wrong", "item_id"].tolist(),
    }
    for kind in ("all_correct", "all_wrong"):
        if report[kind]:
            warnings.warn(
                f"{len(report[kind])} item(s) {kind.replace('_', ' ')} by every subject get an extreme "
                f"(prior-bounded) difficulty, e.g. {report[kind][:3]}",
                stacklevel=2,
            )
    if not fit.converged:
        warnings.warn(f"the fit stopped after {fit.iterations} iterations without converging", stacklevel=2)
    return items, report


def check_items_known(responses: pd.DataFrame, data: pd.DataFrame) -> None:
    unknown = sorted(set(responses["item_id"]) - set(data["item_id"].astype(str)))
    if unknown:
        raise ValueError(
            f"response table: {len(unknown)} item_id(s) not in the dataset, e.g. {unknown[:3]}; "
            "fix: item_id must match the dataset's id column (id, doc_id or key; else the row number)"
        )


def join_to_dataset(data: pd.DataFrame, items: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """The dataset rows that got a quantile, with the IRT columns; and the item ids left out."""
    check_items_known(items, data)
    fitted = items.dropna(subset=["quantile"]).set_index("item_id")
    columns = {**COLUMNS, "bin_stability": "irt_bin_stability"} if "bin_stability" in fitted else COLUMNS
    fitted = fitted.rename(columns=columns)[list(columns.values())]
    data = data.drop(columns=[c for c in columns.values() if c in data.columns])
    keys = data["item_id"].astype(str)
    left_out = keys[~keys.isin(fitted.index)].tolist()
    joined = data[keys.isin(fitted.index).to_numpy()].join(fitted, on="item_id")
    return joined.reset_index(drop=True), left_out


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", required=True, help="long table: subject, item_id, correct (parquet/CSV)")
    parser.add_argument("--data", required=True, help="normalized dataset parquet (has item_id)")
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--min-responses", type=int, required=True)
    parser.add_argument(
        "--bootstrap", type=int, default=0, help="refits on resampled subjects to measure bin stability"
    )
    parser.add_argument("--n-bins", type=int, help="the bins whose stability --bootstrap measures (needed with it)")
    parser.add_argument("--out", required=True, help="the dataset with the IRT columns, binnable rows only")
    parser.add_argument("--items-out", required=True, help="per-item table")
    parser.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    if args.bootstrap and args.n_bins is None:
        parser.error("--bootstrap needs --n-bins (the bins whose stability it measures)")

    responses = read_responses(args.responses)
    data = read_parquet(args.data, "dataset table", columns=["item_id"])
    check_items_known(responses, data)  # before the fit: a wrong table fails at once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items, report = fit_items(responses, args.model, args.min_responses, args.bootstrap, args.n_bins)
    for warning in caught:  # one plain line each in the job's log
        print(f"warning: {warning.message}", file=sys.stderr)
    joined, left_out = join_to_dataset(data, items)
    if joined.empty:
        raise ValueError(
            f"no dataset row got an IRT difficulty (every item has < {args.min_responses} responses "
            "or none); fix: lower irt.min_responses or add responses"
        )
    report.update({"dataset_rows": len(data), "binned_rows": len(joined), "rows_left_out": left_out})
    if left_out:
        print(
            f"warning: {len(left_out)} dataset row(s) left out of the bins (fewer than {args.min_responses} "
            f"responses, or none), e.g. {left_out[:3]}; listed in {args.report}",
            file=sys.stderr,
        )
    atomic_write_parquet(items, args.items_out)
    atomic_write_parquet(joined, args.out)
    atomic_write_json(report, args.report)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, list)}))


if __name__ == "__main__":
    main()
