"""A rerun touches only stale cells: after one full run, each edit plans exactly the jobs it should.

The run happens in a copy of the repository (a researcher's checkout) with a two-model, two-dataset,
two-bin variant of the demo, so "nothing of the other model / dataset" can fail. Each case makes one
edit, compares the dry-run's set of (rule, wildcards) with the expected set, and undoes the edit.
"""

from __future__ import annotations

import os
import shutil
from itertools import product
from pathlib import Path

import pytest
import yaml

from conftest import REPO, job, planned_jobs, snakemake

MODELS = ["tiny-a", "tiny-b"]
DATASETS = ["arc", "gsm8k"]
BINS = ["0", "1"]
SOURCES = ("Snakefile", "rules", "workflow_scripts", "tasks", "config", "envs")


CHECKOUT: Path | None = None  # set by the fixture: configs are read from the checkout under test


def base_config() -> dict:
    config = yaml.safe_load((CHECKOUT / "config/demo.yaml").read_text())
    config["n_bins"] = 2
    model = config["models"].pop("tiny-qwen2")
    config["models"] = {name: dict(model) for name in MODELS}
    config["pilot"]["model"] = MODELS[0]
    return config


def write_config(checkout: Path, config: dict, name: str) -> str:
    path = checkout / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return f"config/{name}.yaml"


def planned(checkout: Path, configfile: str) -> set[tuple[str, frozenset]]:
    """The dry-run's jobs as (rule, wildcards); the `all` target is not work and is left out."""
    result = snakemake("-n", "--configfile", configfile, workdir=checkout, repo=checkout)
    return planned_jobs(result.stdout + result.stderr, leave_out=("all",))



def cells(models=MODELS, datasets=DATASETS, trains=("base", *BINS), test_bins=BINS) -> set:
    return {job("evaluate", model=m, dataset=d, train=t, test_bin=b)
            for m, d, t, b in product(models, datasets, trains, test_bins)}  # fmt: skip


def training(models=MODELS, datasets=DATASETS, bins=BINS) -> set:
    return {job(rule, model=m, dataset=d, train_bin=b)
            for rule, m, d, b in product(("train", "convert"), models, datasets, bins)}  # fmt: skip


def reports(models=MODELS, datasets=DATASETS) -> set:
    """What new cells of these models x datasets re-make: their tables and heatmaps, the distance
    figure of each of those datasets (all models in it), the grid of each of those models."""
    pairs = {job(rule, model=m, dataset=d) for rule, m, d in product(("aggregate", "heatmaps"), models, datasets)}
    summaries = {job("change_by_distance", dataset=d) for d in datasets} | {job("change_grid", model=m) for m in models}
    return pairs | summaries | {job("cell_table"), job("seed_table")}


def loss_curves(models=MODELS, datasets=DATASETS) -> set:
    return {job("training_loss", model=m, dataset=d) for m, d in product(models, datasets)}


def figures(models=MODELS, datasets=DATASETS) -> set:
    """Every figure job; a figure option (report.*) re-makes these and nothing else."""
    return (
        {job("heatmaps", model=m, dataset=d) for m, d in product(models, datasets)}
        | loss_curves(models, datasets)
        | {job("change_by_distance", dataset=d) for d in datasets}
        | {job("change_grid", model=m) for m in models}
    )


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    global CHECKOUT
    folder = CHECKOUT = tmp_path_factory.mktemp("checkout")
    for name in SOURCES:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / name)
    configfile = write_config(folder, base_config(), "reruns")
    snakemake("--configfile", configfile, "--cores", "2", workdir=folder, repo=folder)
    return folder


def test_nothing_changed_plans_nothing(checkout):
    assert planned(checkout, "config/reruns.yaml") == set()


def test_figure_option_reruns_only_figures(checkout):
    config = base_config()
    config["report"]["figure_dpi"] = 120
    assert planned(checkout, write_config(checkout, config, "case")) == figures()


def test_interval_setting_reruns_tables_and_their_figures_only(checkout):
    config = base_config()
    config["statistics"]["bootstrap_resamples"] = 500
    assert planned(checkout, write_config(checkout, config, "case")) == reports()


def test_evaluation_setting_of_one_dataset(checkout):
    config = base_config()
    config["datasets"]["gsm8k"]["evaluation"] = {"max_gen_toks": 16}
    expected = cells(datasets=["gsm8k"]) | reports(datasets=["gsm8k"])
    assert planned(checkout, write_config(checkout, config, "case")) == expected


def test_training_hyper_parameter_of_one_model(checkout):
    config = base_config()
    config["models"]["tiny-a"]["training"] = {"learning_rate": 2.0e-3}
    expected = (
        training(models=["tiny-a"]) | cells(models=["tiny-a"], trains=BINS) | reports(models=["tiny-a"])
        | loss_curves(models=["tiny-a"])
    )  # fmt: skip
    assert planned(checkout, write_config(checkout, config, "case")) == expected


