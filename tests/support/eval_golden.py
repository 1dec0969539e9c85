"""The golden set of evaluation: cells of the sample data, and what each cell said about every question.

Issue 16 replaced the per-cell evaluate rule with generate (one lm-eval run per row) and score (a
replay of its outputs through lm-eval's filters and metrics); its golden set, recorded with the per-cell
rule at 039c70e, held each cell's metrics and a sha256 of its per-question log. Issue 23: those bytes
hold log-likelihoods to the last bit, and the trained models' floating point differs between CPU types
(training is deterministic per machine only), so the hash failed on another CPU while every metric was
equal. The golden file now holds, per cell, its compared keys and a per-question summary
(question_summary): what is exact on every machine, compared exactly, and the log-likelihoods rounded,
compared within LOGLIKELIHOOD_TOLERANCE (differences() says how; tests/unit/test_eval_golden.py uses it).

Two configs of the tiny model (HF backend, fp32, CPU) on the synthetic sample data, 3 bins:
- plain: every dataset's base row (all eight tasks, bbh's group included);
- switches: eval_split heldout, seeds [42, 7], in_context k 1: base-heldout of arc, and the in-context
  rows of gsm8k and bbh from bin 0 with both seeds (icl1-bin0-heldout, icl1-bin0-heldout-seed7).
And `demo`: every cell of `make demo` (config/demo.yaml: arc and gsm8k, base and trained rows 0-2),
compared with the suite's own demo run (the demo_run fixture, tests/integration/conftest.py).

Recording: `python tests/support/eval_golden.py RECORD_DIR` runs this checkout's Snakefile for the three sets,
each in its own working directory under RECORD_DIR (a second call runs only what is missing), and
rewrites tests/data/eval_golden.json from their cells. Re-record only when a change of the cells is
meant, and say in the commit at which commit and on which CPU it was recorded.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
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
# Log-likelihoods are float32 sums: 6 decimals keep all the model's precision (a float32 of magnitude 8 to
# 16 has steps of 1e-6 to 2e-6), and rounding moves a number by at most 5e-7, far inside the tolerance.
LOGLIKELIHOOD_DECIMALS = 6
# How far a log-likelihood may move (absolute, nats). Measured on the demo's arc cells (AMD EPYC with AVX-512):
# the same run with torch's, MKL's and oneDNN's kernels held to AVX2, or to no vector instructions at all
# (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA), trained and scored models whose
# log-likelihoods moved by at most 1.9e-6 (one float32 step at their magnitude, ~13), base and trained rows
# alike, and changed no answer. A real change moves them far more: a row trained on the next bin moves every
# question's by 0.1 nats or more. 1e-3 sits 500 times above that drift and 100 times below that change; and
# the chosen choice and every score are compared exactly, so a tolerance cannot hide a changed answer. (The
# closest call in the golden set: two choices 4e-5 apart, 20 times the drift.)
LOGLIKELIHOOD_TOLERANCE = 1e-3


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


def is_loglikelihoods(response) -> bool:
    """A multiple-choice question's filtered response: one [log-likelihood, is greedy] pair per choice."""
    return (
        isinstance(response, list)
        and len(response) > 0
        and all(
            isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], float) and isinstance(pair[1], bool)
            for pair in response
        )
    )


def question_summary(row: dict) -> dict:
    """One row of a cell's per-question log (workflow_scripts/evaluation.per_question_rows), as compared.

    Kept exactly: item id, target, in-context ids, generated text, every filtered answer and every
    per-question metric value. A multiple-choice answer becomes its choices' log-likelihoods (rounded to
    LOGLIKELIHOOD_DECIMALS), their is-greedy flags and the chosen choice (the first of the highest
    log-likelihood, as lm-eval's acc takes it). Left out: the raw response of a multiple-choice question
    (its first choice's pair, already among the filtered responses)."""
    summary = {}
    for key, value in row.items():
        name, _, filter_name = key.partition(",")
        if key == "raw_response":
            if not is_loglikelihoods([value]):
                summary["generated"] = value
        elif name == "response" and is_loglikelihoods(value):
            loglikelihoods = [pair[0] for pair in value]
            summary[f"loglikelihoods,{filter_name}"] = [round(ll, LOGLIKELIHOOD_DECIMALS) for ll in loglikelihoods]
            summary[f"is_greedy,{filter_name}"] = [pair[1] for pair in value]
            summary[f"chosen,{filter_name}"] = loglikelihoods.index(max(loglikelihoods))
        else:
            summary[key] = value
    return summary


