"""`snakemake pilot` on the CPU path (demo config: tiny model, gloo ranks, HF backend): its job set, the
paper grid's pilot matrix, and a real run on the finished demo with the resume drill's forced stop and
resume, the memory probe, every check and the paths proved."""

from __future__ import annotations

import json
import shlex
import shutil

import pytest

from tests.support.workflow import REPO, job, planned_jobs, snakemake
from workflow_scripts.steps import pilot

DEMO = str(REPO / "config/demo.yaml")


def test_pilot_takes_its_row_through_every_step_and_probes_memory(tmp_path):
    result = snakemake("-n", "pilot", "--configfile", DEMO, workdir=tmp_path)
    row = {"model": "tiny-qwen2", "dataset": "arc"}
    assert planned_jobs(result.stdout + result.stderr, leave_out=()) == {
        job("sample_data", sample="arc"),
        job("tiny_model"),
        job("download", dataset="arc"),
        job("bin", dataset="arc"),
        job("memory_probe", model="tiny-qwen2", dataset="arc"),
        job("train", **row, trained_row="0"),
        job("convert", **row, trained_row="0"),
        job("resume_drill", **row, trained_row="0"),
        # The trained and the base row, each generated and scored on every bin (the grid's own jobs).
        job("generate", **row, row="0"),
        job("generate", **row, row="base"),
        job("score", **row, row="0"),
        job("score", **row, row="base"),
        job("pilot"),
    }


def test_the_paper_pilot_is_one_entry_per_gpu_path(tmp_path):
    """config/config.yaml's pilot: a tied 1-GPU row on gsm8k, an untied 2-rank row with gradient
    checkpointing on musr (and the resume drill), a 4-rank memory probe of the 14B model; nothing else."""
    result = snakemake("-n", "-p", "pilot", workdir=tmp_path)
    jobs = planned_jobs(result.stdout + result.stderr, leave_out=())
    gpu_rules = {"train", "convert", "resume_drill", "generate", "score", "memory_probe"}
    assert {j for j in jobs if j[0] in gpu_rules} == {
        job("train", model="llama-3.2-1b-instruct", dataset="gsm8k", trained_row="0"),
        job("convert", model="llama-3.2-1b-instruct", dataset="gsm8k", trained_row="0"),
        *(
            job(r, model="llama-3.2-1b-instruct", dataset="gsm8k", row=w)
            for r in ("generate", "score")
            for w in ("0", "base")
        ),
        job("train", model="qwen2.5-7b-instruct", dataset="musr", trained_row="0"),
        job("convert", model="qwen2.5-7b-instruct", dataset="musr", trained_row="0"),
        job("resume_drill", model="qwen2.5-7b-instruct", dataset="musr", trained_row="0"),
        *(
            job(r, model="qwen2.5-7b-instruct", dataset="musr", row=w)
            for r in ("generate", "score")
            for w in ("0", "base")
        ),
        job("memory_probe", model="qwen2.5-14b-instruct", dataset="gsm8k"),
    }
    command = next(line for line in result.stdout.splitlines() if "workflow_scripts.steps.pilot --spec" in line)
    words = shlex.split(command)
    spec = json.loads(words[words.index("--spec") + 1])
    proved = {path for item in spec["rows"] + spec["probes"] for path in item["paths"]}
    # Before fetch_model the tie of each model is unknown: those conversion paths are named as such.
    assert (
        set(spec["grid_paths"]) - proved
        == {p for p in spec["grid_paths"] if p.startswith("conversion of ") and "unknown" in p} - proved
    )
    assert {
        "training on 1 rank(s)",
        "training on 2 rank(s)",
        "training on 4 rank(s)",
        "gradient checkpointing",
        "no gradient checkpointing",
        "generation on vllm (generate_until)",
        "log-likelihoods on vllm (multiple_choice)",
        "checkpoint and resume across ranks",
        "memory of qwen2.5-14b-instruct at 4096 tokens x batch 2",
    } <= proved
    assert [p["expect"] for p in spec["probes"]] == [{"steps": 3, "ranks": 4, "max_length": 4096, "gpu": True}]


@pytest.fixture
def pilot_run(demo_run):
    """The pilot on the finished demo: its train, convert, generate and score jobs are done already (they are
    the grid's), so only the resume drill and the check run. Its own files go afterwards."""
    yield demo_run, snakemake("pilot", "--configfile", DEMO, "--cores", "2", workdir=demo_run)
    root = demo_run / "results/demo"
    for folder in ("pilot", "logs/pilot", "benchmarks/pilot", "work/pilot"):
        shutil.rmtree(root / folder, ignore_errors=True)


