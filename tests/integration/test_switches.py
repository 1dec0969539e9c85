"""The switches beyond the study (eval_split, seeds, in_context) on the demo: the exact jobs each plans,
from scratch and on top of the finished demo run, and one small real run with all three on."""

from __future__ import annotations

import json
import time
from itertools import product
from pathlib import Path

import pandas as pd
import pytest

from tests.support.workflow import demo_config, job, planned_jobs, snakemake
from tests.support.workflow import write_config as write

DATASETS = ("arc", "gsm8k")
BINS = ("0", "1", "2")
SETUP_RULES = {"sample_data", "tiny_model"}  # the demo's offline stand-ins, planned in a fresh folder


def plan(workdir: Path, configfile: str) -> set[tuple[str, frozenset]]:
    """The dry-run's jobs as (rule, wildcards), without `all` and the demo's setup rules."""
    result = snakemake("-n", "--configfile", configfile, workdir=workdir)
    return planned_jobs(result.stdout + result.stderr, leave_out=("all", *SETUP_RULES))


def cells(trains, datasets=DATASETS) -> set:
    """The rows' evaluation: one generate (every test bin) and one score job per row."""
    return {
        job(rule, model="tiny-qwen2", dataset=d, row=t)
        for rule, d, t in product(("generate", "score"), datasets, trains)
    }


def training(train_bins, datasets=DATASETS) -> set:
    return {
        job(rule, model="tiny-qwen2", dataset=d, trained_row=b)
        for rule, d, b in product(("train", "convert"), datasets, train_bins)
    }


def tables_and_figures(datasets=DATASETS) -> set:
    """Everything built from the cells: re-made whenever a cell is added (a seed, an in-context row)."""
    pairs = {job(rule, model="tiny-qwen2", dataset=d) for rule, d in product(("aggregate", "heatmaps"), datasets)}
    summaries = {job("change_by_distance", dataset=d) for d in datasets} | {job("change_grid", model="tiny-qwen2")}
    return pairs | summaries | {job("cell_table"), job("seed_table")}


def reports(datasets=DATASETS) -> set:
    """Tables and figures, and the training-loss figures (built from the first seed's trained models)."""
    return tables_and_figures(datasets) | {job("training_loss", model="tiny-qwen2", dataset=d) for d in datasets}


def data_jobs(datasets=DATASETS) -> set:
    return {job(rule, dataset=d) for rule, d in product(("download", "bin"), datasets)}


def heldout_jobs(datasets=DATASETS) -> set:
    return {job("heldout_split", dataset=d) for d in datasets}


# ---- from scratch: what each switch adds to the demo --------------------------------------------


def test_defaults_plan_the_study_rows_under_their_plain_paths(tmp_path):
    expected = data_jobs() | training(BINS) | cells(("base", *BINS)) | reports()
    assert plan(tmp_path, write(tmp_path, demo_config())) == expected


def test_each_switch_from_scratch(tmp_path):
    heldout = plan(tmp_path, write(tmp_path, demo_config(eval_split="heldout")))
    assert heldout == (
        data_jobs()
        | heldout_jobs()
        | training([f"{b}-heldout" for b in BINS])
        | cells(["base-heldout", *(f"{b}-heldout" for b in BINS)])
        | reports()
    )
    seeds = plan(tmp_path, write(tmp_path, demo_config(seeds=[42, 43, 44])))
    tagged = [f"{b}-seed{s}" for s in (43, 44) for b in BINS]
    assert seeds == data_jobs() | training([*BINS, *tagged]) | cells(["base", *BINS, *tagged]) | reports()
    in_context = plan(tmp_path, write(tmp_path, demo_config(in_context={"k": 2})))
    icl = [f"icl2-bin{b}" for b in BINS]
    assert in_context == data_jobs() | training(BINS) | cells(["base", *BINS, *icl]) | reports()


# ---- on top of the finished demo: a switch plans only what it adds -------------------------------


def test_adding_a_seed_plans_only_that_seed(demo_run, tmp_path):
    planned = plan(demo_run, write(tmp_path, demo_config(seeds=[42, 43])))
    new = [f"{b}-seed43" for b in BINS]
    # The new seed's jobs, and the tables and figures that now read its cells; nothing of seed 42.
    assert planned == training(new) | cells(new) | tables_and_figures()


def test_in_context_rows_cost_only_evaluation_jobs(demo_run, tmp_path):
    planned = plan(demo_run, write(tmp_path, demo_config(in_context={"k": 2})))
    assert planned == cells([f"icl2-bin{b}" for b in BINS]) | tables_and_figures()


def test_heldout_reuses_the_bins_and_keeps_the_study_results(demo_run, tmp_path):
    planned = plan(demo_run, write(tmp_path, demo_config(eval_split="heldout")))
    tagged = [f"{b}-heldout" for b in BINS]
    # No download or bin; today's tables and figures now read the held-out cells.
    assert planned == heldout_jobs() | training(tagged) | cells(["base-heldout", *tagged]) | reports()
    assert (demo_run / "results/demo/cells/tiny-qwen2/arc/train-0/test-0.json").exists()


