"""Figures from the tidy tables (aggregation.py), each written as PNG and PDF.

- pair:       per (model, dataset): change vs the zero-shot base model (train bin x test bin, diverging
              colours centred at 0) and absolute accuracy with the base model's row on top;
- distance:   per dataset: change as a function of bin distance (test bin - train bin), one line per
              model, mean and 95% interval over the train bins at each distance;
- model-grid: per model: the change heatmaps of every dataset on one shared colour scale;
- loss:       per (model, dataset): the training loss of every train bin, from its training.json.

Every figure names the evaluation mode that made it (eval_split: "scored on all items of each bin" or
"scored on held-out items only"). With several seeds the heatmaps show the mean over seeds; in-context
rows (`icl4-bin3`: the base model with 4 examples of bin 3 in its prompt) come below the trained rows.

In the heatmaps, the cell tested on the bin a row learned from (the diagonal) is outlined, and a cell
whose change is not significant (its bootstrap interval contains 0) is drawn faded with a grey label, so
the colour a reader sees first is the colour of a change the data support.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from workflow_scripts.lib.cell_table import read_table  # noqa: E402

# Slide-readable defaults: large type, no chart junk.
plt.rcParams.update({"font.size": 12, "axes.titlesize": 13, "axes.labelsize": 12, "figure.dpi": 100})
MUTED = 0.25  # a non-significant cell keeps this share of its colour (the rest is white)


MODES = {"all": "scored on all items of each bin", "heldout": "scored on held-out items only"}
TRAINED_ON = {"all": "trained on whole bins", "heldout": "trained on each bin's training part"}


class Matrices(NamedTuple):
    accuracy: pd.DataFrame  # rows: base, 0..n-1 (train bins), then in-context rows; columns: test bins
    change: pd.DataFrame  # rows: train bins, then in-context rows; columns: test bins
    significant: pd.DataFrame  # same shape as change: its interval excludes 0
    rows: pd.DataFrame  # per row label (accuracy's index): its train_kind, train_bin and in_context_k
    n_seeds: int = 1  # the most seeds any row was averaged over


def eval_split_of(table: pd.DataFrame) -> str:
    """The one evaluation mode of a table's rows (a table of cells made before labels: the study's)."""
    splits = set(table["eval_split"].dropna()) if "eval_split" in table.columns else set()
    if len(splits) > 1:
        raise ValueError(f"a figure shows one eval_split; the table mixes {sorted(splits)}")
    return splits.pop() if splits else "all"


def mode_label(table: pd.DataFrame) -> str:
    return MODES[eval_split_of(table)]


# What names a row of a figure, and what it is (cell_names.labels): the seeds of a row share them.
ROW_COLUMNS = ["row_label", "train_kind", "train_bin", "in_context_k"]


def seed_means(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per (model, row label, test bin): value, change and their intervals averaged over seeds
    (the seeds table's choice, see seed_summary.seed_table); significant again from the averaged interval."""
    columns = ["value", "change_vs_base", "change_ci_low", "change_ci_high"]
    if "seed" not in rows.columns or not rows.duplicated(["model", "row_label", "test_bin"]).any():
        return rows, 1
    # dropna=False: the base row's train_bin and in_context_k are empty and must still group.
    grouped = rows.groupby(["model", "dataset", *ROW_COLUMNS, "test_bin"], sort=False, dropna=False)
    means = grouped[columns].mean().reset_index()
    means["significant"] = (means["change_ci_low"] > 0) | (means["change_ci_high"] < 0)
    return means, int(grouped.size().max())


def headline_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows the aggregate step marked as the dataset's headline metric (its `headline` column: the
    config's datasets.<name>.headline_metric reaches the figures through the table only)."""
    rows = table[table["headline"].astype(bool)]
    if rows.empty:
        available = sorted(set(table["metric"] + "," + table["filter"]))
        raise ValueError(
            f"no row of the table is marked as the headline metric (it has {available}); fix: set the dataset's "
            "headline_metric to one of them and re-run its aggregate job"
        )
    return rows


def headline_name(table: pd.DataFrame) -> str:
    """'metric,filter' of the headline rows, as the figures label them."""
    rows = headline_rows(table)
    return ", ".join(sorted(set(rows["metric"] + "," + rows["filter"])))


def matrices(table: pd.DataFrame) -> Matrices:
    from workflow_scripts.lib.cell_table import row_order

    eval_split_of(table)
    rows, n_seeds = seed_means(headline_rows(table))
    kinds = rows.drop_duplicates("row_label").set_index("row_label")[ROW_COLUMNS[1:]]
    order = sorted(kinds.index, key=lambda label: row_order(*kinds.loc[label]))

    def pivot(column):
        return rows.pivot(index="row_label", columns="test_bin", values=column).reindex(order)

    accuracy = pivot("value")
    change = accuracy.drop(index="base") - accuracy.loc["base"]
    significant = pivot("significant").drop(index="base").fillna(False).astype(bool)
    return Matrices(accuracy, change, significant, kinds.reindex(order), n_seeds)


