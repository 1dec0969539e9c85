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

from tests.support.workflow import REPO, job, planned_jobs, snakemake

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
    config["pilot"] = [{**entry, "model": MODELS[0]} for entry in config["pilot"]]
    return config


def write_config(checkout: Path, config: dict, name: str) -> str:
    path = checkout / "config" / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return f"config/{name}.yaml"


def planned(checkout: Path, configfile: str) -> set[tuple[str, frozenset]]:
    """The dry-run's jobs as (rule, wildcards); the `all` target is not work and is left out."""
    result = snakemake("-n", "--configfile", configfile, workdir=checkout, repo=checkout)
    return planned_jobs(result.stdout + result.stderr, leave_out=("all",))


def generations(models=MODELS, datasets=DATASETS, rows=("base", *BINS), rule="generate") -> set:
    """The GPU jobs of these rows: one lm-eval run per row, every test bin."""
    return {job(rule, model=m, dataset=d, row=t) for m, d, t in product(models, datasets, rows)}


def scorings(models=MODELS, datasets=DATASETS, rows=("base", *BINS), rule="score") -> set:
    """The CPU jobs that turn these rows' raw outputs into their cell files."""
    return {job(rule, model=m, dataset=d, row=t) for m, d, t in product(models, datasets, rows)}


def cells(models=MODELS, datasets=DATASETS, rows=("base", *BINS)) -> set:
    """Everything that re-makes these rows' cells: their generation, then their scoring."""
    return generations(models, datasets, rows) | scorings(models, datasets, rows)


def training(models=MODELS, datasets=DATASETS, bins=BINS) -> set:
    return {
        job(rule, model=m, dataset=d, trained_row=b)
        for rule, m, d, b in product(("train", "convert"), models, datasets, bins)
    }


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
    config["statistics"] = {"bootstrap_resamples": 500}  # the demo keeps the defaults
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
        training(models=["tiny-a"])
        | cells(models=["tiny-a"], rows=BINS)
        | reports(models=["tiny-a"])
        | loss_curves(models=["tiny-a"])
    )
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
        | training(datasets=["arc-copy"])
        | cells(datasets=["arc-copy"])
        | reports(datasets=["arc-copy"])
        | loss_curves(datasets=["arc-copy"])
    )
    assert planned(checkout, write_config(checkout, config, "case")) == expected


def test_deleted_cell_reruns_its_rows_scoring_and_its_aggregates(checkout):
    """One scoring job (the row's, from its kept raw outputs) and nothing on a GPU."""
    cell = checkout / "results/demo/cells/tiny-b/arc/train-1/test-0.json"
    saved = checkout / "saved-cell.json"
    shutil.copy2(cell, saved)
    try:
        cell.unlink()
        expected = {job("score", model="tiny-b", dataset="arc", row="1")} | {
            job("aggregate", model="tiny-b", dataset="arc"),
            job("heatmaps", model="tiny-b", dataset="arc"),
            job("change_by_distance", dataset="arc"),
            job("change_grid", model="tiny-b"),
            job("cell_table"),
            job("seed_table"),
        }
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
    with edited(checkout / "workflow_scripts/lib/evaluation.py"):
        assert planned(checkout, "config/reruns.yaml") == cells() | reports()


def test_scoring_module_edit_reruns_scoring_only(checkout):
    with edited(checkout / "workflow_scripts/steps/scoring.py"):
        assert planned(checkout, "config/reruns.yaml") == scorings() | reports()


def replaced(path: Path, old: str, new: str):
    """Context: replace one piece of a file's text, restore content and timestamps afterwards."""

    class Edit:
        def __enter__(self):
            self.text, self.stat = path.read_text(), path.stat()
            assert self.text.count(old) == 1, f"{path.name} no longer has {old!r} once"
            path.write_text(self.text.replace(old, new))

        def __exit__(self, *exc):
            path.write_text(self.text)
            os.utime(path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))

    return Edit()


def test_filter_regex_edit_reruns_that_datasets_scoring_only(checkout):
    """A filter scores responses: the dataset's score jobs re-run from the kept raw outputs, no GPU job."""
    task = checkout / "tasks/cross_difficulty_gsm8k.yaml"
    with replaced(task, 'regex_pattern: "So the answer is', 'regex_pattern: "So the final answer is'):
        assert planned(checkout, "config/reruns.yaml") == scorings(datasets=["gsm8k"]) | reports(datasets=["gsm8k"])


