"""Tables, intervals, heatmap matrices and figures from synthetic cells of known values."""

import json

import numpy as np
import pandas as pd
import pytest

from tests.support import synthetic_cells
from workflow_scripts.lib import cell_table, config_files
from workflow_scripts.steps import aggregation, plots


def bootstrap(**changes) -> aggregation.Bootstrap:
    """The study's interval settings (the schema's `statistics` defaults), with changes."""
    return aggregation.Bootstrap.from_statistics(config_files.schema_defaults("statistics"), **changes)


# Per-question answers (1 = correct) of one test bin with 10 questions: base, then train bins 0..2.
ANSWERS = {
    "base": [1, 1, 0, 0, 0, 1, 0, 0, 1, 0],  # 0.4
    "0": [1, 1, 1, 1, 0, 1, 1, 0, 1, 1],  # 0.8
    "1": [1, 1, 0, 0, 0, 1, 0, 0, 1, 0],  # 0.4 (identical answers to base)
    "2": [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],  # 0.1
}
IDS = [f"q{k}" for k in range(10)]


def write_bin(folder, test_bin=0, answers=ANSWERS, dataset="d"):
    paths = []
    for train, correct in answers.items():
        path = folder / "cells" / "m" / dataset / f"train-{train}" / f"test-{test_bin}.json"
        synthetic_cells.write_cell(path, "m", dataset, train, test_bin, np.array(correct), IDS)
        paths.append(path)
    return paths


def test_table_values_changes_and_intervals_are_exact(tmp_path):
    table = aggregation.tidy_table(write_bin(tmp_path), bootstrap(resamples=2000), {"d": "acc,none"})
    assert list(table.columns) == aggregation.COLUMNS
    assert len(table) == 4 * 2  # 4 rows (base + 3 bins) x 2 metrics (acc, acc_norm)
    acc = table[table.metric == "acc"].set_index("row_label")
    assert acc.index.tolist() == ["base", "0", "1", "2"]
    assert acc["headline"].all() and not table[table.metric == "acc_norm"]["headline"].any()
    np.testing.assert_allclose(acc["value"], [0.4, 0.8, 0.4, 0.1])
    np.testing.assert_allclose(acc["base_value"], 0.4)
    np.testing.assert_allclose(acc.loc[["0", "1", "2"], "change_vs_base"], [0.4, 0.0, -0.3])
    assert np.isnan(acc.loc["base", "change_vs_base"]) and np.isnan(acc.loc["base", "change_ci_low"])
    # Identical answers: every paired resample has exactly zero change, so the interval is [0, 0].
    assert (acc.loc["1", "change_ci_low"], acc.loc["1", "change_ci_high"]) == (0.0, 0.0)
    assert not acc.loc["1", "significant"]
    # Bin 0 answers right wherever base does, and 4 more: every paired resample gains >= 0, so the
    # interval stays at or above 0 (above: the 2.5% quantile of 4 gains out of 10 draws is > 0).
    assert acc.loc["0", "change_ci_low"] > 0 and acc.loc["0", "significant"]
    for train, row in acc.iterrows():
        assert row.ci_low <= row.value <= row.ci_high
        assert 0.0 <= row.ci_low and row.ci_high <= 1.0


def test_bootstrap_is_seeded_and_independent_of_what_is_aggregated_with_it(tmp_path):
    one = write_bin(tmp_path / "a", test_bin=0)
    both = one + write_bin(tmp_path / "a", test_bin=1)
    alone = aggregation.tidy_table(one, bootstrap(resamples=500))
    again = aggregation.tidy_table(list(reversed(one)), bootstrap(resamples=500))
    together = aggregation.tidy_table(both, bootstrap(resamples=500))
    pd.testing.assert_frame_equal(alone, again)
    pd.testing.assert_frame_equal(alone, together[together.test_bin == 0].reset_index(drop=True))


