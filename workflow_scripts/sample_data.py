"""Deterministic synthetic sample data with the real dataset schemas, for the offline demo and tests.

The questions are made up (small arithmetic); difficulty grows with the size of the numbers, so the
bins mean something. ``1pl_quantile`` spans exactly [0, 1], so both ends of the bin edges are exercised.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


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


GENERATORS = {"arc": arc_rows, "gsm8k": gsm8k_rows}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", required=True, choices=sorted(GENERATORS))
    parser.add_argument("--out", required=True, help="jsonl file to write")
    parser.add_argument("--rows", type=int, default=60)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    GENERATORS[args.dataset](args.rows).to_json(out, orient="records", lines=True)
    print(f"{args.rows} synthetic {args.dataset} rows written to {out}")


if __name__ == "__main__":
    main()
