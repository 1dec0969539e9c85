"""The real workflow: the paper grid's plan, and a full demo run end to end."""

import json

import pytest
from safetensors.torch import load_file

from tests.support.workflow import REPO, job_counts, snakemake


def test_paper_grid_plans_the_study():
    counts = job_counts(snakemake("-n", "--quiet", "rules").stdout)
    # 7 models x 8 datasets x 10 bins; evaluation adds the base model as an 11th row; one generation
    # (GPU) and one scoring (CPU) job per row, each over the row's 10 test bins.
    assert counts["train"] == 560
    assert counts["convert"] == 560
    assert counts["generate"] == counts["score"] == 7 * 8 * 11 == 616
    assert "evaluate" not in counts
    assert counts["download"] == counts["bin"] == 8
    assert counts["heatmaps"] == counts["aggregate"] == counts["training_loss"] == 56
    assert counts["change_by_distance"] == 8 and counts["change_grid"] == 7
    assert counts["cell_table"] == counts["seed_table"] == 1


def test_lint_is_clean():
    for config in ([], ["--configfile", str(REPO / "config/demo.yaml")]):
        result = snakemake("--lint", *config)
        output = result.stdout + result.stderr
        assert "Lints for" not in output
        assert "Congratulations, your workflow is in a good condition!" in output


def test_demo_writes_every_cell(demo_run):
    root = demo_run / "results/demo"
    for dataset, metric in (("arc", "acc,none"), ("gsm8k", "exact_match,strict-match")):
        for train in ("base", "0", "1", "2"):
            for test_bin in range(3):
                cell_file = root / f"cells/tiny-qwen2/{dataset}/train-{train}/test-{test_bin}.json"
                cell = json.loads(cell_file.read_text())
                assert cell["row_label"] == train and cell["test_bin"] == test_bin and cell["dataset"] == dataset
                assert cell["n"] == 20
                # Scored from the row's generation: its time is the row's, the replay's is the scoring.
                assert cell["generation_seconds"] > 0 and cell["eval_seconds"] > 0
                assert cell["gpu_memory_in_use_bytes"] is None
                assert metric in cell["metrics"]
                assert all(0.0 <= v <= 1.0 for v in cell["metrics"].values())
                samples = cell_file.with_suffix(".samples.jsonl").read_text().splitlines()
                assert len(samples) == 20


def test_demo_trained_models_differ_from_base_and_leave_no_zero_state(demo_run):
    base = load_file(demo_run / "resources/demo/tiny-qwen2/model.safetensors")
    models = sorted((demo_run / "results/demo/models").glob("tiny-qwen2/*/train-*"))
    assert len(models) == 6
    for folder in models:
        assert [p.name for p in folder.iterdir()] == ["hf"], f"ZeRO state left in {folder}"
        trained = load_file(folder / "hf/model.safetensors")
        assert trained.keys() == base.keys()
        changed = max((trained[k] - base[k]).abs().max().item() for k in base)
        assert changed > 1e-4
        record = json.loads((folder / "hf/training.json").read_text())
        assert record["world_size"] == 2 and record["global_step"] == 5
        # Seconds of training, a checkpoint every 30 minutes: none written (never one at the final step).
        assert (
            record["checkpoint_minutes"] == 30
            and record["checkpoints"] == []
            and record["checkpoint_bytes_written"] == 0
        )
        assert record["final_save"]["bytes_written"] >= record["final_save"]["bytes_on_disk"] > 0
        made = json.loads((folder / "hf/conversion.json").read_text())
        assert made["dtype"] == "float32" and made["probe"]["probe_checked"] is True
    assert not list(demo_run.rglob("global_step*"))