def subtitle(table: pd.DataFrame, found: Matrices) -> str:
    """The evaluation mode, and the number of seeds where cells are means."""
    seeds = f"; mean over {found.n_seeds} seeds" if found.n_seeds > 1 else ""
    return mode_label(table) + seeds


def figure_title(fig) -> str:
    """The figure's title text (suptitle, then each panel's title), one line."""
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    texts += [ax.get_title() for ax in fig.axes]
    return " | ".join(" ".join(text.split()) for text in texts if text)


def save(fig, stem, dpi: int) -> None:
    """stem.png and stem.pdf (the PDF for papers, the PNG for the report and slides). Both carry the
    title text in their metadata ("Title"), so a reader (or a test) can tell the mode without pixels."""
    metadata = {"Title": figure_title(fig)}
    fig.savefig(f"{stem}.png", dpi=dpi, bbox_inches="tight", metadata=metadata)
    fig.savefig(f"{stem}.pdf", bbox_inches="tight", metadata=metadata)
    plt.close(fig)


def _heatmap(
    ax,
    matrix: pd.DataFrame,
    significant: pd.DataFrame | None,
    rows: pd.DataFrame,
    cmap,
    norm,
    label_format: str,
    annotate: bool,
    diagonal_row_offset: int,
    font_size: float = 10,
):
    """Draw a matrix as coloured cells; faded where not significant; returns a mappable for a colorbar.

    rows: train_kind and train_bin per row label of `matrix` (Matrices.rows): where the diagonal is and
    where the in-context rows begin."""
    values = matrix.to_numpy(dtype=float)
    colours = cmap(norm(np.nan_to_num(values)))
    faded = np.zeros(values.shape, dtype=bool)
    if significant is not None:  # rows of `significant` are the last rows of `matrix`
        faded[diagonal_row_offset:] = ~significant.to_numpy(dtype=bool)
    colours[faded, :3] = 1 - MUTED * (1 - colours[faded, :3])
    colours[~np.isfinite(values)] = (0.9, 0.9, 0.9, 1.0)
    ax.imshow(colours, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    ax.set_yticks(range(matrix.shape[0]), [str(r) for r in matrix.index])
    if annotate:
        size = font_size if matrix.shape[1] <= 10 else 0.8 * font_size
        # Labels stay legible on any cell: white on dark colours, grey (normal weight) on faded cells.
        luminance = colours[..., :3] @ np.array([0.299, 0.587, 0.114])
        for (i, j), value in np.ndenumerate(values):
            if np.isfinite(value):
                colour = "0.4" if faded[i, j] else ("white" if luminance[i, j] < 0.5 else "black")
                ax.text(
                    j,
                    i,
                    format(100 * value, label_format),
                    ha="center",
                    va="center",
                    fontsize=size,
                    color=colour,
                    fontweight="normal" if faded[i, j] else "bold",
                )
    columns = [str(c) for c in matrix.columns]
    labels = rows.loc[matrix.index]
    for i, source in enumerate(labels["train_bin"]):
        if i >= diagonal_row_offset and not pd.isna(source) and str(source) in columns:
            ax.add_patch(plt.Rectangle((columns.index(str(source)) - 0.5, i - 0.5), 1, 1, fill=False, lw=2, ec="black"))
    trained = int((labels["train_kind"] != "in_context").sum())
    if 0 < trained < matrix.shape[0]:  # the in-context rows apart from the trained ones
        ax.axhline(trained - 0.5, color="white", lw=3)
    return matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)


def change_limit(*changes: pd.DataFrame) -> float:
    """Half-range of a symmetric colour scale: the largest |change| (at least 1 point)."""
    largest = max((float(np.nanmax(np.abs(c.to_numpy(dtype=float)))) for c in changes if c.size), default=0.0)
    return max(largest if np.isfinite(largest) else 0.0, 0.01)


