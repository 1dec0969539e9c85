"""The study's effective batch whatever the GPU count: config `training.effective_batch_size` (8; 4 for
the datasets with gradient checkpointing) is what every train job gets, its accumulation steps derived
from its ranks (workflow_scripts/lib/batch.py); train GPUs follow the model's size; a combination that
cannot reach the effective batch is refused before any job, one line, nothing touched."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from tests.support.workflow import REPO, snakemake
from workflow_scripts.lib import batch

STUDY_EFFECTIVE = {"ifeval": 4, "mmlu_pro": 4, "musr": 4}  # batch 1 + gradient checkpointing on 4 GPUs


def train_commands(output: str) -> dict[tuple[str, str], dict]:
    """(model, dataset) -> the ranks, GPUs and settings of its bin-0 train job, from a dry-run with -p."""
    found = {}
    for block in output.split("\nrule train:")[1:]:
        wildcards = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"wildcards: (.*)", block).group(1)))
        if wildcards["trained_row"] != "0":
            continue
        command = shlex.split(block[block.index("python -m workflow_scripts.steps.training") :].split(" > ")[0])
        found[wildcards["model"], wildcards["dataset"]] = {
            "ranks": int(command[command.index("--num-processes") + 1]),
            "gpus": int(command[command.index("--gpus") + 1]),
            "settings": json.loads(command[command.index("--settings") + 1]),
        }
    return found


def test_accumulation_steps_follow_the_ranks():
    assert [batch.accumulation_steps(8, 2, ranks) for ranks in (1, 2, 4)] == [4, 2, 1]
    assert batch.accumulation_steps(4, 1, 4) == 1 and batch.accumulation_steps(4, 1, 1) == 4
    for effective, per_device, ranks in ((8, 2, 8), (8, 2, 3), (4, 1, 8), (6, 4, 1)):
        with pytest.raises(ValueError, match=f"effective_batch_size {effective} is not a multiple"):
            batch.accumulation_steps(effective, per_device, ranks)
    settings = batch.job_settings({"per_device_batch_size": 2, "effective_batch_size": 8, "seed": 1}, ranks=2)
    assert settings == {"per_device_batch_size": 2, "gradient_accumulation_steps": 2, "seed": 1}


def test_every_paper_train_job_gets_the_study_effective_batch_on_the_gpus_its_size_needs(tmp_path):
    output = snakemake("-n", "-p", "--until", "train", workdir=tmp_path).stdout
    jobs = train_commands(output)
    assert len(jobs) == 7 * 8
    parameters = {
        name: m["parameters"] for name, m in yaml.safe_load((REPO / "config/config.yaml").read_text())["models"].items()
    }
    for (model, dataset), job in jobs.items():
        settings = job["settings"]
        effective = settings["per_device_batch_size"] * job["ranks"] * settings["gradient_accumulation_steps"]
        assert effective == STUDY_EFFECTIVE.get(dataset, 8), (model, dataset, job)
        assert job["ranks"] == job["gpus"] == (1 if parameters[model] <= 4e9 else 2 if parameters[model] <= 9e9 else 4)
        assert "effective_batch_size" not in settings  # the job sees what it runs: the accumulation steps
    # The study's own layout where the model keeps its 4 GPUs: no accumulation, the commands as before.
    assert jobs["qwen2.5-14b-instruct", "gsm8k"]["settings"]["gradient_accumulation_steps"] == 1
    assert jobs["qwen2.5-1.5b-instruct", "gsm8k"]["settings"]["gradient_accumulation_steps"] == 4
    assert jobs["qwen2.5-1.5b-instruct", "musr"]["settings"]["gradient_accumulation_steps"] == 4
    assert jobs["llama-3.1-8b-instruct", "ifeval"]["settings"]["gradient_accumulation_steps"] == 2


def test_eight_gpus_for_every_model_keep_the_batch_with_a_larger_effective_batch(tmp_path):
    """8 GPUs reach 16 = 8 x 2 exactly: asked for, it is what the jobs get (the batch is said, not implied)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["resources"]["train"] = {"gpu": 8, "threads": 32, "retries": 2}
    config["training"]["effective_batch_size"] = 16
    for name in STUDY_EFFECTIVE:
        config["datasets"][name]["training"]["effective_batch_size"] = 8
    path = tmp_path / "eight.yaml"
    path.write_text(yaml.safe_dump(config))
    jobs = train_commands(snakemake("-n", "-p", "--configfile", str(path), "--until", "train", workdir=tmp_path).stdout)
    assert {(job["ranks"], job["settings"]["gradient_accumulation_steps"]) for job in jobs.values()} == {(8, 1)}


