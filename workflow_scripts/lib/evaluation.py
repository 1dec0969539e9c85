"""lm-evaluation-harness on one difficulty bin of one dataset, the part shared by the generate and score
steps (steps/generation.py, steps/scoring.py).

The bin restriction is one mechanism for every task: a per-cell yaml that includes the task file from
``tasks/`` and points ``dataset_kwargs.data_files`` at the bin's parquet. Only our task folder is
indexed (the harness's built-in index costs seconds per call). The cell file has the metrics, the
question count, the model and package versions; the per-question log sits beside it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from workflow_scripts.lib import layout, runtime, task_files
from workflow_scripts.lib.io_utils import (
    atomic_write_json,
    atomic_write_text,
    package_versions,
    read_json,
    read_parquet,
    reading,
    remake_folder,
)

# Before torch is imported (only inside the functions below, never at the top of this file): CUDA
# queries that do not poison the fork of vLLM's engine process.
runtime.fork_safe_cuda_detection()

# The version of the raw files the generate step writes and the score step reads.
RAW_FORMAT = 1

# lm-eval finds a group only through its task index, where our own group already has the plain name.
CELL_GROUP_SUFFIX = "__cell"


def cell_task_spec(task: str, bin_file: str) -> dict:
    """What lm-eval is given to run `task` on one bin only: the task with its data pointed at the bin.

    For a task: a small task file that includes ours (see cell_task_yaml). For a group (bbh): the
    group's definition, whose non-group keys lm-eval hands down to every sub-task, cut to the
    sub-tasks that have questions in this bin (lm-eval cannot build a task with no documents)."""
    path = task_files.task_file(task)
    if not path.is_file():
        raise FileNotFoundError(f"task {task!r} has no file {path}; add it or fix datasets.*.task")
    bin_file = str(Path(bin_file).resolve())
    definition = task_files.read(path)
    data = {"data_files": {"test": bin_file}}
    if "group" in definition:
        import datasets

        documents = datasets.load_dataset("parquet", data_files={"test": bin_file}, split="test")
        children = [child for child in definition["task"] if _has_documents(child, documents)]
        return {**definition, "group": f"{task}{CELL_GROUP_SUFFIX}", "task": children, "dataset_kwargs": data}
    return {"include": str(path), "task": task, "dataset_kwargs": data}


def cell_task_yaml(task: str, bin_file: str) -> str:
    return yaml.safe_dump(cell_task_spec(task, bin_file), sort_keys=False)


def _has_documents(task: str, documents) -> bool:
    """Whether the task's process_docs leaves any of the bin's documents."""
    process_docs = task_files.read(task_files.task_file(task)).get("process_docs")
    if process_docs is None:
        return True
    return len(getattr(task_files.hooks(), process_docs)(documents)) > 0


def check_test_files(test_files) -> None:
    """Each test bin read once before any model loads: a truncated or foreign one fails naming its file,
    not inside lm-eval (whose datasets error names neither) after the model or vLLM's engine started."""
    for test_file in test_files:
        read_parquet(test_file, "test bin", remake_folder(test_file))


# What transformers and vLLM parse in a model folder besides the weights.
MODEL_JSON_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "model.safetensors.index.json",
)


def check_model_folder(model: str, weights: bool = True) -> None:
    """A local model folder's JSON files (and with `weights`, each safetensors file's header and length),
    read before the model loads: a truncated or foreign file fails naming itself, not in transformers or
    vLLM's engine after minutes. A hub name is left to the hub client."""
    folder = Path(model)
    if not folder.is_dir():
        return
    fix = f"fix: replace the file, or delete {folder} and run snakemake again to re-make it"
    for name in MODEL_JSON_FILES:
        if (folder / name).exists():
            read_json(folder / name, "model file", fix)
    for path in sorted(folder.glob("*.safetensors")) if weights else []:
        size = path.stat().st_size
        with reading(path, "model weights", "safetensors", fix, KeyError, TypeError, IndexError, AttributeError):
            with open(path, "rb") as handle:
                length = int.from_bytes(handle.read(8), "little")
                if length > size - 8:
                    raise ValueError(f"a header of {length} bytes in a file of {size}")
                tensors = json.loads(handle.read(length))
            end = 8 + length + max((t["data_offsets"][1] for k, t in tensors.items() if k != "__metadata__"), default=0)
            if end > size:  # the tensors' data runs past the end: a truncated copy
                raise ValueError(f"its tensors end at byte {end} but the file has {size}")


