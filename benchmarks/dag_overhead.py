"""Dry-run time of the paper grid (config/config.yaml) against a bare skeleton workflow of the same
shape: the same 16 rules, wildcards, constraints, files (inputs with each step's code, outputs, logs,
benchmarks) and 2,562 jobs, with trivial actions and none of our functions (config lookups, sizing,
argument building, the config checks). The ratio is what those functions cost the planning.
Until issue 24 the skeleton declared no code inputs, logs or benchmarks and none of the fetch and
figure rules (2,482 jobs): against it the ratio also counted Snakemake's own work per declared file.
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

# The skeleton declares the same files as the paper grid's jobs, written out: each rule's code inputs
# (the closure of its step, listed once per rule, as plain strings), its inputs, outputs, logs and
# benchmarks, and the same 16 rules and 2,562 jobs. What it lacks are our functions (config lookups,
# sizing, argument building, checks): the ratio is their cost. A lambda only where a job's files depend
# on its wildcards in a way a pattern cannot say (a row's model, a dataset's task files, a table's cells).
SKELETON = r"""
import re
MODELS = {models!r}
DATASETS = {datasets!r}
BINS = [str(k) for k in range({n_bins})]
CODE = {code!r}
TASK_FILES = {task_files!r}
R = "results/paper"
ROWS = ["base", *BINS]

wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    dataset="|".join(re.escape(d) for d in DATASETS),
    trained_row=r"\d+",
    test_bin=r"\d+",
    row=r"base|\d+",

def cells(model, dataset, row):
    return [f"{{R}}/cells/{{model}}/{{dataset}}/train-{{row}}/test-{{b}}.json" for b in BINS]

rule all:
    input:
        [c for m in MODELS for d in DATASETS for t in ROWS for c in cells(m, d, t)],
        [f"{{R}}/figures/{{m}}/{{d}}/{{n}}.{{e}}" for m in MODELS for d in DATASETS for n in ("accuracy", "change_vs_base", "training_loss") for e in ("png", "pdf")],
        [f"{{R}}/figures/change_by_distance/{{d}}.png" for d in DATASETS],
        [f"{{R}}/figures/change_grid/{{m}}.png" for m in MODELS],
        R + "/tables/cells.csv",
        R + "/tables/seeds.csv",

rule download:
    input: code=CODE["download"]
    output: R + "/data/{{dataset}}/normalized.parquet"
    log: R + "/logs/download/{{dataset}}.log"
    localrule: True
    shell: "touch {{output}}"

rule fetch_model:
    input: code=CODE["fetch_model"]
    output: directory("resources/models/{{model}}")
    log: "resources/models/logs/{{model}}.log"
    localrule: True
    shell: "mkdir -p {{output}}"

rule fetch_nltk_data:
    input: code=CODE["fetch_nltk_data"]
    output: directory("resources/nltk_data/tokenizers/{{package}}")
    log: "resources/nltk_data/logs/{{package}}.log"
    localrule: True
    shell: "mkdir -p {{output}}"

rule bin:
    input: data=rules.download.output, code=CODE["bin"]
    output: directory(R + "/data/{{dataset}}/bins")
    log: R + "/logs/bin/{{dataset}}.log"
    shell: "mkdir -p {{output}}"

rule train:
    input: bins=rules.bin.output, base_model="resources/models/{{model}}", code=CODE["train"]
    output: temp(directory(R + "/models/{{model}}/{{dataset}}/train-{{trained_row}}/zero"))
    log: R + "/logs/train/{{model}}/{{dataset}}/train-{{trained_row}}.log"
    benchmark: R + "/benchmarks/train/{{model}}/{{dataset}}/train-{{trained_row}}.tsv"
    shell: "mkdir -p {{output}}"

rule convert:
    input: rules.train.output
    output: directory(R + "/models/{{model}}/{{dataset}}/train-{{trained_row}}/hf")
    log: R + "/logs/convert/{{model}}/{{dataset}}/train-{{trained_row}}.log"
    benchmark: R + "/benchmarks/convert/{{model}}/{{dataset}}/train-{{trained_row}}.tsv"
    shell: "mkdir -p {{output}}"

rule generate:
    input:
        model=lambda wc: [f"resources/models/{{wc.model}}" if wc.row == "base" else f"{{R}}/models/{{wc.model}}/{{wc.dataset}}/train-{{wc.row}}/hf"],
        bins=rules.bin.output,
        code=CODE["generate"],
    output: [R + "/raw/{{model}}/{{dataset}}/train-{{row}}/test-" + b + ".json" for b in BINS]
    log: R + "/logs/generate/{{model}}/{{dataset}}/train-{{row}}.log"
    benchmark: R + "/benchmarks/generate/{{model}}/{{dataset}}/train-{{row}}.tsv"
    shell: "touch {{output}}"

