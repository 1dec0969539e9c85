"""`make plan`: what the paper grid asks SLURM for against what it is expected to use, the retry
limit, the disk, and estimates that sharpen once the results folder holds measured jobs."""

from __future__ import annotations

import json
import math

import yaml

from tests.support.workflow import REPO, snakemake
from workflow_scripts.tools import plan


def test_paper_grid_asks_for_at_most_three_times_what_it_is_expected_to_use(tmp_path, capsys):
    plan.main(["--directory", str(tmp_path), "--json", str(tmp_path / "plan.json")])
    summary = json.loads((tmp_path / "plan.json").read_text())
    rules = summary["rules"]
    # Train GPUs by the model's size (config resources.train.by_model_size): 1 for the 1B-3B models,
    # 2 for 7B/8B, the study's 4 for 14B; every job keeps the study's effective batch.
    assert (rules["train"]["jobs"], rules["train"]["gpu"], rules["train"]["gpu_counts"]) == (560, 4, [1, 2, 4])
    # One generation job per row (560 trained + 56 base), its scoring apart on the CPU.
    assert (rules["generate"]["jobs"], rules["generate"]["gpu"]) == (616, 1)
    assert (rules["score"]["jobs"], rules["score"]["gpu"]) == (616, 0)
    assert (rules["convert"]["jobs"], rules["convert"]["gpu"]) == (560, 0)
    # About 110 GPU-h expected (175.8 when every model trained on 4 GPUs); it used to request ~39,000.
    assert 80 < summary["expected_gpu_h"] < 600
    assert summary["requested_gpu_h"] <= 3 * summary["expected_gpu_h"]
    assert summary["requested_gpu_h"] == rules["train"]["requested_gpu_h"] + rules["generate"]["requested_gpu_h"]
    assert summary["largest_request_min"] <= summary["max_runtime"] == 1440
    # Disk kept: every converted model in bf16 (2 B/param, 80 per model) and the cells.
    parameters = sum(
        m["parameters"] for m in yaml.safe_load((REPO / "config/config.yaml").read_text())["models"].values()
    )
    assert math.isclose(summary["kept_output_gb"], 2 * parameters * 80 / 1e9, rel_tol=0.01)
    assert math.isclose(summary["temporary_output_gb_per_job"], 6 * 14_770_033_664 / 1e9, rel_tol=0.01)
    printed = capsys.readouterr().out
    assert "| train | 560 | 1-4 |" in printed and "| generate | 616 | 1 |" in printed
    assert "every rate is an assumption" in printed
    # The pilot's own cost, from its own dry-run: a small fraction of the grid's.
    assert (
        0
        < summary["pilot"]["expected_gpu_h"]
        <= summary["pilot"]["requested_gpu_h"]
        < 0.05 * summary["requested_gpu_h"]
    )
    assert f"{summary['pilot']['requested_gpu_h']:,.1f} GPU-h requested" in printed and "The pilot (" in printed
    # What the engine starts cost the generate jobs: each compiles afresh.
    share = rules["generate"]["startup_gpu_h"] / rules["generate"]["expected_gpu_h"]
    assert 0.2 < share < 0.8 and "no row reuses another row's compile" in printed


def test_no_attempt_asks_for_more_than_the_partition_limit(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["cluster"]["max_runtime"] = 12  # binds: the longest train jobs' first attempts ask for more
    # Fixed runtimes above the limit are refused (tests/integration/test_bad_input.py): these fit it.
    for rule in ("bin", "aggregate"):
        config["resources"][rule]["runtime"] = 10
    path = tmp_path / "limit.yaml"
    path.write_text(yaml.safe_dump(config))

    def requests(attempt):
        output = snakemake("-n", "--configfile", str(path), "--attempt", str(attempt), workdir=tmp_path).stdout
        return {
            (job["rule"], tuple(sorted(job["wildcards"].items()))): job["resources"]["runtime"]
            for job in plan.planned_jobs(output)
            if job["rule"] in ("train", "generate", "convert")
        }

    first, third = requests(1), requests(3)
    assert first.keys() == third.keys() and len(first) == 560 + 616 + 560
    assert max(third.values()) == 12 and max(first.values()) == 12
    for job, minutes in first.items():
        assert third[job] == min(3 * minutes, 12), job


def sized_demo_config(tmp_path) -> str:
    """The demo with train, convert and generate sized from their work instead of fixed."""
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    for rule in ("train", "convert", "generate"):
        config["resources"][rule] = {
            k: v for k, v in config["resources"][rule].items() if k not in ("runtime", "mem_mb")
        }
    config["models"]["tiny-qwen2"]["parameters"] = 1  # never read: the model's config.json is on disk
    path = tmp_path / "sized.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)
