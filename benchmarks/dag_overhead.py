"""Dry-run time of the paper grid (config/config.yaml) against a bare skeleton workflow of the same
shape: the same rules, wildcards, constraints and job count (train, convert, and a generate and a
score job per row), with trivial actions and no helpers.
Prints both times and their ratio (goal <= 1.5x), in one run on the same machine. Where `scontrol` is
installed but no SLURM controller answers, every snakemake process first waits ~9 s for the SLURM
plugin's `scontrol show config` (at its import), which would shrink the ratio: the benchmark puts the
tests' stub scontrol first on PATH (tests/support/scontrol_stub.py) and times the workflows alone.

    .venv/bin/python benchmarks/dag_overhead.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

SKELETON = r"""
import re
MODELS = {models!r}
DATASETS = {datasets!r}
BINS = [str(k) for k in range({n_bins})]
R = "results/paper"

wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    dataset="|".join(re.escape(d) for d in DATASETS),
    trained_row=r"\d+",
    test_bin=r"\d+",
    row=r"base|\d+",

rule all:
    input:
        [f"{{R}}/figures/{{m}}/{{d}}/{{n}}.png" for m in MODELS for d in DATASETS for n in ("accuracy", "change_vs_base")],
        f"{{R}}/tables/cells.csv",
        [f"{{R}}/cells/{{m}}/{{d}}/train-{{t}}/test-{{b}}.json" for m in MODELS for d in DATASETS for t in ["base", *BINS] for b in BINS],

rule download:
    output: "{{R}}/data/{{dataset}}/normalized.parquet".replace("{{R}}", R)
    localrule: True
    shell: "touch {{output}}"

rule bin:
    input: rules.download.output
    output: directory(R + "/data/{{dataset}}/bins")
    shell: "mkdir -p {{output}}"

rule train:
    input: rules.bin.output
    output: temp(directory(R + "/models/{{model}}/{{dataset}}/train-{{trained_row}}/zero"))
    shell: "mkdir -p {{output}}"

rule convert:
    input: rules.train.output
    output: directory(R + "/models/{{model}}/{{dataset}}/train-{{trained_row}}/hf")
    shell: "mkdir -p {{output}}"

rule generate:
    input:
        bins=rules.bin.output,
        model=lambda wc: [] if wc.row == "base" else [f"{{R}}/models/{{wc.model}}/{{wc.dataset}}/train-{{wc.row}}/hf"],
    output: [R + "/raw/{{model}}/{{dataset}}/train-{{row}}/test-" + b + ".json" for b in BINS]
    shell: "touch {{output}}"

rule score:
    input: bins=rules.bin.output, raw=rules.generate.output
    output:
        [R + "/cells/{{model}}/{{dataset}}/train-{{row}}/test-" + b + "." + kind for b in BINS for kind in ("json", "samples.jsonl")]
    shell: "touch {{output}}"

rule aggregate:
    input: lambda wc: [f"{{R}}/cells/{{wc.model}}/{{wc.dataset}}/train-{{t}}/test-{{b}}.json" for t in ["base", *BINS] for b in BINS]
    output: R + "/tables/{{model}}/{{dataset}}.csv"
    shell: "touch {{output}}"

rule cell_table:
    input: [f"{{R}}/tables/{{m}}/{{d}}.csv" for m in MODELS for d in DATASETS]
    output: csv=R + "/tables/cells.csv", parquet=R + "/tables/cells.parquet"
    shell: "touch {{output}}"

rule heatmaps:
    input: rules.aggregate.output
    output:
        accuracy=R + "/figures/{{model}}/{{dataset}}/accuracy.png",
        change=R + "/figures/{{model}}/{{dataset}}/change_vs_base.png",
    shell: "touch {{output}}"
"""


def timed_dry_run(args: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([SNAKEMAKE, "-n", "--quiet", "rules", *args], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    total = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("total")]
    return elapsed, total[0].split()[-1] if total else "?"


def main() -> None:
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        skeleton = Path(tmp) / "Snakefile"
        skeleton.write_text(
            SKELETON.format(models=list(config["models"]), datasets=list(config["datasets"]), n_bins=config["n_bins"])
        )
        ours, ours_jobs = timed_dry_run([], REPO)
        bare, bare_jobs = timed_dry_run(["--snakefile", str(skeleton)], Path(tmp))
    print(
        f"dry-run of the paper grid: ours {ours:.1f} s ({ours_jobs} jobs), skeleton {bare:.1f} s "
        f"({bare_jobs} jobs), ratio {ours / bare:.2f}x (goal <= 1.5x)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.path.insert(0, str(REPO))
    from tests.support import scontrol_stub

    scontrol_stub.install()
    main()