def test_demo_tables_and_figures(demo_run):
    import matplotlib.image
    import pandas as pd

    root = demo_run / "results/demo"
    table = pd.read_parquet(root / "tables/cells.parquet")
    assert set(table["dataset"]) == {"arc", "gsm8k"}
    # 4 rows (base + 3 bins) x 3 test bins per metric: arc has acc, acc_norm; gsm8k two filters.
    assert len(table) == 2 * 12 * 2
    trained = table[table["train_kind"] != "base"]
    assert (trained["change_vs_base"] == trained["value"] - trained["base_value"]).all()
    # Every cell has an interval around its value (20 questions, bootstrap over them), and every
    # trained cell a paired interval around its change.
    assert ((table["ci_low"] <= table["value"]) & (table["value"] <= table["ci_high"])).all()
    assert (
        (trained["change_ci_low"] <= trained["change_vs_base"] + 1e-12)
        & (trained["change_vs_base"] <= trained["change_ci_high"] + 1e-12)
    ).all()
    headline = table[table["headline"]]
    assert set(zip(headline["dataset"], headline["metric"] + "," + headline["filter"])) == {
        ("arc", "acc,none"),
        ("gsm8k", "exact_match,flexible-extract"),
    }
    figures = [
        f"tiny-qwen2/{d}/{name}" for d in ("arc", "gsm8k") for name in ("accuracy", "change_vs_base", "training_loss")
    ]
    figures += ["change_by_distance/arc", "change_by_distance/gsm8k", "change_grid/tiny-qwen2"]
    for name in figures:
        png = root / f"figures/{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert matplotlib.image.imread(png)[..., :3].std() > 0.05, f"{png} is blank"
        assert (root / f"figures/{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_demo_second_dry_run_plans_nothing(demo_run):
    result = snakemake("-n", "--configfile", str(REPO / "config/demo.yaml"), workdir=demo_run)
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"n_bins": 1}, "n_bins"),
        ({"training": {"epochz": 1}}, "epochz"),
        ({"models": {"bad/name": {"path": "x"}}}, "bad/name"),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, edit, message):
    import yaml

    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    for key, value in edit.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and key != "models" else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), workdir=tmp_path, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_all_datasets_and_math_solutions_plan_with_their_settings(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    for name, model in (("qwen", "Qwen_Qwen2.5-14B-Instruct"), ("llama", "meta-llama_Llama-3.1-8B-Instruct")):
        config["datasets"][f"math-solutions-{name}"] = {
            "source": {"hub": "Yeganeh/Model-Format-Consistent-Datasets", "name": f"math-solutions__{model}"},
            "prompt_format": "math_solutions",
            "task": "cross_difficulty_math",
            "headline_metric": "exact_match,none",
            "training": {"epochs": 5},
        }
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(config))
    output = snakemake("-n", "-p", "--configfile", str(path), workdir=tmp_path).stdout
    counts = job_counts(output)
    assert counts["train"] == counts["convert"] == 7 * 10 * 10
    assert counts["generate"] == counts["score"] == 7 * 10 * 11
    assert counts["download"] == counts["bin"] == 10
    # The study's per-dataset settings reach the training command: batch 1 and checkpointing for
    # ifeval/mmlu_pro/musr, 5 epochs everywhere (the public scripts silently used 3 for those three).
    commands = [line for line in output.splitlines() if "workflow_scripts.steps.training launch" in line]
    for dataset in ("ifeval", "mmlu_pro", "musr", "arc"):
        settings = [
            json.loads(line.split("--settings '", 1)[1].split("'", 1)[0])
            for line in commands
            if f"/{dataset}/bins/" in line
        ]
        assert len(settings) == 70
        small = dataset != "arc"
        assert all(s["epochs"] == 5 and s["max_length"] == 4096 for s in settings)
        assert all(s["per_device_batch_size"] == (1 if small else 2) for s in settings)
        assert all(s["gradient_checkpointing"] is small for s in settings)


def test_hf_token_never_leaks(demo_run):
    from tests.support.workflow import SENTINEL_TOKEN

    assert (demo_run / "run-output.txt").stat().st_size > 0
    leaks = [path for path in demo_run.rglob("*") if path.is_file() and SENTINEL_TOKEN.encode() in path.read_bytes()]
    assert leaks == []


def test_killed_scoring_leaves_no_cell_and_reruns_only_it(demo_run):
    """Runs last among the demo tests: it breaks one cell and restores it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    cell = "results/demo/cells/tiny-qwen2/arc/train-1/test-2.json"
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    command = [
        os.path.join(os.path.dirname(sys.executable), "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(demo_run),
        "--configfile",
        str(REPO / "config/demo.yaml"),
        "--cores",
        "1",
        "--forcerun",
        cell,
        "--until",
        cell,
    ]
    run = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120

    def command_line(process):
        try:
            return " ".join(process.cmdline())
        except psutil.NoSuchProcess:  # a short-lived child (the shell's prefix) ended meanwhile
            return ""

    while True:
        evaluating = [
            p
            for p in psutil.Process(run.pid).children(recursive=True)
            if "workflow_scripts.steps.scoring" in command_line(p)
        ]
        if evaluating:
            break
        assert run.poll() is None and time.time() < deadline, "the scoring never started"
        time.sleep(0.05)
    time.sleep(1.0)  # mid-run: imports and model load are under way
    for process in evaluating:
        process.send_signal(signal.SIGKILL)
    assert run.wait(timeout=120) != 0
    assert not (demo_run / cell).exists()
    plan = snakemake("-n", "--configfile", str(REPO / "config/demo.yaml"), workdir=demo_run).stdout
    counts = job_counts(plan)
    # The row's scoring only (its raw outputs are kept): no generation.
    assert counts.get("score") == 1 and "row=1" in plan and "dataset=arc" in plan
    assert set(counts) == {
        "score",
        "aggregate",
        "heatmaps",
        "change_by_distance",
        "change_grid",
        "cell_table",
        "seed_table",
        "all",
        "total",
    }
    snakemake("--configfile", str(REPO / "config/demo.yaml"), "--cores", "2", workdir=demo_run)
    assert json.loads((demo_run / cell).read_text())["n"] == 20
