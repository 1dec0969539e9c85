"""Our IRT fit (workflow_scripts/steps/irt.py) against py-irt on the same synthetic matrices with known parameters.

Per case (1PL/2PL x sizes x missing share) it prints, and appends as one JSON line to --results:
wall time of each fit, the speed ratio, Spearman and Pearson correlation of the recovered difficulties
with the truth, and the share of items put in their true decile bin (and within one bin of it).
Each case is written as soon as it finishes, so a long run that is stopped keeps what it measured.

Runs in its own environment (`make benchmark-irt`: .venv-irt with py-irt 0.7.1, which needs
Python < 3.12 and an older pandas); py-irt is never a dependency of the workflow.
    OMP_NUM_THREADS=1 .venv-irt/bin/python benchmarks/irt_vs_pyirt.py --sizes 500x2000 --cases 1pl,2pl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from scipy.stats import pearsonr, spearmanr

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from workflow_scripts.steps import irt  # noqa: E402

N_BINS = 10


def deciles(values) -> np.ndarray:
    return np.minimum((irt.quantiles(np.asarray(values)) * N_BINS).astype(int), N_BINS - 1)


def scores(estimate, truth) -> dict:
    estimate_bins, true_bins = deciles(estimate), deciles(truth)
    return {
        "spearman": round(float(spearmanr(estimate, truth)[0]), 4),
        "pearson": round(float(pearsonr(estimate, truth)[0]), 4),
        "true_decile": round(float((estimate_bins == true_bins).mean()), 4),
        "within_one_decile": round(float((np.abs(estimate_bins - true_bins) <= 1).mean()), 4),
    }


def fit_pyirt(correct, observed, model: str, epochs: int) -> np.ndarray:
    """py-irt's default SVI fit (its IrtConfig defaults: 2,000 epochs, lr 0.1, vague priors)."""
    import pyro
    from ordered_set import OrderedSet
    from py_irt.config import IrtConfig
    from py_irt.dataset import Dataset
    from py_irt.training import IrtModelTrainer

    rows, cols = np.nonzero(observed)
    items = [f"i{j}" for j in range(correct.shape[1])]
    subjects = [f"s{i}" for i in range(correct.shape[0])]
    dataset = Dataset(
        item_ids=OrderedSet(items),
        subject_ids=OrderedSet(subjects),
        item_id_to_ix={name: j for j, name in enumerate(items)},
        ix_to_item_id=dict(enumerate(items)),
        subject_id_to_ix={name: i for i, name in enumerate(subjects)},
        ix_to_subject_id=dict(enumerate(subjects)),
        observation_subjects=rows.tolist(),
        observation_items=cols.tolist(),
        observations=correct[rows, cols].astype(float).tolist(),
        training_example=[True] * len(rows),
    )
    pyro.set_rng_seed(0)
    trainer = IrtModelTrainer(
        data_path=None, config=IrtConfig(model_type=model, epochs=epochs), dataset=dataset, verbose=False
    )
    trainer.train()
    return np.asarray(trainer.best_params["diff"], dtype=float)


def run_case(
    model: str, n_subjects: int, n_items: int, missing: float, epochs: int, seed: int, with_pyirt: bool = True
) -> dict:
    correct, observed, truth = irt.simulate(n_subjects, n_items, model, missing, seed=seed)
    start = time.perf_counter()
    ours = irt.fit_irt(correct, observed, model=model)
    ours_seconds = time.perf_counter() - start
    case = {
        "model": model,
        "subjects": n_subjects,
        "items": n_items,
        "missing": missing,
        "seed": seed,
        "threads": os.environ.get("OMP_NUM_THREADS", "all"),
        "ours_seconds": round(ours_seconds, 2),
        "ours_iterations": ours.iterations,
        "ours": scores(ours.difficulty, truth["difficulty"]),
    }
    if not with_pyirt:
        return case
    start = time.perf_counter()
    theirs = fit_pyirt(correct, observed, model, epochs)
    theirs_seconds = time.perf_counter() - start
    # The same record, with py-irt's figures beside ours.
    return {
        **case,
        "pyirt_seconds": round(theirs_seconds, 1),
        "pyirt_epochs": epochs,
        "speedup": round(theirs_seconds / ours_seconds, 1),
        "pyirt": scores(theirs, truth["difficulty"]),
    }


def line(case: dict) -> str:
    ours = case["ours"]
    if "pyirt" not in case:
        return (
            f"{case['model']} {case['subjects']}x{case['items']} missing {case['missing']:.0%}: "
            f"ours {case['ours_seconds']:.2f} s ({case['ours_iterations']} iterations); spearman {ours['spearman']:.4f}; "
            f"pearson {ours['pearson']:.4f}; true decile {ours['true_decile']:.3f}; within one {ours['within_one_decile']:.3f}"
        )
    theirs = case["pyirt"]
    return (
        f"{case['model']} {case['subjects']}x{case['items']} missing {case['missing']:.0%}: "
        f"ours {case['ours_seconds']:.2f} s, py-irt {case['pyirt_seconds']:.1f} s ({case['speedup']:.0f}x); "
        f"spearman {ours['spearman']:.4f} vs {theirs['spearman']:.4f}; pearson {ours['pearson']:.4f} vs {theirs['pearson']:.4f}; "
        f"true decile {ours['true_decile']:.3f} vs {theirs['true_decile']:.3f}; "
        f"within one {ours['within_one_decile']:.3f} vs {theirs['within_one_decile']:.3f}"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="1pl,2pl", help="models, comma-separated")
    parser.add_argument("--sizes", default="500x2000,2000x10000", help="SUBJECTSxITEMS, comma-separated")
    parser.add_argument("--missing", default="0,0.2", help="shares of missing responses, comma-separated")
    parser.add_argument("--epochs", type=int, default=2000, help="py-irt SVI epochs (its default: 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pyirt", action="store_true", help="time our fit only (runs in the workflow's venv too)")
    parser.add_argument(
        "--results", default="benchmarks/out/irt_vs_pyirt.jsonl", help="one JSON line per case, appended"
    )
    args = parser.parse_args(argv)

    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    for model in args.cases.split(","):
        for size in args.sizes.split(","):
            n_subjects, n_items = (int(x) for x in size.lower().split("x"))
            for missing in (float(x) for x in args.missing.split(",")):
                case = run_case(model, n_subjects, n_items, missing, args.epochs, args.seed, not args.skip_pyirt)
                print(line(case), flush=True)
                with open(args.results, "a") as handle:
                    handle.write(json.dumps(case) + "\n")


if __name__ == "__main__":
    main()
