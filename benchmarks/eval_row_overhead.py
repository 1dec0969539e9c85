"""CPU cost of evaluating one row of the grid (one model on every test bin of a dataset) two ways,
side by side in one run on the same machine:

- per cell: one `python -m workflow_scripts.lib.evaluation` process per bin, as the workflow ran before
  issue 16 (the `evaluate` rule);
- per row: one `python -m workflow_scripts.steps.generation` process for all bins, then one
  `python -m workflow_scripts.steps.scoring` process that scores every cell from the raw outputs, as the
  `generate` and `score` rules run them now.

Both on the same bins and model; the cell files of the two ways are compared too (with the HF backend
they must be equal to the last bit, see generation.one_call_per_bin). The two ways alternate
(`--repeats`) so that a change of machine load hits both.

    .venv/bin/python benchmarks/eval_row_overhead.py                      # arc, 10 bins of 20, tiny model
    .venv/bin/python benchmarks/eval_row_overhead.py --dataset gsm8k --max-gen-toks 24
    # vLLM's CPU build, in a venv of its own (issue 14); its attention needs head_dim 64 (hidden 256):
    .venv/bin/python benchmarks/eval_row_overhead.py --backend vllm --python .venv-vllm/bin/python --hidden-size 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# Keys of a cell file that are timings or versions, not results.
NOT_RESULTS = {"eval_seconds", "model_load_seconds", "versions", "scoring_versions", "generation_seconds"}


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def per_cell(args, task, bins, model, folder, env) -> dict:
    wall = cpu = 0.0
    for k, path in bins.items():
        command = [
            args.python,
            "-m",
            "workflow_scripts.lib.evaluation",
            "--task",
            task,
            "--bin-file",
            path,
            "--model",
            model,
            "--out",
            str(folder / f"cell-{k}.json"),
            "--label",
            json.dumps({"test_bin": k}),
            *settings(args),
        ]
        w, c = timed(command, env)
        wall, cpu = wall + w, cpu + c
    return {"wall": wall, "cpu": cpu}


def per_row(args, task, bins, model, folder, env) -> dict:
    generate = [
        args.python,
        "-m",
        "workflow_scripts.steps.generation",
        "--task",
        task,
        "--model",
        model,
        *settings(args),
    ]
    # Scoring needs no vLLM: it runs where the workflow's score jobs run (the eval env; here this python).
    score = [sys.executable, "-m", "workflow_scripts.steps.scoring", "--task", task]
    for k, path in bins.items():
        generate += ["--bin", str(k), path, str(folder / f"raw-{k}.json")]
        score += ["--cell", str(k), path, str(folder / f"raw-{k}.json"), str(folder / f"cell-{k}.json")]
    generation_wall, generation_cpu = timed(generate, env)
    scoring_wall, scoring_cpu = timed(score, env)
    return {
        "wall": generation_wall + scoring_wall,
        "cpu": generation_cpu + scoring_cpu,
        "generation": generation_wall,
        "scoring": scoring_wall,
    }


def settings(args) -> list[str]:
    extra = ["--backend", args.backend, "--dtype", "float32", "--batch-size", str(args.batch_size), "--seed", "42"]
    return extra + (["--max-gen-toks", str(args.max_gen_toks)] if args.max_gen_toks else [])


def compare(old: Path, new: Path, bins) -> dict:
    """Cells whose results differ, and the largest difference of a logged number (log-likelihood)."""
    differing, largest = 0, 0.0
    for k in bins:
        a, b = (json.loads((folder / f"cell-{k}.json").read_text()) for folder in (old, new))
        strip = lambda cell: {key: value for key, value in cell.items() if key not in NOT_RESULTS}  # noqa: E731
        rows_a, rows_b = ((folder / f"cell-{k}.samples.jsonl").read_text() for folder in (old, new))
        differing += strip(a) != strip(b) or rows_a != rows_b
        for line_a, line_b in zip(rows_a.splitlines(), rows_b.splitlines()):
            x, y = json.loads(line_a).get("raw_response"), json.loads(line_b).get("raw_response")
            if isinstance(x, list) and isinstance(y, list):
                largest = max(largest, abs(x[0] - y[0]))
    return {"differing_cells": differing, "largest_loglikelihood_difference": largest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="arc")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--per-bin", type=int, default=20, help="questions per bin")
    parser.add_argument("--batch-size", default="16")
    parser.add_argument("--max-gen-toks", type=int, default=24, help="for generated tasks (the demo's)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each way")
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the steps")
    parser.add_argument("--model", help="a model folder (default: a tiny model built here)")
    parser.add_argument("--hidden-size", type=int, default=64, help="of the tiny model (vLLM on CPU: 256)")
    args = parser.parse_args()

    from workflow_scripts.demo import sample_data, tiny_model
    from workflow_scripts.steps import binning, data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or str(tiny_model.build(tmp / "tiny", hidden_size=args.hidden_size))
        rows = sample_data.GENERATORS[args.dataset](args.bins * args.per_bin)
        rows.to_json(tmp / "rows.jsonl", orient="records", lines=True)
        table = data.normalize(data.load_source({"path": str(tmp / "rows.jsonl")}))
        bins = {}
        for k, part in enumerate(binning.split_into_bins(table, args.bins, "1pl_quantile")):
            part.to_parquet(tmp / f"bin-{k}.parquet")
            bins[k] = str(tmp / f"bin-{k}.parquet")
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        task = f"cross_difficulty_{args.dataset}"
        load_before = os.getloadavg()[0]
        runs = {"per cell": [], "per row": []}
        for repeat in range(args.repeats):
            for way, run in (("per cell", per_cell), ("per row", per_row)):
                folder = tmp / f"{way.replace(' ', '-')}-{repeat}"
                folder.mkdir()
                runs[way].append(run(args, task, bins, model, folder, env))
        same = compare(tmp / "per-cell-0", tmp / "per-row-0", bins)
        load_after = os.getloadavg()[0]

    print(
        f"one row of {args.bins} {args.dataset} bins ({args.per_bin} questions each), {args.backend} backend, "
        f"batch {args.batch_size}, model {'given' if args.model else f'tiny (hidden {args.hidden_size})'}; "
        f"{os.cpu_count()} CPUs, load {load_before:.1f} before, {load_after:.1f} after"
    )
    for way, measured in runs.items():
        walls = [m["wall"] for m in measured]
        cpus = [m["cpu"] for m in measured]
        line = (
            f"  {way:9s} wall {statistics.median(walls):7.1f} s (runs {', '.join(f'{w:.1f}' for w in walls)}), "
            f"CPU {statistics.median(cpus):7.1f} s"
        )
        if way == "per row":
            line += (
                f"; generation {statistics.median(m['generation'] for m in measured):.1f} s, "
                f"scoring {statistics.median(m['scoring'] for m in measured):.1f} s"
            )
        print(line)
    ratio = statistics.median(m["wall"] for m in runs["per cell"]) / statistics.median(
        m["wall"] for m in runs["per row"]
    )
    print(f"  per cell / per row: {ratio:.1f}x wall")
    print(
        f"  cells that differ between the two ways: {same['differing_cells']} of {args.bins}; "
        f"largest log-likelihood difference {same['largest_loglikelihood_difference']:.3g}"
    )


if __name__ == "__main__":
    main()
