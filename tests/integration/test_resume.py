"""A training job killed after its first checkpoint resumes from it when Snakemake runs it again."""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import yaml

from tests.support.workflow import REPO, snakemake

TARGET = "results/demo/models/tiny-qwen2/arc/train-0/hf"


def resume_config(tmp_path) -> str:
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["n_bins"] = 2
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    config["datasets"]["arc"]["training"] = {"epochs": 10}  # 30 rows / (2 ranks x 2) -> 8 steps an epoch
    config["launch"]["checkpoint_minutes"] = 0.002  # every ~0.1 s of training: a checkpoint every step or two
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    configfile = resume_config(tmp_path)
    work = tmp_path / "results/demo/work/train/tiny-qwen2/arc/train-0"
    command = [
        os.path.join(os.path.dirname(sys.executable), "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        configfile,
        "--cores",
        "2",
        TARGET,
    ]
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    first = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 600
    while not list(work.glob("checkpoint-*/COMPLETE")):
        assert first.poll() is None, "training ended before it wrote a checkpoint"
        assert time.time() < deadline, "no checkpoint within 10 minutes"
        time.sleep(0.05)
    # Preemption: the job's processes (launcher, accelerate, every rank) die at once; Snakemake sees
    # the job fail and deletes its declared outputs, as it does on a cluster.
    job_processes = psutil.Process(first.pid).children(recursive=True)
    assert any("workflow_scripts.steps.training" in " ".join(p.cmdline()) for p in job_processes)
    for process in job_processes:
        process.send_signal(signal.SIGKILL)
    assert first.wait(timeout=120) != 0
    killed_at = max(int(p.parent.name.split("-")[1]) for p in work.glob("checkpoint-*/COMPLETE"))
    assert killed_at < 80

    assert not (tmp_path / "results/demo/models/tiny-qwen2/arc/train-0/zero").exists()
    snakemake("--configfile", configfile, "--cores", "2", TARGET, workdir=tmp_path)
    record = json.loads((tmp_path / TARGET / "training.json").read_text())
    assert record["resumed_from_step"] >= killed_at >= 1
    assert record["global_step"] == 80  # 10 epochs x 8 steps: it continued, it did not start a new schedule
    # The record lists the checkpoints of both attempts: the killed one's up to where it resumed.
    steps = [c["step"] for c in record["checkpoints"]]
    assert record["resumed_from_step"] in steps and steps == sorted(set(steps)) and max(steps) < 80
    assert record["checkpoint_bytes_written"] == sum(c["bytes_written"] for c in record["checkpoints"]) > 0
    log = (tmp_path / "results/demo/logs/train/tiny-qwen2/arc/train-0.log").read_text()
    assert f"checkpoint-{record['resumed_from_step']}" in log
    assert not work.exists(), "the work folder outlived the converted model"
    assert not (tmp_path / "results/demo/models/tiny-qwen2/arc/train-0/zero").exists()
    assert not list(tmp_path.rglob("global_step*"))


def test_checkpoints_of_other_settings_are_not_resumed(tmp_path, capsys):
    """The work folder outlives a finished train job until its convert job runs: after a config edit in
    between, the re-run starts over instead of resuming (and finishing) the old training."""
    from workflow_scripts.lib import checkpoints
    from workflow_scripts.steps import training

    work = tmp_path / "work"
    settings = json.dumps({"learning_rate": 1e-5, "num_train_epochs": 3})
    args = SimpleNamespace(
        model="m", train_file="t.parquet", prompt_format="arc", num_processes=2, settings=settings, work_dir=str(work)
    )
    checkpoints.claim_work_dir(work, training.job_identity(args))
    (work / "checkpoint-4").mkdir()
    (work / "checkpoint-4" / checkpoints.COMPLETE_MARKER).touch()
    checkpoints.claim_work_dir(work, training.job_identity(args))  # a retry of the same training resumes
    assert [p.name for p in checkpoints.complete_checkpoints(work)] == ["checkpoint-4"]
    assert capsys.readouterr().out == ""
    args.settings = json.dumps({"learning_rate": 2e-5, "num_train_epochs": 3})
    checkpoints.claim_work_dir(work, training.job_identity(args))
    assert checkpoints.complete_checkpoints(work) == []
    assert f"removed the checkpoints in {work}: another training" in capsys.readouterr().out
    assert json.loads((work / "job.json").read_text())["settings"]["learning_rate"] == 2e-5
    args.num_processes = 4  # ZeRO-3 shards of two ranks cannot resume on four
    (work / "checkpoint-8").mkdir()
    (work / "checkpoint-8" / checkpoints.COMPLETE_MARKER).touch()
    checkpoints.claim_work_dir(work, training.job_identity(args))
    assert checkpoints.complete_checkpoints(work) == []