# On a CPU build of vLLM, the KV cache is carved out of host memory: a fixed, small size for the tiny
# test models (vLLM's default share of the machine's RAM fails on a shared machine).
CPU_VLLM_KV_CACHE_BYTES = 1 << 30


def model_spec(
    backend: str,
    model_path: str,
    dtype: str,
    trust_remote_code: bool,
    seed: int,
    chat_template_date: str | None = None,
    attention_backend: str | None = None,
    tensor_parallel: int = 0,
) -> tuple[str, dict]:
    """lm-eval's model name and arguments for one cell.

    CUDA is queried through NVML (fork_safe_cuda_detection ran at import). The chat template gets a
    fixed date (Llama 3.x templates otherwise print today's). vLLM gets the cell's seed (lm-eval's
    own default is 1234) and, on GPUs, the configured attention backend, and shards the model over
    `tensor_parallel` GPUs (the job's, resources.generate.gpu; 0: every GPU it sees)."""
    import torch

    args = {"pretrained": model_path, "dtype": dtype, "trust_remote_code": trust_remote_code}
    if chat_template_date:
        args["chat_template_args"] = {"date_string": chat_template_date}
    gpus = torch.cuda.device_count()
    if backend == "vllm":
        build = runtime.vllm_build()
        args["seed"] = seed
        if gpus:
            args["tensor_parallel_size"] = tensor_parallel or gpus
            if attention_backend:
                args["attention_backend"] = attention_backend
        elif runtime.is_cpu_vllm(build):
            args["kv_cache_memory_bytes"] = CPU_VLLM_KV_CACHE_BYTES
        else:
            raise ValueError(
                f"evaluation.backend is 'vllm' but no CUDA device is visible and the installed vLLM "
                f"({build or 'none'}) is not a CPU build; fix: use backend 'hf' on a CPU, or a CPU "
                "build of vLLM (see config/README.md, vLLM on a CPU)"
            )
        return "vllm", args
    return "hf", {**args, "device": "cuda" if gpus else "cpu"}


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
    """One row per question; lm-eval logs a question once per filter, so merge those entries.

    Keyed by our item id: a group's sub-tasks each count their documents from 0."""
    rows: dict[str, dict] = {}
    for sample in samples:
        item_id = str(sample["doc"].get("item_id", sample["doc_id"]))
        row = rows.setdefault(
            item_id,
            {
                "item_id": item_id,
                "target": str(sample["target"]),
            },
        )
        filter_name = sample.get("filter", "none")
        if "in_context_ids" in sample["doc"]:  # the examples this question was shown (in-context baseline)
            row["in_context_ids"] = list(sample["doc"]["in_context_ids"])
        row["raw_response"] = sample["resps"][0][0] if sample["resps"] and sample["resps"][0] else None
        row[f"response,{filter_name}"] = sample["filtered_resps"]
        for name in metric_names:
            if name in sample:
                row[f"{name},{filter_name}"] = sample[name]
    return list(rows.values())


def lm_eval_run_settings(batch_size: str, max_gen_toks: int | None, seed: int) -> dict:
    """How lm-eval runs our tasks, for a cell (here) and for a row's generation (generation.py) alike."""
    return {
        "batch_size": batch_size,
        "apply_chat_template": True,
        "gen_kwargs": {"max_gen_toks": max_gen_toks} if max_gen_toks else None,
        "random_seed": seed,
        "numpy_random_seed": seed,
        "torch_random_seed": seed,
        "fewshot_random_seed": seed,
        "bootstrap_iters": 0,
    }


