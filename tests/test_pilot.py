"""`snakemake pilot` on the CPU path (demo config: tiny model, gloo ranks, HF backend): its job set,
and a real run on the finished demo with the resume drill's forced stop and resume, every check."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO, job, planned_jobs, snakemake
from workflow_scripts import pilot

DEMO = str(REPO / "config/demo.yaml")


def test_pilot_takes_one_row_through_every_step(tmp_path):
    result = snakemake("-n", "pilot", "--configfile", DEMO, workdir=tmp_path)
    row = {"model": "tiny-qwen2", "dataset": "arc"}
    assert planned_jobs(result.stdout + result.stderr, leave_out=()) == {
        job("sample_data", sample="arc"),
        job("tiny_model"),
        job("download", dataset="arc"),
        job("bin", dataset="arc"),
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
    assert report["expected"] == {
        "ranks": 2,
        "backend": "gloo",
        "mixed_precision": "no",
        "optimizer": "adamw_torch",
        "use_liger_kernel": False,
        "evaluation_backend": "hf",
    }
    assert len(report["checks"]) == 17 and "FAIL" not in output
    assert "ok   the resume drill resumed from its half-way checkpoint" in output
    # The drill: attempt 1 stopped after its checkpoint (a failed job for Snakemake), the retry resumed.
    assert output.count("Error in rule resume_drill") == 1 and "Trying to restart" in output
    drill_log = (root / "logs/pilot/resume_drill/tiny-qwen2/arc/train-0.log").read_text()
    assert "resuming from results/demo/work/pilot/resume_drill/tiny-qwen2/arc/train-0/checkpoint-3" in drill_log
    assert not (root / "pilot/resume_drill").exists() or not any((root / "pilot/resume_drill").rglob("global_step*"))
    measured = report["measured"]
    assert measured["train_tokens_per_second"] > 0 and measured["train_tokens_per_second_per_gpu"] > 0
    assert measured["engine_start_s"] > 0 and measured["row_generation_s"] > 0 and measured["cell_score_s"] > 0
    assert measured["generate_job_s"] > measured["row_generation_s"]
    assert 0 < measured["checkpoint_gb_written"] <= 1.5 * measured["final_save_gb_written"]
    assert measured["train_peak_rank_rss_gb"] > 0 and measured["train_peak_gpu_memory_gb"] is None  # no GPU here
    for name in ("tokens_per_second", "engine start", "peak"):
        assert any(name.replace(" ", "_") in line for line in output.splitlines() if line.startswith("  ")), name


def test_a_failed_check_names_itself(demo_run, tmp_path, capsys):
    root = demo_run / "results/demo"
    expect = {
        "ranks": 4,
        "backend": "gloo",
        "mixed_precision": "no",
        "optimizer": "adamw_torch",
        "use_liger_kernel": False,
        "evaluation_backend": "hf",
    }
    with pytest.raises(SystemExit) as stopped:
        pilot.main(
            [
                "--model-dir",
                str(root / "models/tiny-qwen2/arc/train-0/hf"),
                "--drill-dir",
                str(tmp_path),
                "--cell",
                str(root / "cells/tiny-qwen2/arc/train-0/test-0.json"),
                "--base-cell",
                str(root / "cells/tiny-qwen2/arc/train-base/test-0.json"),
                "--test-file",
                str(root / "data/arc/bins/bin-0.parquet"),
                "--expect",
                json.dumps(expect),
                "--out",
                str(tmp_path / "report.json"),
            ]
        )
    assert stopped.value.code == 1 and not (tmp_path / "report.json").exists()
    error = capsys.readouterr().err
    assert error.startswith("error: the pilot failed") and "training ran 4 ranks" in error
    assert "the resume drill resumed" in error  # no drill output in that folder
