"""Heatmaps of one (model, dataset): accuracy per (train bin, test bin) with the base model on top, and
the change against the base model, on a diverging scale centred at zero. The diagonal (tested on the
training bin) is outlined.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def matrices(table: pd.DataFrame, metric: str, filter_name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy with rows base, 0..n-1; change vs base with rows 0..n-1), columns = test bins."""
    rows = table[(table["metric"] == metric) & (table["filter"] == filter_name)]
    if rows.empty:
        available = sorted(set(table["metric"] + "," + table["filter"]))
        raise ValueError(f"headline_metric {metric},{filter_name} not in the results; available: {available}")
    accuracy = rows.pivot(index="train", columns="test_bin", values="value")
    order = ["base"] + sorted((t for t in accuracy.index if t != "base"), key=int)
    accuracy = accuracy.reindex(order)
    change = accuracy.drop(index="base") - accuracy.loc["base"]
    return accuracy, change


def _heatmap(matrix: pd.DataFrame, title: str, cmap, vmin, vmax, annotate: bool, diagonal_offset: int, path, dpi):
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 + 0.7 * matrix.shape[1]), max(3.5, 1.5 + 0.5 * matrix.shape[0])))
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index])
    ax.set_xlabel("test bin (0 = easiest)")
    ax.set_ylabel("trained on bin")
    ax.set_title(title)
    if annotate:
        for (i, j), value in np.ndenumerate(matrix.to_numpy(dtype=float)):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    for k in range(min(matrix.shape[0] - diagonal_offset, matrix.shape[1])):
        ax.add_patch(plt.Rectangle((k - 0.5, k + diagonal_offset - 0.5), 1, 1, fill=False, lw=1.5, ec="black"))
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def draw(table: pd.DataFrame, model: str, dataset: str, headline_metric: str, accuracy_png, change_png,
         dpi: int = 150, annotate: bool = True) -> None:  # fmt: skip
    metric, filter_name = headline_metric.split(",", 1)
    accuracy, change = matrices(table, metric, filter_name)
    label = f"{model} / {dataset}\n{headline_metric}"
    _heatmap(accuracy, label, "viridis", 0.0, 1.0, annotate, 1, accuracy_png, dpi)
    limit = max(float(np.nanmax(np.abs(change.to_numpy(dtype=float)))), 1e-6)
    _heatmap(change, f"{label}: change vs zero-shot base", "RdBu", -limit, limit, annotate, 0, change_png, dpi)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", required=True, help="per-(model, dataset) csv from aggregation")
    parser.add_argument("--model", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--headline-metric", required=True, help="metric,filter")
    parser.add_argument("--accuracy-png", required=True)
    parser.add_argument("--change-png", required=True)
    parser.add_argument("--dpi", type=int, default=150)
    parser.add_argument("--no-annotate", action="store_true")
    args = parser.parse_args(argv)
    table = pd.read_csv(args.table, dtype={"train": str})
    draw(table, args.model, args.dataset, args.headline_metric, args.accuracy_png, args.change_png,
         args.dpi, not args.no_annotate)  # fmt: skip


if __name__ == "__main__":
    main()