def run_lm_eval(
    task: str,
    bin_file: str,
    model_path: str,
    backend: str,
    dtype: str,
    batch_size: str,
    max_gen_toks: int | None,
    seed: int,
    trust_remote_code: bool = False,
    spec_overrides: dict | None = None,
    chat_template_date: str | None = None,
    attention_backend: str | None = None,
    lm=None,
) -> tuple[dict, list[dict]]:
    """One cell. `lm`: an lm-eval model object to answer the requests instead of loading model_path
    (scoring.py's replay of a row's generation; tests that share one model load)."""
    import lm_eval.api.registry
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    # The task first: a bad task name or bin file fails before the model (or vLLM's engine) loads.
    # spec_overrides: task keys a cell changes (the in-context baseline's doc_to_text).
    spec = {**cell_task_spec(task, bin_file), **(spec_overrides or {})}
    started = time.time()
    model_args = {}
    if lm is None:
        model_type, model_args = model_spec(
            backend, model_path, dtype, trust_remote_code, seed, chat_template_date, attention_backend
        )
        # Built here rather than by simple_evaluate, to time it: for vLLM this is the engine start.
        lm = lm_eval.api.registry.get_model(model_type).create_from_arg_obj(
            model_args, {"batch_size": batch_size, "max_batch_size": None, "device": None}
        )
    model_load_seconds = time.time() - started
    with tempfile.TemporaryDirectory() as tmp:
        cell_file = Path(tmp) / "cell.yaml"
        cell_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        # A task file is given by path. A group must be indexed to be found, so then the cell's folder
        # is indexed beside ours. Never the built-in tasks: indexing them costs seconds per cell.
        folders = [tmp, str(task_files.TASKS_DIR)] if "group" in spec else [str(task_files.TASKS_DIR)]
        task_manager = TaskManager(include_path=folders, include_defaults=False)
        output = simple_evaluate(
            model=lm,
            tasks=[spec["group"] if "group" in spec else str(cell_file)],
            task_manager=task_manager,
            log_samples=True,
            **lm_eval_run_settings(batch_size, max_gen_toks, seed),
        )
    # A group (bbh) reports its aggregate under its own name and logs samples under its sub-tasks.
    name = f"{task}{CELL_GROUP_SUFFIX}" if "group" in spec else task
    values, stderrs = split_metrics(output["results"][name])
    subtasks = {other: split_metrics(result)[0] for other, result in output["results"].items() if other != name}
    metric_names = sorted({key.split(",")[0] for key in values})
    samples = [sample for name in sorted(output["samples"]) for sample in output["samples"][name]]
    rows = per_question_rows(samples, metric_names)
    cell = {
        "task": task,
        "n": len(rows),
        "metrics": values,
        "stderr": stderrs,
        "subtasks": subtasks,
        "model_path": model_path,
        "backend": backend,
        "dtype": dtype,
        "chat_template_date": chat_template_date,
        "attention_backend": model_args.get("attention_backend"),
        "eval_seconds": round(time.time() - started, 3),
        "model_load_seconds": round(model_load_seconds, 3),
        "gpu_memory_in_use_bytes": gpu_memory_in_use(),
        "versions": package_versions("lm_eval", "transformers", "torch", "vllm"),
    }
    return cell, rows


def gpu_memory_in_use() -> int | None:
    """Memory in use on the job's GPU after generation, while the engine still holds it (device-wide:
    vLLM's engine runs in a process of its own); None without a GPU. Asked only now: querying CUDA
    before vLLM starts its engine would break the engine's fork."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return int(total - free)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """How the model is run and prompted: the same arguments for a row (generation.py) and for one
    cell (tests/support/one_cell.py). Required, without defaults: the workflow passes the config's values."""
    parser.add_argument("--backend", required=True, choices=["hf", "vllm"])
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--batch-size", required=True)
    parser.add_argument("--max-gen-toks", type=int)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--chat-template-date", help="the date chat templates print (Llama 3.x), e.g. '26 Jul 2024'")
    parser.add_argument("--attention-backend", help="vLLM's attention backend on GPUs, e.g. TRITON_ATTN")
    add_in_context_arguments(parser)


def add_in_context_arguments(parser: argparse.ArgumentParser) -> None:
    """An in-context row's prompts (in_context.py): for its generation and for its scoring, which
    renders the same prompts again. With --in-context-k > 0 the other three are required."""
    parser.add_argument("--in-context-k", type=int, default=0, help="examples in the prompt (0: none)")
    parser.add_argument("--in-context-pool", help="parquet the examples are drawn from (the source bin)")
    parser.add_argument("--in-context-seed", type=int, help="keys the draw of the examples (the row's seed)")
    parser.add_argument("--prompt-format", help="how an example is written (workflow_scripts/lib/prompts.py)")


def write_cell(cell: dict, rows: list[dict], out: Path) -> None:
    # Per-question log first, cell file last: a cell file on disk means the cell is complete.
    atomic_write_text("".join(json.dumps(r, default=str) + "\n" for r in rows), samples_path(out))
    atomic_write_json(cell, out)


def samples_path(cell_path: Path) -> Path:
    return layout.samples(Path(cell_path))


def stop_child_processes(timeout: float = 60) -> None:
    """Stop the processes this one started (vLLM's engine process), as its exit handlers would."""
    import multiprocessing

    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