def test_prompt_edit_reruns_that_datasets_generation_and_scoring(checkout):
    task = checkout / "tasks/cross_difficulty_gsm8k.yaml"
    with replaced(task, 'doc_to_text: "Q: {{question}}', 'doc_to_text: "Question: {{question}}'):
        assert planned(checkout, "config/reruns.yaml") == cells(datasets=["gsm8k"]) | reports(datasets=["gsm8k"])


def test_headline_metric_reruns_tables_and_figures_only(checkout):
    """The headline metric is read by the tables and figures; every metric is in the cell files already."""
    config = base_config()
    config["datasets"]["gsm8k"]["headline_metric"] = "exact_match,strict-match"
    assert planned(checkout, write_config(checkout, config, "case")) == reports(datasets=["gsm8k"])


def test_training_module_edit_spares_base_cells(checkout):
    with edited(checkout / "workflow_scripts/steps/training.py"):
        assert planned(checkout, "config/reruns.yaml") == training() | cells(rows=BINS) | reports() | loss_curves()


def test_conversion_code_or_setting_changed_plans_nothing(checkout):
    """A converted model is kept: re-making it would need its deleted ZeRO state, i.e. re-training.
    conversion.json records what made it (`make plan` lists the models made otherwise)."""
    with edited(checkout / "workflow_scripts/steps/conversion.py"):
        assert planned(checkout, "config/reruns.yaml") == set()
    config = base_config()
    config["conversion"]["max_shard_size"] = "1GB"
    assert planned(checkout, write_config(checkout, config, "case")) == set()


def test_how_jobs_run_plans_nothing(checkout):
    """The checkpoint interval, the SLURM requests, the minimum of training items (a check), where the
    NLTK data lives and the pilot's entries say how a job runs or what is checked, not what it makes."""
    config = base_config()
    config["launch"]["checkpoint_minutes"] = 5
    config["cluster"] = {"max_runtime": 60}
    config["resources"]["train"] = {"gpu": 0, "threads": 2}  # sized from its work instead of fixed
    config["min_train_rows"] = 3
    config["nltk_data"] = "elsewhere/nltk_data"
    config["pilot"] = [{"model": "tiny-b", "dataset": "gsm8k", "memory_probe": True}]
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
        # Two bin counts: a pair of evaluation rules per count (rules/generate.smk, rules/score.smk); gsm8k's rows keep
        # their outputs under the renamed rules and re-run nothing.
        | generations(datasets=["arc"], rows=("base", *bins3), rule="generate_3_bins")
        | scorings(datasets=["arc"], rows=("base", *bins3), rule="score_3_bins")
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


def test_a_prompt_edit_scored_without_its_generation_stops_with_one_line_naming_the_cell(checkout):
    """A run that re-scores but does not re-generate after a prompt edit (here: --rerun-triggers mtime,
    which ignores the generation fingerprint) is refused by the replay: one line in the score job's
    log names the cell; the kept raw outputs are untouched (the row's cells go, as any re-run job's
    outputs do). Runs last: it re-scores the row after."""
    row = "results/demo/cells/tiny-a/gsm8k/train-base"
    targets = [f"{row}/test-{b}.json" for b in BINS]
    raw = [checkout / f"results/demo/raw/tiny-a/gsm8k/train-base/test-{b}.json" for b in BINS]
    raw_before = [path.read_bytes() for path in raw]
    task = checkout / "tasks/cross_difficulty_gsm8k.yaml"
    with replaced(task, 'doc_to_text: "Q: {{question}}', 'doc_to_text: "Question: {{question}}'):
        # Targets first: --configfile and --rerun-triggers take several values.
        result = snakemake(
            *targets,
            "--configfile",
            "config/reruns.yaml",
            "--cores",
            "1",
            "--rerun-triggers",
            "mtime",
            workdir=checkout,
            repo=checkout,
            check=False,
        )
        assert result.returncode != 0
        assert "rule generate:" not in result.stdout + result.stderr
        log = (checkout / "results/demo/logs/score/tiny-a/gsm8k/train-base.log").read_text()
        errors = [line for line in log.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in log, log[-2000:]
        assert errors[0].startswith(f"error: {row}/test-0.json: the request for cross_difficulty_gsm8k doc ")
        assert "its prompt first differs at character" in errors[0] and "re-run the generation" in errors[0]
    assert [path.read_bytes() for path in raw] == raw_before
    # With the task as it was, the row's scoring alone re-makes its cells from the same raw outputs.
    assert planned(checkout, "config/reruns.yaml") >= {job("score", model="tiny-a", dataset="gsm8k", row="base")}
    snakemake(*targets, "--configfile", "config/reruns.yaml", "--cores", "1", workdir=checkout, repo=checkout)