def test_list_scores_are_pooled_like_lm_eval(tmp_path):
    """ifeval's instruction-level accuracy: a list of scores per question, pooled over all of them."""
    path = tmp_path / "cells/m/ifeval/train-base/test-0.json"
    path.parent.mkdir(parents=True)
    scores = [[True, False, True], [True], [False, False], [True, True, True, True]]  # 7 / 10
    path.with_suffix(".samples.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "item_id": f"q{k}",
                    "target": "",
                    "inst_level_strict_acc,none": s,
                    "prompt_level_strict_acc,none": all(s),
                }
            )
            + "\n"
            for k, s in enumerate(scores)
        )
    )
    metrics = {"inst_level_strict_acc,none": 0.7, "prompt_level_strict_acc,none": 0.25}
    path.write_text(
        json.dumps(
            {"model": "m", "dataset": "ifeval", "train": "base", "test_bin": 0, "task": "t", "n": 4, "metrics": metrics}
        )
    )
    ids, found = aggregation.read_question_scores(aggregation.samples_path(path))
    assert ids == ["q0", "q1", "q2", "q3"]
    sums, counts = found["inst_level_strict_acc,none"]
    np.testing.assert_array_equal(sums, [2, 1, 0, 4])
    np.testing.assert_array_equal(counts, [3, 1, 2, 4])
    every_question_once = np.ones((1, 4))
    assert aggregation.resampled_scores(sums[None], counts[None], every_question_once)[0, 0] == pytest.approx(0.7)
    table = aggregation.tidy_table([path], bootstrap())
    assert table.set_index("metric").loc["inst_level_strict_acc", "ci_low"] < 0.7


def _coverage(true_mean, n, replicates, rng, paired=False):
    """Share of simulated cells whose 95% interval holds the true value (the real bootstrap code)."""
    hits = 0
    for _ in range(replicates):
        if paired:  # base right with p=0.5; training fixes a wrong answer with p=0.3, breaks a right one with p=0.1
            base = rng.random(n) < 0.5
            trained = np.where(base, rng.random(n) >= 0.1, rng.random(n) < 0.3)
            sums = np.vstack([trained, base]).astype(float)
        else:
            sums = (rng.random((1, n)) < true_mean).astype(float)
        estimates = aggregation.resampled_scores(sums, np.ones_like(sums), aggregation.resample_counts(n, 1000, rng))
        if paired:
            estimates = estimates[:1] - estimates[1:]
        low, high = aggregation.percentile_interval(estimates, 0.95)
        hits += bool(low[0] <= true_mean <= high[0])
    return hits / replicates


def test_bootstrap_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(2026)
    # 300 replicates: the coverage estimate's standard error is ~1.3 points around 95%. The percentile
    # bootstrap of a proportion runs a little below nominal at n = 100 (~94%).
    assert 0.90 <= _coverage(0.6, 100, 300, rng) <= 0.985
    assert 0.90 <= _coverage(0.5 * 0.9 + 0.5 * 0.3 - 0.5, 100, 300, rng, paired=True) <= 0.985


def test_missing_or_corrupt_files_are_named(tmp_path):
    paths = write_bin(tmp_path)
    aggregation.samples_path(paths[1]).unlink()
    with pytest.raises(ValueError, match="train-0/test-0.samples.jsonl is missing"):
        aggregation.tidy_table(paths, bootstrap())
    bad = tmp_path / "broken.json"
    bad.write_text('{"model": "m"')
    with pytest.raises(ValueError, match="broken.json"):
        aggregation.tidy_table([bad], bootstrap())


def grid_table(tmp_path, models=("m1", "m2"), dataset="d", n_bins=4):
    paths = synthetic_cells.write_grid(tmp_path / dataset, list(models), [dataset], n_bins, 60, seed=3)
    return aggregation.tidy_table(paths, bootstrap(resamples=300), {dataset: "acc,none"})


def test_heatmap_matrices_are_exact(tmp_path):
    cells = write_bin(tmp_path, 0) + write_bin(tmp_path, 1, answers={k: v[::-1] for k, v in ANSWERS.items()})
    found = plots.matrices(aggregation.tidy_table(cells, bootstrap(resamples=300), {"d": "acc,none"}))
    assert found.accuracy.index.tolist() == ["base", "0", "1", "2"] and found.accuracy.columns.tolist() == [0, 1]
    np.testing.assert_allclose(found.accuracy.to_numpy(), [[0.4, 0.4], [0.8, 0.8], [0.4, 0.4], [0.1, 0.1]])
    np.testing.assert_allclose(found.change.to_numpy(), [[0.4, 0.4], [0.0, 0.0], [-0.3, -0.3]])
    assert found.significant.to_numpy()[1].tolist() == [False, False]
    # The figures draw what the table marks as the headline metric (from the config, via aggregate).
    with pytest.raises(
        ValueError,
        match=r"no row of the table is marked as the headline metric \(it has \['acc,none', 'acc_norm,none'\]\)",
    ):
        plots.matrices(aggregation.tidy_table(cells, bootstrap(), {"d": "exact_match,none"}))


