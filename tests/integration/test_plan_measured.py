"""`make plan` after a run: its estimates come from what the run's jobs measured."""

from __future__ import annotations

import json
import math

from tests.support.workflow import snakemake
from tests.unit.test_plan import sized_demo_config
from workflow_scripts.tools import plan


def test_estimates_use_the_runs_own_measurements(demo_run, tmp_path):
    """After a run (a pilot, say), the plan's estimates come from what its jobs measured."""
    configfile = sized_demo_config(tmp_path)
    output = snakemake(
        "-n", "--forceall", "--configfile", configfile, workdir=demo_run, env_extra={plan.PLAN_VARIABLE: "1"}
    ).stdout
    jobs = [job for job in plan.planned_jobs(output) if job["rule"] in ("train", "generate", "convert")]
    assert len(jobs) == 6 + 8 + 6
    root = demo_run / "results/demo"
    expected, measured = {}, {}
    for job in jobs:
        wildcards = job["wildcards"]
        where = f"{wildcards['model']}/{wildcards['dataset']}"
        if job["rule"] == "generate":
            where += f"/train-{wildcards['row']}"
        else:
            where += f"/train-{wildcards['trained_row']}"
        benchmark = (root / "benchmarks" / job["rule"] / f"{where}.tsv").read_text().splitlines()[1]
        measured.setdefault(job["rule"], []).append(float(benchmark.split()[0]))
        expected.setdefault(job["rule"], []).append(job["resources"]["expected_s"])
    # The estimates take the median factor over the jobs like them (same model), so in sum they are
    # what those jobs took, within 2x on this machine's noisy timings; the GPU assumptions alone are
    # several times off for a CPU run.
    for rule in expected:
        assert 0.5 * sum(measured[rule]) <= sum(expected[rule]) <= 2 * sum(measured[rule]) + len(jobs), rule
    out = tmp_path / "plan.json"
    plan.main(["--configfile", configfile, "--directory", str(demo_run), "--json", str(out), "--forceall"])
    summary = json.loads(out.read_text())
    assert summary["rules"]["train"]["jobs"] == 6
    assert math.isclose(summary["rules"]["train"]["expected_h"] * 3600, sum(expected["train"]), abs_tol=6)
