"""Evaluate one model on one difficulty bin of one dataset with lm-evaluation-harness: one cell.

The bin restriction is one mechanism for every task: a per-cell yaml that includes the task file from
``tasks/`` and points ``dataset_kwargs.data_files`` at the bin's parquet. Only our task folder is
indexed (the harness's built-in index costs seconds per call). The cell file has the metrics, the
question count, the model and package versions; the per-question log sits beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from workflow_scripts.io_utils import atomic_write_json, atomic_write_text, package_versions

TASKS_DIR = Path(__file__).resolve().parent.parent / "tasks"


def cell_task_yaml(task: str, bin_file: str) -> str:
    if not (TASKS_DIR / f"{task}.yaml").is_file():
        raise FileNotFoundError(f"task {task!r} has no file {TASKS_DIR / (task + '.yaml')}; add it or fix datasets.*.task")
    spec = {
        "include": str(TASKS_DIR / f"{task}.yaml"),
        "task": task,
        "dataset_kwargs": {"data_files": {"test": str(Path(bin_file).resolve())}},
    }
    return yaml.safe_dump(spec, sort_keys=False)


def model_spec(backend: str, model_path: str, dtype: str, trust_remote_code: bool) -> tuple[str, dict]:
    import torch

    if backend == "vllm":
        if not torch.cuda.is_available():
            raise RuntimeError("evaluation.backend is 'vllm' but no CUDA device is visible; use 'hf' on a CPU")
        return "vllm", {"pretrained": model_path, "dtype": dtype, "trust_remote_code": trust_remote_code,
                        "tensor_parallel_size": torch.cuda.device_count()}  # fmt: skip
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return "hf", {"pretrained": model_path, "dtype": dtype, "trust_remote_code": trust_remote_code, "device": device}


def split_metrics(task_results: dict) -> tuple[dict, dict]:
    """lm-eval keys look like 'acc,none' and 'acc_stderr,none'; keep values and stderrs apart."""
    values, stderrs = {}, {}
    for key, value in task_results.items():
        if "," not in key:
            continue
        name, filter_name = key.split(",", 1)
        target = stderrs if name.endswith("_stderr") else values
        target[f"{name.removesuffix('_stderr')},{filter_name}"] = value
    return values, stderrs


def per_question_rows(samples: list[dict], metric_names: list[str]) -> list[dict]:
    """One row per question; lm-eval logs a question once per filter, so merge those entries."""
    rows: dict[int, dict] = {}
    for sample in samples:
        row = rows.setdefault(sample["doc_id"], {
            "item_id": str(sample["doc"].get("item_id", sample["doc_id"])),
            "target": str(sample["target"]),
        })  # fmt: skip
        filter_name = sample.get("filter", "none")
        row["raw_response"] = sample["resps"][0][0] if sample["resps"] and sample["resps"][0] else None
        row[f"response,{filter_name}"] = sample["filtered_resps"]
        for name in metric_names:
            if name in sample:
                row[f"{name},{filter_name}"] = sample[name]
    return list(rows.values())


def evaluate_cell(task: str, bin_file: str, model_path: str, backend: str = "hf", dtype: str = "float32",
                  batch_size: str = "auto", max_gen_toks: int | None = None, seed: int = 42,
                  trust_remote_code: bool = False) -> tuple[dict, list[dict]]:  # fmt: skip
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    started = time.time()
    model_type, model_args = model_spec(backend, model_path, dtype, trust_remote_code)
    task_manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    with tempfile.TemporaryDirectory() as tmp:
        cell_yaml = Path(tmp) / f"{task}.yaml"
        cell_yaml.write_text(cell_task_yaml(task, bin_file))
        output = simple_evaluate(
            model=model_type,
            model_args=model_args,
            tasks=[str(cell_yaml)],
            task_manager=task_manager,
            batch_size=batch_size,
            apply_chat_template=True,
            log_samples=True,
            gen_kwargs={"max_gen_toks": max_gen_toks} if max_gen_toks else None,
            random_seed=seed,
            numpy_random_seed=seed,
            torch_random_seed=seed,
            fewshot_random_seed=seed,
            bootstrap_iters=0,
        )
    values, stderrs = split_metrics(output["results"][task])
    metric_names = sorted({key.split(",")[0] for key in values})
    rows = per_question_rows(output["samples"][task], metric_names)
    cell = {
        "task": task,
        "n": len(rows),
        "metrics": values,
        "stderr": stderrs,
        "model_path": model_path,
        "backend": backend,
        "dtype": dtype,
        "eval_seconds": round(time.time() - started, 3),
        "versions": package_versions("lm_eval", "transformers", "torch", "vllm"),
    }
    return cell, rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True, help="task name, a file tasks/<task>.yaml")
    parser.add_argument("--bin-file", required=True, help="parquet of the test bin")
    parser.add_argument("--model", required=True, help="hub name or local folder")
    parser.add_argument("--out", required=True, help="cell json; the per-question log goes beside it")
    parser.add_argument("--label", default="{}", help="JSON merged into the cell file (model, dataset, bins)")
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--max-gen-toks", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)

    cell, rows = evaluate_cell(args.task, args.bin_file, args.model, args.backend, args.dtype, args.batch_size,
                               args.max_gen_toks, args.seed, args.trust_remote_code)  # fmt: skip
    cell.update(json.loads(args.label))
    out = Path(args.out)
    # Per-question log first, cell file last: a cell file on disk means the cell is complete.
    atomic_write_text("".join(json.dumps(r, default=str) + "\n" for r in rows), samples_path(out))
    atomic_write_json(cell, out)
    print(json.dumps({k: cell[k] for k in ("task", "n", "metrics", "eval_seconds")}))


def samples_path(cell_path: Path) -> Path:
    return cell_path.with_suffix(".samples.jsonl")


if __name__ == "__main__":
    main()
    # Both files are on disk (atomically). Tearing down the interpreter's torch/transformers/lm-eval
    # module graph takes ~1.5 s on a CPU, paid once per cell, 6,160 times in the paper grid: skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