def test_distance_rows_average_over_train_bins(tmp_path):
    table = grid_table(tmp_path)
    rows = plots.distance_rows([table])
    assert sorted(rows["distance"].unique()) == [-3, -2, -1, 0, 1, 2, 3]
    m1 = rows[rows.model == "m1"]
    assert len(m1[m1.distance == 0]) == 4 and len(m1[m1.distance == 3]) == 1
    acc = table[(table.model == "m1") & (table.metric == "acc")]
    one_easier = [acc[(acc.row_label == str(t)) & (acc.test_bin == t - 1)]["change_vs_base"].item() for t in (1, 2, 3)]
    assert m1[m1.distance == -1]["change_vs_base"].mean() == pytest.approx(np.mean(one_easier))


def assert_image(path, min_bytes=10_000, min_size=(400, 300)):
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes, path
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_size[0] and height >= min_size[1], (path, width, height)
    assert pixels[..., :3].std() > 0.05, f"{path} is blank"
    assert path.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", path


def test_every_figure_is_a_sensible_image(tmp_path):
    tables = {d: grid_table(tmp_path, dataset=d) for d in ("arc", "gsm8k")}
    one = tables["arc"][tables["arc"].model == "m1"]
    plots.draw_pair(one, "m1", "arc", tmp_path / "change", tmp_path / "accuracy", dpi=80, annotate=True)
    plots.draw_distance([tables["arc"]], "arc", tmp_path / "distance", dpi=80, seed=0)
    limit = plots.draw_model_grid(
        {d: t[t.model == "m1"] for d, t in tables.items()}, "m1", tmp_path / "grid", dpi=80, annotate=True
    )
    records = {str(b): {"loss_per_step": [{"step": s, "loss": 2.0 / (s + b)} for s in range(1, 11)]} for b in range(4)}
    plots.draw_loss(records, "m1", "arc", tmp_path / "loss", dpi=80, eval_split="all")
    for name in ("change", "accuracy", "distance", "grid", "loss"):
        assert_image(tmp_path / f"{name}.png")
    changes = [plots.matrices(t[t.model == "m1"]).change for t in tables.values()]
    assert limit == pytest.approx(max(np.abs(c.to_numpy()).max() for c in changes))  # one shared scale


def test_non_significant_cells_are_faded(tmp_path):
    """The same change is drawn paler when its interval contains 0."""
    import matplotlib.pyplot as plt

    change = pd.DataFrame([[0.2, 0.2]], index=["0"], columns=[0, 1])
    significant = pd.DataFrame([[True, False]], index=["0"], columns=[0, 1])
    fig, ax = plt.subplots()
    rows = pd.DataFrame({"train_kind": ["bin"], "train_bin": [0]}, index=["0"])
    plots._heatmap(ax, change, significant, rows, plt.get_cmap("RdBu"), plt.Normalize(-0.3, 0.3), "+.1f", True, 0)
    colours = ax.images[0].get_array()
    plt.close(fig)
    strong, faded = colours[0, 0, :3], colours[0, 1, :3]
    assert faded.min() > strong.min() + 0.3  # closer to white
    assert np.allclose(1 - faded, plots.MUTED * (1 - strong))


# ---- every cell of a run: seeds, in-context rows, evaluation modes --------------------------------


def write_labelled(folder, name, correct, test_bin=0, dataset="d"):
    """A cell as the evaluate rule writes it: row name in the path, its labels in the file."""

    path = folder / "cells" / "m" / dataset / f"train-{name}" / f"test-{test_bin}.json"
    synthetic_cells.write_cell(path, "m", dataset, name, test_bin, np.array(correct), IDS)
    return path


# Bin 0 over three seeds (0.8, 0.6, 0.7: mean 0.7, sample std 0.1) and an in-context row of bin 0.
SEEDED = {
    "base": ANSWERS["base"],  # 0.4
    "0": [1, 1, 1, 1, 0, 1, 1, 0, 1, 1],  # 0.8
    "0-seed43": [1, 1, 1, 0, 0, 1, 0, 0, 1, 1],  # 0.6
    "0-seed44": [1, 1, 1, 1, 0, 1, 0, 0, 1, 1],  # 0.7
    "icl2-bin0": [1, 1, 0, 1, 0, 1, 0, 0, 1, 0],  # 0.5: the base answers plus q3
}