# ---- one real run with all three on --------------------------------------------------------------


def test_all_switches_together(demo_run, tmp_path):
    """arc, 2 bins of 30, a quarter held out, seeds 42 and 43, 2 examples in context; reuses the demo's
    tiny model and sample data, in a results folder of its own."""
    config = demo_config(
        results_dir="results/demo-switches", n_bins=2, eval_split="heldout", seeds=[42, 43], in_context={"k": 2}
    )
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    configfile = write(tmp_path, config, "switches")
    started = time.time()
    snakemake("--configfile", configfile, "--cores", "2", workdir=demo_run)
    print(f"all switches on (arc, 2 bins, 2 seeds, k=2): {time.time() - started:.0f} s")
    root = demo_run / "results/demo-switches"
    split = json.loads((root / "data/arc/heldout/manifest.json").read_text())["bins"]
    train_ids = {b: set(pd.read_parquet(root / f"data/arc/heldout/train-{b}.parquet").item_id) for b in (0, 1)}
    assert all((split[b]["train"], split[b]["heldout"]) == (22, 8) for b in ("0", "1"))

    rows = [
        "base-heldout",
        *(f"{b}-heldout{s}" for s in ("", "-seed43") for b in (0, 1)),
        *(f"icl2-bin{b}-heldout{s}" for s in ("", "-seed43") for b in (0, 1)),
    ]
    for row, test_bin in product(rows, (0, 1)):
        cell_file = root / f"cells/tiny-qwen2/arc/train-{row}/test-{test_bin}.json"
        cell = json.loads(cell_file.read_text())
        assert cell["eval_split"] == "heldout" and cell["test_bin"] == test_bin
        assert cell["seed"] == (None if row.startswith("base") else 43 if "seed43" in row else 42)
        assert cell["train_kind"] == ("base" if row.startswith("base") else "in_context" if "icl" in row else "bin")
        logged = [json.loads(line) for line in cell_file.with_suffix(".samples.jsonl").read_text().splitlines()]
        # Only held-out items are scored, and never an item any model of this run trained on.
        assert cell["n"] == 8 and sorted(r["item_id"] for r in logged) == split[str(test_bin)]["heldout_ids"]
        assert not {r["item_id"] for r in logged} & (train_ids[0] | train_ids[1])
        if cell["train_kind"] == "in_context":
            assert cell["in_context_k"] == 2 and cell["row_label"] == f"icl2-bin{cell['train_bin']}"
            for r in logged:  # two examples, from the named bin's training part, never the item itself
                assert len(r["in_context_ids"]) == 2 and set(r["in_context_ids"]) <= train_ids[cell["train_bin"]]

    for b in (0, 1):
        records = [
            json.loads((root / f"models/tiny-qwen2/arc/train-{b}-heldout{s}/hf/training.json").read_text())
            for s in ("", "-seed43")
        ]
        assert [r["settings"]["seed"] for r in records] == [42, 43]
        assert all(r["examples"] == 22 for r in records)  # the training part only
        assert records[0]["loss_per_step"] != records[1]["loss_per_step"]  # another seed, another run
    # The tables hold every cell: both seeds and the in-context rows, labelled, scored on held-out items.
    table = pd.read_csv(root / "tables/cells.csv", dtype={"row_label": str})
    assert set(table["row_label"]) == {"base", "0", "1", "icl2-bin0", "icl2-bin1"}
    assert set(table["eval_split"]) == {"heldout"} and set(table["seed"].dropna()) == {42, 43}
    headline = table[table["metric"] == "acc"]
    assert len(headline) == (1 + 2 * 2 + 2 * 2) * 2  # (base + 2 bins x 2 seeds + 2 icl x 2 seeds) x 2 test bins
    seeds = pd.read_csv(root / "tables/seeds.csv", dtype={"row_label": str})
    acc = seeds[seeds["metric"] == "acc"].set_index(["row_label", "test_bin"])
    assert len(acc) == 5 * 2 and set(acc["n_seeds"]) == {1, 2}
    for (train, test_bin), row in acc.iterrows():
        per_seed = headline[(headline["row_label"] == train) & (headline["test_bin"] == test_bin)]["value"]
        assert row["mean"] == pytest.approx(per_seed.mean()) and row["n_seeds"] == len(per_seed)
    from PIL import Image

    title = Image.open(root / "figures/tiny-qwen2/arc/change_vs_base.png").info["Title"]
    assert "scored on held-out items only" in title and "mean over 2 seeds" in title
    again = snakemake("-n", "--configfile", configfile, workdir=demo_run)
    assert "Nothing to be done" in again.stdout + again.stderr