def compared(cell_file: Path) -> dict:
    """A cell's compared keys and its questions' summaries, in the order of its per-question log."""
    cell = json.loads(cell_file.read_text())
    log = cell_file.with_name(cell_file.name.removesuffix(".json") + ".samples.jsonl").read_text()
    questions = [question_summary(json.loads(line)) for line in log.splitlines()]
    return {**{key: cell.get(key) for key in COMPARED_KEYS}, "questions": questions}


def collect(workdirs: dict[str, Path]) -> dict:
    """{set name: {cell: compared(cell)}} for the sets whose working directory is given."""
    return {
        name: {cell: compared(workdirs[name] / cell) for cell in cells}
        for name, cells in targets().items()
        if name in workdirs
    }


def differences(golden: dict, now: dict, tolerance: float = LOGLIKELIHOOD_TOLERANCE) -> list[str]:
    """Where the cells of now differ from the golden ones ({set: {cell: compared(cell)}} both), one line each.

    Everything is compared exactly but the `loglikelihoods,*` lists, whose numbers may each differ by
    tolerance (absolute, in nats): the chosen choice, the is-greedy flags and every per-question score
    beside them are exact, so no tolerance can let a changed answer through."""
    found = []
    if golden.keys() != now.keys():
        return [f"sets {sorted(now)} instead of {sorted(golden)}"]
    for name, cells in golden.items():
        if cells.keys() != now[name].keys():
            found.append(f"{name}: cells {sorted(now[name])} instead of {sorted(cells)}")
            continue
        for cell, expected in cells.items():
            actual = now[name][cell]
            for key in expected.keys() | actual.keys():
                if key != "questions" and expected.get(key) != actual.get(key):
                    found.append(f"{name} {cell}: {key} is {actual.get(key)!r}, golden {expected.get(key)!r}")
            expected_ids = [question.get("item_id") for question in expected.get("questions", [])]
            actual_ids = [question.get("item_id") for question in actual.get("questions", [])]
            if expected_ids != actual_ids:
                found.append(f"{name} {cell}: questions {actual_ids}, golden {expected_ids}")
                continue
            for want, got in zip(expected["questions"], actual["questions"]):
                where = f"{name} {cell} question {want.get('item_id')}"
                for key in want.keys() | got.keys():
                    if key.startswith("loglikelihoods,") and key in want and key in got:
                        close = len(want[key]) == len(got[key]) and all(
                            math.isclose(a, b, rel_tol=0, abs_tol=tolerance) for a, b in zip(want[key], got[key])
                        )
                        if not close:
                            found.append(f"{where}: {key} {got[key]}, golden {want[key]} (tolerance {tolerance})")
                    elif want.get(key) != got.get(key):
                        found.append(f"{where}: {key} is {got.get(key)!r}, golden {want.get(key)!r}")
    return found


def dumps(golden: dict) -> str:
    """The golden file's text: indented JSON, but each question on one line (in the log's key order), so the
    file stays small and a changed question is one changed line in a diff."""
    lines = []  # each question's line; the skeleton holds "\0<its index>" in its place

    def placeholder(question: dict) -> str:
        lines.append(json.dumps(question, ensure_ascii=False, separators=(",", ":")))
        return f"\0{len(lines) - 1}"

    skeleton = {
        name: {
            cell: {**summary, "questions": [placeholder(question) for question in summary["questions"]]}
            for cell, summary in cells.items()
        }
        for name, cells in golden.items()
    }
    text = json.dumps(skeleton, indent=1, sort_keys=True, ensure_ascii=False)
    # One pass: a question's own text is never searched for placeholders.
    return re.sub(r'"\\u0000(\d+)"', lambda match: lines[int(match[1])], text) + "\n"


def write_golden(workdirs: dict[str, Path]) -> None:
    GOLDEN.write_text(dumps(collect(workdirs)), encoding="utf-8")


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
    # python tests/support/eval_golden.py RECORD_DIR: runs this checkout's workflow for every set in RECORD_DIR, then
    # writes the golden file from its cells.
    write_golden(run(Path(sys.argv[1]).resolve()))