def test_pilot_checks_every_path_and_reports_what_it_measured(pilot_run):
    demo_run, result = pilot_run
    output = result.stdout + result.stderr
    root = demo_run / "results/demo"
    report = json.loads((root / "pilot/report.json").read_text())
    row, probe = report["entries"]
    assert (row["kind"], probe["kind"]) == ("row", "probe") and "FAIL" not in output
    assert len(row["checks"]) == 17 and len(probe["checks"]) == 3  # no GPU: no memory share to check
    assert "ok   the resume drill resumed from its half-way checkpoint" in output
    assert "ok   sequences of max_length 512 tokens" in output
    # The drill: attempt 1 stopped after its checkpoint (a failed job for Snakemake), the retry resumed.
    assert output.count("Error in rule resume_drill") == 1 and "Trying to restart" in output
    drill_log = (root / "logs/pilot/resume_drill/tiny-qwen2/arc/train-0.log").read_text()
    assert "resuming from results/demo/work/pilot/resume_drill/tiny-qwen2/arc/train-0/checkpoint-3" in drill_log
    assert not (root / "pilot/resume_drill").exists() or not any((root / "pilot/resume_drill").rglob("global_step*"))
    assert not (root / "work/pilot/resume_drill/tiny-qwen2/arc/train-0").exists(), (
        "the drill's checkpoints outlived the pilot"
    )
    measured = row["measured"]
    assert measured["train_tokens_per_second"] > 0 and measured["train_tokens_per_second_per_gpu"] > 0
    assert measured["engine_start_s"] > 0 and measured["row_generation_s"] > 0 and measured["cell_score_s"] > 0
    assert measured["generate_job_s"] > measured["row_generation_s"]
    assert 0 < measured["checkpoint_gb_written"] <= 1.5 * measured["final_save_gb_written"]
    assert measured["train_peak_rank_rss_gb"] > 0 and measured["train_peak_gpu_memory_gb"] is None  # no GPU here
    assert probe["measured"]["sequence_tokens"] == 512 and probe["measured"]["peak_rank_rss_gb"] > 0
    # The paths: the arc row proves log-likelihoods, conversion and resuming on 2 ranks, the probe the
    # memory at max_length; no entry generated text (gsm8k has no row), and the report says so.
    assert "checkpoint and resume across ranks" in report["proved"]
    assert "memory of tiny-qwen2 at 512 tokens x batch 2" in report["proved"]
    assert "conversion of a model with tied embeddings" in report["proved"]
    assert report["not_proved"] == ["generation on hf (generate_until)"]
    assert "paths of the grid no entry of this pilot proved (add entries to config `pilot`): generation on hf" in output


def test_a_failed_check_names_itself(demo_run, tmp_path, capsys):
    root = demo_run / "results/demo"
    row = {
        "name": "tiny-qwen2 on arc bin 0",
        "model_dir": str(root / "models/tiny-qwen2/arc/train-0/hf"),
        "cell": str(root / "cells/tiny-qwen2/arc/train-0/test-0.json"),
        "base_cell": str(root / "cells/tiny-qwen2/arc/train-base/test-0.json"),
        "test_file": str(root / "data/arc/bins/bin-0.parquet"),
        "drill": str(tmp_path),  # no drill output in that folder
        "expect": {
            "ranks": 4,
            "backend": "gloo",
            "mixed_precision": "no",
            "optimizer": "adamw_torch",
            "use_liger_kernel": False,
            "evaluation_backend": "hf",
        },
        "paths": ["training on 4 rank(s)"],
        "benchmarks": {"train": "", "convert": "", "generate": "", "generate_base": "", "resume_drill": ""},
    }
    spec = {"rows": [row], "probes": [], "grid_paths": ["training on 4 rank(s)"]}
    with pytest.raises(SystemExit) as stopped:
        pilot.main(["--spec", json.dumps(spec), "--out", str(tmp_path / "report.json")])
    assert stopped.value.code == 1 and not (tmp_path / "report.json").exists()
    captured = capsys.readouterr()
    assert (
        captured.err.startswith("error: the pilot failed")
        and "tiny-qwen2 on arc bin 0: training ran 4 ranks" in captured.err
    )
    assert "the resume drill resumed" in captured.err
    # A failed entry proves nothing: its path is listed as not proved.
    assert "no entry of this pilot proved (add entries to config `pilot`): training on 4 rank(s)" in captured.out