def draw_pair(
    table: pd.DataFrame,
    model: str,
    dataset: str,
    change_stem,
    accuracy_stem,
    dpi: int,
    annotate: bool,
) -> Matrices:
    found = matrices(table)
    headline_metric = headline_name(table)
    n_bins, n_rows = found.accuracy.shape[1], found.accuracy.shape[0]
    size = (max(6.0, 2.5 + 0.75 * n_bins), max(4.5, 1.8 + 0.6 * n_rows))
    mode = subtitle(table, found)

    fig, ax = plt.subplots(figsize=size)
    limit = change_limit(found.change)
    norm = matplotlib.colors.Normalize(-limit, limit)
    mappable = _heatmap(
        ax, found.change, found.significant, found.rows, plt.get_cmap("RdBu"), norm, "+.1f", annotate, 0
    )
    fig.colorbar(mappable, ax=ax, label="change vs zero-shot (points)", format=lambda x, _: f"{100 * x:+.0f}")
    ax.set(
        xlabel="test bin (0 = easiest)",
        ylabel="trained on bin (icl<k>-bin<b>: k examples in prompt)",
        title=f"{model} / {dataset}: change vs zero-shot\n{mode}\n{headline_metric}; faded: 95% CI contains 0",
    )
    save(fig, change_stem, dpi)

    fig, ax = plt.subplots(figsize=size)
    norm = matplotlib.colors.Normalize(0.0, 1.0)
    mappable = _heatmap(
        ax, found.accuracy, found.significant, found.rows, plt.get_cmap("viridis"), norm, ".1f", annotate, 1
    )
    ax.axhline(0.5, color="white", lw=3)  # the base row apart from the trained rows
    fig.colorbar(mappable, ax=ax, label=f"{headline_metric} (%)", format=lambda x, _: f"{100 * x:.0f}")
    ax.set(
        xlabel="test bin (0 = easiest)",
        ylabel="trained on bin (base = zero-shot)",
        title=f"{model} / {dataset}: accuracy\n{mode}\nfaded: not significantly different from zero-shot",
    )
    save(fig, accuracy_stem, dpi)
    return found


def distance_rows(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Trained rows of the headline metric (means over seeds) with distance = test bin - train bin.

    In-context rows are left out: the figure is about how far training carries."""
    rows = pd.concat([headline_rows(t) for t in tables], ignore_index=True)
    rows = rows[rows["train_kind"] == "bin"]
    rows = seed_means(rows)[0].copy()
    rows["distance"] = rows["test_bin"] - rows["train_bin"].astype(int)
    return rows


def draw_distance(tables: list[pd.DataFrame], dataset: str, stem, dpi: int, seed: int) -> pd.DataFrame:
    """Change vs bin distance, per model: mean over train bins and its 95% bootstrap interval."""
    import seaborn as sns

    rows = distance_rows(tables)
    headline_metric = headline_name(pd.concat(tables, ignore_index=True))
    mode = mode_label(pd.concat(tables, ignore_index=True))
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.axhline(0, color="0.4", lw=1)
    ax.axvline(0, color="0.8", lw=1, ls=":")
    sns.lineplot(
        data=rows.assign(points=100 * rows["change_vs_base"]),
        x="distance",
        y="points",
        hue="model",
        marker="o",
        errorbar=("ci", 95),
        seed=seed,
        ax=ax,
    )
    distances = sorted(rows["distance"].unique())
    ax.set_xticks(distances)
    ax.set(
        xlabel="bin distance (test bin - train bin; > 0: harder than training)",
        ylabel="change vs zero-shot (points)",
        title=f"{dataset}: change vs zero-shot by bin distance\n{mode}\n"
        f"{headline_metric}; band: 95% CI over train bins",
    )
    ax.legend(title="model", fontsize=9)
    save(fig, stem, dpi)
    return rows.groupby(["model", "distance"])["change_vs_base"].mean().reset_index()


def draw_model_grid(
    tables: dict[str, pd.DataFrame],
    model: str,
    stem,
    dpi: int,
    annotate: bool,
) -> float:
    """Every dataset's change heatmap for one model, on one colour scale; returns its half-range."""
    found = {dataset: matrices(table) for dataset, table in tables.items()}
    limit = change_limit(*(m.change for m in found.values()))
    norm = matplotlib.colors.Normalize(-limit, limit)
    columns = min(4, len(found))
    rows = -(-len(found) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 4.4 * rows), squeeze=False)
    mappable = None
    for ax, (dataset, m) in zip(axes.flat, found.items()):
        mappable = _heatmap(ax, m.change, m.significant, m.rows, plt.get_cmap("RdBu"), norm, "+.0f", annotate, 0, 7)
        ax.set(title=f"{dataset} ({headline_name(tables[dataset])})", xlabel="test bin", ylabel="trained on bin")
    for ax in axes.flat[len(found) :]:
        ax.axis("off")
    fig.colorbar(mappable, ax=axes, label="change vs zero-shot (points)", format=lambda x, _: f"{100 * x:+.0f}")
    mode = mode_label(pd.concat(list(tables.values()), ignore_index=True))
    seeds = max(m.n_seeds for m in found.values())
    fig.suptitle(
        f"{model}: change vs zero-shot, every dataset (shared scale; faded: 95% CI contains 0)\n"
        f"{mode}" + (f"; mean over {seeds} seeds" if seeds > 1 else "")
    )
    save(fig, stem, dpi)
    return limit