REFUSALS = [
    # The old way to say "8 GPUs": the study's batch doubled silently before; now refused.
    (
        "eight GPUs",
        {"gpu": 8, "threads": 32, "retries": 2},
        None,
        "effective_batch_size 8 is not a multiple of per_device_batch_size 2 x 8 rank(s) = 16",
    ),
    (
        "three GPUs",
        {"gpu": 3, "threads": 12, "retries": 2},
        None,
        "effective_batch_size 8 is not a multiple of per_device_batch_size 2 x 3 rank(s) = 6",
    ),
    (
        "an effective batch the ranks cannot split",
        None,
        6,
        "effective_batch_size 6 is not a multiple of per_device_batch_size 2 x 4 rank(s) = 8",
    ),
]


@pytest.mark.parametrize("train, effective, message", [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_a_batch_the_gpus_cannot_reach_is_refused_before_any_job(tmp_path, train, effective, message):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    if train:
        config["resources"]["train"] = train
    if effective:
        config["training"]["effective_batch_size"] = effective
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    finished = tmp_path / "results/paper/cells/x.json"
    finished.parent.mkdir(parents=True)
    finished.write_text("{}")
    result = snakemake("-n", "--configfile", str(path), workdir=tmp_path, check=False)
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if message in line]
    assert result.returncode != 0 and "invalid config, nothing was run" in output
    assert lines and "fix: set training.effective_batch_size" in lines[0], output[-3000:]
    assert sorted(p.name for p in (tmp_path / "results/paper").rglob("*")) == ["cells", "x.json"]


def test_the_old_accumulation_key_names_its_successor(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["training"]["gradient_accumulation_steps"] = 2
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), workdir=tmp_path, check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "gradient_accumulation_steps" in line]
    assert result.returncode != 0 and len(lines) == 1
    assert (
        "training.gradient_accumulation_steps is no setting any more; fix: set effective_batch_size instead" in lines[0]
    )


def test_a_model_whose_training_state_would_not_fit_its_gpus_is_refused(tmp_path):
    """~10 bytes/param of ZeRO-3 state (8-bit Adam) spread over the job's GPUs, against 80% of
    cluster.gpu_memory_gb: with 40 GB GPUs the 14B (4 GPUs, ~37 GB each), 7B/8B (2 GPUs) and Llama 3.2 3B
    (1 GPU, 32.1 GB) rows do not fit."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["cluster"]["gpu_memory_gb"] = 40
    path = tmp_path / "small_gpus.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), workdir=tmp_path, check=False)
    lines = [
        line for line in (result.stdout + result.stderr).splitlines() if "of ZeRO-3 training state per GPU" in line
    ]
    assert result.returncode != 0
    assert sorted(line.split("resources.train: ")[1].split(" (")[0] for line in lines) == [
        "llama-3.1-8b-instruct",
        "llama-3.2-3b-instruct",  # 3.2B on 1 GPU: 32.1 GB, just over 32
        "qwen2.5-14b-instruct",
        "qwen2.5-7b-instruct",
    ]
    assert "qwen2.5-14b-instruct (14.8B parameters) on 4 GPU(s) holds ~37 GB" in "\n".join(lines)