rule score:
    input:
        task=lambda wc: TASK_FILES[wc.dataset],
        tokenizer="resources/models/{{model}}",
        raw=rules.generate.output,
        bins=rules.bin.output,
        code=CODE["score"],
    output:
        [R + "/cells/{{model}}/{{dataset}}/train-{{row}}/test-" + b + "." + kind for b in BINS for kind in ("json", "samples.jsonl")]
    log: R + "/logs/score/{{model}}/{{dataset}}/train-{{row}}.log"
    shell: "touch {{output}}"

rule aggregate:
    input:
        cells=lambda wc: [f for t in ROWS for c in cells(wc.model, wc.dataset, t) for f in (c, c.replace(".json", ".samples.jsonl"))],
        code=CODE["aggregate"],
    output: R + "/tables/{{model}}/{{dataset}}.csv"
    log: R + "/logs/aggregate/{{model}}/{{dataset}}.log"
    shell: "touch {{output}}"

rule cell_table:
    input: tables=[f"{{R}}/tables/{{m}}/{{d}}.csv" for m in MODELS for d in DATASETS], code=CODE["aggregate"]
    output: csv=R + "/tables/cells.csv", parquet=R + "/tables/cells.parquet"
    log: R + "/logs/cell_table.log"
    shell: "touch {{output}}"

rule seed_table:
    input: table=rules.cell_table.output.parquet, code=CODE["seed_table"]
    output: csv=R + "/tables/seeds.csv", parquet=R + "/tables/seeds.parquet"
    log: R + "/logs/seed_table.log"
    shell: "touch {{output}}"

rule heatmaps:
    input: table=rules.aggregate.output, code=CODE["plots"]
    output:
        change=R + "/figures/{{model}}/{{dataset}}/change_vs_base.png",
        change_pdf=R + "/figures/{{model}}/{{dataset}}/change_vs_base.pdf",
        accuracy=R + "/figures/{{model}}/{{dataset}}/accuracy.png",
        accuracy_pdf=R + "/figures/{{model}}/{{dataset}}/accuracy.pdf",
    log: R + "/logs/heatmaps/{{model}}/{{dataset}}.log"
    shell: "touch {{output}}"

rule training_loss:
    input: models=[R + "/models/{{model}}/{{dataset}}/train-" + b + "/hf" for b in BINS], code=CODE["plots"]
    output: png=R + "/figures/{{model}}/{{dataset}}/training_loss.png", pdf=R + "/figures/{{model}}/{{dataset}}/training_loss.pdf"
    log: R + "/logs/training_loss/{{model}}/{{dataset}}.log"
    shell: "touch {{output}}"

rule change_by_distance:
    input: tables=[R + "/tables/" + m + "/{{dataset}}.csv" for m in MODELS], code=CODE["plots"]
    output: png=R + "/figures/change_by_distance/{{dataset}}.png", pdf=R + "/figures/change_by_distance/{{dataset}}.pdf"
    log: R + "/logs/change_by_distance/{{dataset}}.log"
    shell: "touch {{output}}"

rule change_grid:
    input: tables=[R + "/tables/{{model}}/" + d + ".csv" for d in DATASETS], code=CODE["plots"]
    output: png=R + "/figures/change_grid/{{model}}.png", pdf=R + "/figures/change_grid/{{model}}.pdf"
    log: R + "/logs/change_grid/{{model}}.log"
    shell: "touch {{output}}"
"""

# The step each skeleton rule's code inputs come from (the workflow's rules list the same closures).
RULE_STEPS = {
    "download": "data",
    "fetch_model": "fetch_model",
    "fetch_nltk_data": "fetch_nltk_data",
    "bin": "binning",
    "train": "training",
    "generate": "generation",
    "score": "scoring",
    "aggregate": "aggregation",
    "seed_table": "seed_summary",
    "plots": "plots",
}


def skeleton_files(config: dict) -> dict:
    """The code inputs per skeleton rule and each dataset's task files (with the NLTK data ifeval's score
    jobs wait for), as the workflow lists them."""
    from workflow_scripts.lib import code_inputs

    code = {rule: list(code_inputs.closure(f"workflow_scripts.steps.{step}")) for rule, step in RULE_STEPS.items()}
    code["train"].append(config["launch"]["accelerate_config"])
    task_files = {}
    for name, dataset in config["datasets"].items():
        task_files[name] = code_inputs.task_inputs(dataset["task"])
        if name == "ifeval":
            task_files[name].append("resources/nltk_data/tokenizers/punkt_tab")
    return {"code": code, "task_files": task_files}


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
            SKELETON.format(
                models=list(config["models"]),
                datasets=list(config["datasets"]),
                n_bins=config["n_bins"],
                **skeleton_files(config),
            )
        )
        for folder in ("workflow_scripts", "tasks", "config"):  # the skeleton's code inputs, where it runs
            (Path(tmp) / folder).symlink_to(REPO / folder)
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