def loss_history(record: dict) -> pd.DataFrame:
    return pd.DataFrame(record.get("loss_per_step") or [], columns=["step", "loss"])


def read_training_record(model_dir) -> dict:
    """A trained model's training.json (written by the training job, copied by its conversion), with
    the shape loss_history needs: loss_per_step a list of {step, loss} objects."""
    from workflow_scripts.lib.io_utils import read_json

    path = Path(model_dir) / "training.json"
    fix = f"fix: delete {model_dir} and run snakemake again to re-train that row"
    record = read_json(path, "training record", fix)
    history = record.get("loss_per_step") or []
    if not isinstance(history, list) or not all(
        isinstance(entry, dict) and {"step", "loss"} <= entry.keys() for entry in history
    ):
        raise ValueError(f"training record {path}: loss_per_step is not a list of {{step, loss}} objects; {fix}")
    return record


def draw_loss(records: dict[str, dict], model: str, dataset: str, stem, dpi: int, eval_split: str) -> None:
    """One training-loss line per train bin (records: train bin -> its training.json)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, max(len(records), 1)))
    for colour, (train_bin, record) in zip(colours, sorted(records.items(), key=lambda kv: int(kv[0]))):
        history = loss_history(record)
        ax.plot(
            history["step"],
            history["loss"],
            marker="o" if len(history) < 30 else None,
            ms=3,
            color=colour,
            label=f"bin {train_bin}",
        )
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # steps are whole numbers
    ax.set(
        xlabel="optimizer step",
        ylabel="training loss (completion tokens)",
        title=f"{model} / {dataset}: training loss per train bin\n{TRAINED_ON[eval_split]} (run {MODES[eval_split]})",
    )
    ax.legend(title="trained on", fontsize=9, ncol=2)
    save(fig, stem, dpi)


def _stem(path: str) -> str:
    return str(Path(path).with_suffix(""))


def main(argv=None) -> None:
    from workflow_scripts.lib.io_utils import one_line_errors

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dpi", type=int, required=True)
    parser.add_argument("--no-annotate", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    pair = commands.add_parser("pair", help="heatmaps of one (model, dataset)")
    pair.add_argument("--table", required=True)
    pair.add_argument("--model", required=True)
    pair.add_argument("--dataset", required=True)
    pair.add_argument("--change-png", required=True, help="the PDF goes beside it")
    pair.add_argument("--accuracy-png", required=True)
    distance = commands.add_parser("distance", help="change vs bin distance of one dataset")
    distance.add_argument("--tables", nargs="+", required=True)
    distance.add_argument("--dataset", required=True)
    distance.add_argument("--seed", type=int, required=True, help="the band's bootstrap (config statistics.seed)")
    distance.add_argument("--png", required=True)
    grid = commands.add_parser("model-grid", help="every dataset's change heatmap of one model")
    grid.add_argument("--table", nargs=2, action="append", required=True, metavar=("DATASET", "CSV"))
    grid.add_argument("--model", required=True)
    grid.add_argument("--png", required=True)
    loss = commands.add_parser("loss", help="training loss curves of one (model, dataset)")
    loss.add_argument("--model-dir", nargs=2, action="append", required=True, metavar=("TRAIN_BIN", "DIR"))
    loss.add_argument("--model", required=True)
    loss.add_argument("--dataset", required=True)
    loss.add_argument("--png", required=True)
    loss.add_argument("--eval-split", choices=sorted(MODES), required=True)
    args = parser.parse_args(argv)
    annotate = not args.no_annotate

    @one_line_errors
    def run():
        if args.command == "pair":
            draw_pair(
                read_table(args.table),
                args.model,
                args.dataset,
                _stem(args.change_png),
                _stem(args.accuracy_png),
                args.dpi,
                annotate,
            )
        elif args.command == "distance":
            draw_distance(
                [read_table(p) for p in args.tables],
                args.dataset,
                _stem(args.png),
                args.dpi,
                args.seed,
            )
        elif args.command == "model-grid":
            tables = {dataset: read_table(path) for dataset, path in args.table}
            draw_model_grid(tables, args.model, _stem(args.png), args.dpi, annotate)
        else:
            records = {b: read_training_record(d) for b, d in args.model_dir}
            draw_loss(records, args.model, args.dataset, _stem(args.png), args.dpi, args.eval_split)

    run()


if __name__ == "__main__":
    main()