def seeded_table(folder, **changes):
    paths = [write_labelled(folder, name, correct) for name, correct in SEEDED.items()]
    return aggregation.tidy_table(paths, bootstrap(**changes), {"d": "acc,none"})


def test_every_seed_and_in_context_row_is_a_labelled_row_paired_with_base(tmp_path):
    table = seeded_table(tmp_path, resamples=1000)
    acc = table[table.metric == "acc"]
    assert acc["row_label"].tolist() == ["base", "0", "0", "0", "icl2-bin0"]  # base, bins, then in-context
    assert acc["seed"].isna().tolist() == [True, False, False, False, False]  # the base model has no seed
    assert acc["seed"].dropna().tolist() == [42, 43, 44, 42]
    assert acc["train_kind"].tolist() == ["base", "bin", "bin", "bin", "in_context"]
    assert acc["in_context_k"].dropna().tolist() == [2] and set(acc["eval_split"]) == {"all"}
    np.testing.assert_allclose(acc["value"], [0.4, 0.8, 0.6, 0.7, 0.5])
    np.testing.assert_allclose(acc["base_value"], 0.4)  # every seed pairs with the one base row
    np.testing.assert_allclose(acc["change_vs_base"].iloc[1:], [0.4, 0.2, 0.3, 0.1])
    icl = acc[acc.row_label == "icl2-bin0"].iloc[0]
    # Right wherever base is right, plus one question: every paired resample gains 0 or 0.1.
    assert 0.0 <= icl.change_ci_low and icl.change_ci_high <= 0.3 + 1e-12
    # Adding seeds and in-context rows leaves the study rows' intervals as they were.
    study = aggregation.tidy_table(
        write_bin(tmp_path / "study", answers={k: SEEDED[k] for k in ("base", "0")}),
        bootstrap(resamples=1000),
        {"d": "acc,none"},
    )
    study_acc = study[study.metric == "acc"].set_index("row_label")
    for train in ("base", "0"):
        row = acc[(acc.row_label == train) & (acc.seed.fillna(42) == 42)].iloc[0]
        for column in ("ci_low", "ci_high", "change_ci_low", "change_ci_high"):
            assert row[column] == study_acc.loc[train, column] or np.isnan(row[column])


def test_heldout_and_whole_bin_cells_are_never_paired(tmp_path):
    paths = [
        write_labelled(tmp_path, name, ANSWERS[key])
        for name, key in (("base", "base"), ("0", "0"), ("base-heldout", "2"), ("0-heldout", "1"))
    ]
    acc = aggregation.tidy_table(paths, bootstrap(resamples=200)).query("metric == 'acc'")
    heldout = acc[acc.eval_split == "heldout"].set_index("row_label")
    assert heldout.loc["0", "base_value"] == pytest.approx(0.1)  # base-heldout, not base
    assert heldout.loc["0", "change_vs_base"] == pytest.approx(0.3)
    assert acc[acc.eval_split == "all"].set_index("row_label").loc["0", "change_vs_base"] == pytest.approx(0.4)