def test_added_model_plans_only_its_jobs(checkout):
    config = base_config()
    config["models"]["tiny-c"] = dict(config["models"]["tiny-a"])
    # The new model's line joins every dataset's distance figure.
    expected = training(models=["tiny-c"]) | cells(models=["tiny-c"]) | reports(models=["tiny-c"], datasets=DATASETS)
    expected |= loss_curves(models=["tiny-c"])
    assert planned(checkout, write_config(checkout, config, "case")) == expected


def test_added_dataset_plans_only_its_jobs(checkout):
    config = base_config()
    config["datasets"]["arc-copy"] = dict(config["datasets"]["arc"])
    expected = (
        {job("download", dataset="arc-copy"), job("bin", dataset="arc-copy")}
        | training(datasets=["arc-copy"]) | cells(datasets=["arc-copy"]) | reports(datasets=["arc-copy"])
        | loss_curves(datasets=["arc-copy"])
    )  # fmt: skip
    assert planned(checkout, write_config(checkout, config, "case")) == expected


def test_deleted_cell_reruns_that_cell_and_its_aggregates(checkout):
    cell = checkout / "results/demo/cells/tiny-b/arc/train-1/test-0.json"
    saved = checkout / "saved-cell.json"
    shutil.copy2(cell, saved)
    try:
        cell.unlink()
        expected = {job("evaluate", model="tiny-b", dataset="arc", train="1", test_bin="0")} | {
            job("aggregate", model="tiny-b", dataset="arc"), job("heatmaps", model="tiny-b", dataset="arc"),
            job("change_by_distance", dataset="arc"), job("change_grid", model="tiny-b"), job("cell_table"),
            job("seed_table"),
        }  # fmt: skip
        assert planned(checkout, "config/reruns.yaml") == expected
    finally:
        shutil.move(saved, cell)


def edited(path: Path):
    """Context: append a comment to a source file, restore content and timestamps afterwards."""

    class Edit:
        def __enter__(self):
            self.text, self.stat = path.read_text(), path.stat()
            path.write_text(self.text + "\n# an edit\n")

        def __exit__(self, *exc):
            path.write_text(self.text)
            os.utime(path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))

    return Edit()


def test_evaluation_module_edit_reruns_evaluation_only(checkout):
    with edited(checkout / "workflow_scripts/evaluation.py"):
        assert planned(checkout, "config/reruns.yaml") == cells() | reports()


def test_training_module_edit_spares_base_cells(checkout):
    with edited(checkout / "workflow_scripts/training.py"):
        assert planned(checkout, "config/reruns.yaml") == training() | cells(trains=BINS) | reports() | loss_curves()


def test_conversion_code_or_setting_changed_plans_nothing(checkout):
    """A converted model is kept: re-making it would need its deleted ZeRO state, i.e. re-training.
    conversion.json records what made it (`make plan` lists the models made otherwise)."""
    with edited(checkout / "workflow_scripts/conversion.py"):
        assert planned(checkout, "config/reruns.yaml") == set()
    config = base_config()
    config["conversion"]["max_shard_size"] = "1GB"
    assert planned(checkout, write_config(checkout, config, "case")) == set()


def test_how_jobs_run_plans_nothing(checkout):
    """The checkpoint interval and the SLURM requests say how a job runs, not what it makes."""
    config = base_config()
    config["launch"]["checkpoint_minutes"] = 5
    config["cluster"] = {"max_runtime": 60}
    config["resources"]["train"] = {"gpu": 0, "threads": 2}  # sized from its work instead of fixed
    assert planned(checkout, write_config(checkout, config, "case")) == set()


def test_touched_raw_data_without_change_plans_nothing(checkout):
    raw = checkout / "resources/demo/sample_data/arc.jsonl"
    os.utime(raw)
    assert planned(checkout, "config/reruns.yaml") == set()


def test_n_bins_of_one_dataset(checkout):
    config = base_config()
    config["datasets"]["arc"]["n_bins"] = 3
    bins3 = ["0", "1", "2"]
    expected = (
        {job("bin", dataset="arc")}
        | training(datasets=["arc"], bins=bins3)
        | cells(datasets=["arc"], trains=("base", *bins3), test_bins=bins3)
        | reports(datasets=["arc"])
        | loss_curves(datasets=["arc"])
    )
    assert planned(checkout, write_config(checkout, config, "case")) == expected


def test_moving_the_caches_reruns_nothing(checkout, tmp_path):
    config = base_config()
    config["cache_dir"] = str(tmp_path / "elsewhere")
    assert planned(checkout, write_config(checkout, config, "case")) == set()


def test_vllm_only_setting_reruns_no_hf_cell(checkout):
    config = base_config()
    config["evaluation"]["attention_backend"] = "FLASHINFER"
    assert planned(checkout, write_config(checkout, config, "case")) == set()


def test_chat_template_date_reruns_every_training_and_cell(checkout):
    """The date is printed into the prompts of every model whose template uses it: all trained models
    and cells depend on it (the Qwen-style demo model's prompts do not change, but a rule cannot know)."""
    config = base_config()
    config["chat_template_date"] = "01 Jan 2025"
    expected = training() | cells() | reports() | loss_curves()
    assert planned(checkout, write_config(checkout, config, "case")) == expected
