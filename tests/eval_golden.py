"""The golden set of evaluation: cells of the sample data, recorded from the per-cell `evaluate` rule.

Issue 16 replaced the per-cell evaluate rule with generate (one lm-eval run per row) and score (a
replay of its outputs through lm-eval's filters and metrics). tests/data/eval_golden.json holds what
the per-cell rule wrote, so the workflow's cells can be compared with it long after that rule is gone
(tests/test_eval_golden.py). First recorded with the Snakefile of the commit before the change
(039c70e). `python tests/eval_golden.py RECORD_DIR` records from this checkout's Snakefile: it runs
the three sets, each in its own working directory under RECORD_DIR (a second call runs only what is
missing), and rewrites tests/data/eval_golden.json from their cells.

Two configs of the tiny model (HF backend, fp32, CPU) on the synthetic sample data, 3 bins:
- plain: every dataset's base row (all eight tasks, bbh's group included);
- switches: eval_split heldout, seeds [42, 7], in_context k 1: base-heldout of arc, and the in-context
  rows of gsm8k and bbh from bin 0 with both seeds (icl1-bin0-heldout, icl1-bin0-heldout-seed7).
And `demo`: every cell of `make demo` (config/demo.yaml: arc and gsm8k, base and trained rows 0-2),
recorded from the demo run of that commit (its trained models are the same to the last bit: training
is seeded and runs on the CPU), compared with the suite's own demo run (conftest.demo_run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DATASETS = ["arc", "gsm8k", "mmlu_pro", "gpqa_extended", "bbh", "musr", "math", "ifeval"]
# What a cell file says about its questions; timings, paths and versions are left out.
COMPARED_KEYS = (
    "task",
    "n",
    "metrics",
    "stderr",
    "subtasks",
    "backend",
    "dtype",
    "row_label",
    "train_kind",
    "train_bin",
    "in_context_k",
    "seed",
    "eval_split",
    "test_bin",
)
GOLDEN = REPO / "tests" / "data" / "eval_golden.json"


def configs() -> dict[str, dict]:
    demo = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    paper = yaml.safe_load((REPO / "config/config.yaml").read_text())["datasets"]
    datasets = {
        name: {
            **{k: v for k, v in paper[name].items() if k != "source"},
            "source": {"path": f"resources/demo/sample_data/{name}.jsonl"},
            "training": {"epochs": 1},
        }
        for name in DATASETS
    }
    plain = {**demo, "datasets": datasets, "evaluation": {**demo["evaluation"], "max_gen_toks": 8}}
    switches = {**plain, "eval_split": "heldout", "seeds": [42, 7], "in_context": {"k": 1}}
    return {"plain": plain, "switches": switches}


def targets() -> dict[str, list[str]]:
    """Cell files (relative to the working directory) each config is asked for."""

    def row(dataset, train):
        return [f"results/demo/cells/tiny-qwen2/{dataset}/train-{train}/test-{b}.json" for b in range(3)]

    plain = [cell for dataset in DATASETS for cell in row(dataset, "base")]
    switches = row("arc", "base-heldout") + [
        cell
        for dataset in ("gsm8k", "bbh")
        for name in ("icl1-bin0-heldout", "icl1-bin0-heldout-seed7")
        for cell in row(dataset, name)
    ]
    demo = [
        f"results/demo/cells/tiny-qwen2/{dataset}/train-{train}/test-{b}.json"
        for dataset in ("arc", "gsm8k")
        for train in ("base", "0", "1", "2")
        for b in range(3)
    ]
    return {"plain": plain, "switches": switches, "demo": demo}


def write_configs(folder: Path) -> dict[str, Path]:
    paths = {}
    for name, config in configs().items():
        paths[name] = folder / f"golden_{name}.yaml"
        paths[name].write_text(yaml.safe_dump(config, sort_keys=False))
    return paths


def compared(cell_file: Path) -> dict:
    """A cell's compared keys, and a hash of its per-question log: every response (generated text,
    log-likelihoods to the last bit), filtered answer and per-question score."""
    import hashlib

    cell = json.loads(cell_file.read_text())
    samples = cell_file.with_name(cell_file.name.removesuffix(".json") + ".samples.jsonl").read_bytes()
    return {**{key: cell.get(key) for key in COMPARED_KEYS}, "samples_sha256": hashlib.sha256(samples).hexdigest()}


def collect(workdirs: dict[str, Path]) -> dict:
    """{set name: {cell: compared(cell)}} for the sets whose working directory is given."""
    return {
        name: {cell: compared(workdirs[name] / cell) for cell in cells}
        for name, cells in targets().items()
        if name in workdirs
    }


def write_golden(workdirs: dict[str, Path]) -> None:
    GOLDEN.write_text(json.dumps(collect(workdirs), indent=1, sort_keys=True) + "\n")


def run(folder: Path, snakefile: Path = REPO / "Snakefile") -> dict[str, Path]:
    """Runs every set's config for its cells, each in its own working directory under folder (again: only
    what is missing); the demo's is config/demo.yaml itself, asked for its cells only."""
    import os
    import subprocess

    # The jobs run `python -m workflow_scripts...`: this environment's python first on PATH.
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    folder.mkdir(parents=True, exist_ok=True)
    config_files = {**write_configs(folder), "demo": REPO / "config/demo.yaml"}
    workdirs = {}
    for name, config in config_files.items():
        workdirs[name] = folder / name
        command = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(snakefile)]
        command += ["--directory", str(workdirs[name]), "--configfile", str(config), "--cores", "2"]
        subprocess.run([*command, *targets()[name]], env=env, check=True)
    return workdirs


if __name__ == "__main__":
    # python tests/eval_golden.py RECORD_DIR: runs this checkout's workflow for every set in RECORD_DIR, then
    # writes the golden file from its cells.
    write_golden(run(Path(sys.argv[1]).resolve()))