def test_csv_round_trip_keeps_the_labels(tmp_path):
    table = seeded_table(tmp_path, resamples=100)
    table.to_csv(tmp_path / "t.csv", index=False)
    again = cell_table.read_table(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(table, again, check_dtype=False)
    assert str(again["seed"].dtype) == "Int64" and again["row_label"].tolist() == table["row_label"].tolist()


def test_seed_table_has_exact_means_spreads_and_averaged_intervals(tmp_path):
    from workflow_scripts.steps import seed_summary

    table = seeded_table(tmp_path, resamples=500)
    seeds = seed_summary.seed_table(table)
    acc = seeds[seeds.metric == "acc"].set_index("row_label")
    assert acc.index.tolist() == ["base", "0", "icl2-bin0"]
    cell = acc.loc["0"]
    assert (cell.n_seeds, cell.seeds) == (3, "42,43,44")
    assert cell["mean"] == pytest.approx(0.7) and cell["std"] == pytest.approx(0.1)
    assert cell["range"] == pytest.approx(0.2) and cell["change_mean"] == pytest.approx(0.3)
    assert cell["change_std"] == pytest.approx(0.1) and cell["base_value"] == pytest.approx(0.4)
    per_seed = table[(table.metric == "acc") & (table.row_label == "0")]
    assert cell["ci_low"] == pytest.approx(per_seed["ci_low"].mean())
    assert cell["change_ci_high"] == pytest.approx(per_seed["change_ci_high"].mean())
    assert cell["significant"] == bool(cell["change_ci_low"] > 0 or cell["change_ci_high"] < 0)
    base = acc.loc["base"]
    assert (base.n_seeds, base.seeds, base["mean"]) == (1, "", pytest.approx(0.4)) and np.isnan(base["std"])
    assert acc.loc["icl2-bin0", "change_mean"] == pytest.approx(0.1)


def test_seed_table_of_one_seed_is_the_tidy_table(tmp_path):
    from workflow_scripts.steps import seed_summary

    table = aggregation.tidy_table(write_bin(tmp_path), bootstrap(resamples=200))
    seeds = seed_summary.seed_table(table)
    assert len(seeds) == len(table) and set(seeds["n_seeds"]) == {1}
    for column, source in (
        ("mean", "value"),
        ("ci_low", "ci_low"),
        ("change_mean", "change_vs_base"),
        ("change_ci_high", "change_ci_high"),
        ("significant", "significant"),
    ):
        np.testing.assert_array_equal(seeds[column].to_numpy(dtype=float), table[source].to_numpy(dtype=float))


def test_heatmaps_average_seeds_and_add_in_context_rows(tmp_path):
    found = plots.matrices(seeded_table(tmp_path, resamples=200))
    assert found.accuracy.index.tolist() == ["base", "0", "icl2-bin0"] and found.n_seeds == 3
    np.testing.assert_allclose(found.accuracy[0].to_numpy(), [0.4, 0.7, 0.5])
    np.testing.assert_allclose(found.change[0].to_numpy(), [0.3, 0.1])


def test_heatmap_marks_come_from_the_label_columns(tmp_path):
    """The diagonal outline (train_bin) and the line above the in-context rows (train_kind) follow the
    rows' label columns, not their names."""
    import matplotlib.pyplot as plt

    found = plots.matrices(seeded_table(tmp_path, resamples=100))
    assert found.rows.loc[["0", "icl2-bin0"], "train_kind"].tolist() == ["bin", "in_context"]

    def marks(rows):
        fig, ax = plt.subplots()
        plots._heatmap(
            ax, found.change, found.significant, rows, plt.get_cmap("RdBu"), plt.Normalize(-1, 1), "+.1f", 0, 0
        )
        outlined = sorted(int(p.get_y() + 0.5) for p in ax.patches)
        separators = [line.get_ydata()[0] for line in ax.lines]
        plt.close(fig)
        return outlined, separators

    assert marks(found.rows) == ([0, 1], [0.5])  # both rows learned from test bin 0; in-context row last
    relabelled = found.rows.assign(train_bin=[pd.NA, 1, 0], train_kind=["base", "bin", "bin"])
    assert marks(relabelled) == ([1], [])  # row "0" now says bin 1 (not a column here); no in-context row


def png_title(path):
    from PIL import Image

    return Image.open(path).info["Title"]


@pytest.mark.parametrize(
    "eval_split, mode", [("all", "scored on all items of each bin"), ("heldout", "scored on held-out items only")]
)
def test_every_figure_names_its_evaluation_mode(tmp_path, eval_split, mode):
    table = seeded_table(tmp_path, resamples=100).assign(eval_split=eval_split)
    plots.draw_pair(table, "m", "d", tmp_path / "change", tmp_path / "accuracy", dpi=60, annotate=True)
    plots.draw_distance([table], "d", tmp_path / "distance", dpi=60, seed=0)
    plots.draw_model_grid({"d": table}, "m", tmp_path / "grid", dpi=60, annotate=True)
    plots.draw_loss({"0": {"loss_per_step": [{"step": 1, "loss": 1.0}]}}, "m", "d", tmp_path / "loss", 60, eval_split)
    for name in ("change", "accuracy", "distance", "grid", "loss"):
        assert mode in png_title(tmp_path / f"{name}.png"), name
        assert (tmp_path / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert "mean over 3 seeds" in png_title(tmp_path / "change.png")
    with pytest.raises(ValueError, match="mixes"):
        plots.matrices(pd.concat([table, table.assign(eval_split="all" if eval_split == "heldout" else "heldout")]))
