"""What one job of the grid costs: time, memory and disk, from the work it does.

One module for both users of these figures: the SLURM requests of the train, convert and generate
rules (rules/common/resources.smk) and the plan printed before a grid is submitted (workflow_scripts/tools/plan.py).

A job's cost follows from its work: the model's parameter count (from its config.json, or the
`parameters` of its model entry before the model is fetched), the rows it trains on or answers (from
the bin files, or the dataset's expected size before they exist), the epochs and batch layout, and the
tokens it reads and writes. Throughputs are ASSUMPTIONS (below, the only place they are stated) until
the run has measured its own: each finished job's training.json, cell file and benchmarks/*.tsv give a
factor measured/assumed, and every estimate uses the factor of the nearest measured model size (a
pilot's one model corrects them all; more finished jobs sharpen them).

A request is the estimate plus headroom; each retry asks for more, capped at the partition's limit.
"""

from __future__ import annotations

import csv
import functools
import glob
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from workflow_scripts.lib import task_files

GB = 1e9
# Set for `make plan`'s dry-run (plan.py): sized jobs then carry their estimate and output size as the
# resources `expected_s` and `output_mb` (rules/common/resources.smk); two more functions per job cost a dry-run
# of the paper grid about a second, so other runs go without them.
PLAN_VARIABLE = "CROSS_DIFFICULTY_PLAN"

# ---- assumptions: replaced, factor by factor, by what the run's own jobs measured ---------------------
# B200 (180 GB HBM3e, 2.25 PFLOP/s dense bf16), one node, NVLink; a shared file system.
ASSUMPTIONS = {
    # Training: DeepSpeed ZeRO-3, bf16, paged 8-bit Adam. Per-device batches of 1-2 sequences of a few
    # hundred tokens keep the GPUs mostly waiting on parameter gathers: ~9% of peak.
    "train_tflops_per_gpu": 200.0,
    "train_step_overhead_s": 0.15,  # per optimizer step: ZeRO-3 fetch/release hooks, optimizer step, logging
    "train_startup_s": 90.0,  # interpreter and imports, accelerate rendezvous, DeepSpeed engine init
    "storage_read_gb_per_s": 1.0,  # one job reading a model from the shared file system
    "storage_write_gb_per_s": 0.5,  # one job writing a ZeRO state to it
    # ZeRO state of a checkpoint: fp32 master weights (4 B/param) + two 8-bit Adam moments (2 B/param).
    "zero_state_bytes_per_param": 6.0,
    "train_host_base_gb_per_rank": 6.0,  # host RAM per rank besides the model (CUDA context, data, workers)
    # Writing the ZeRO state, each rank copies its share of the fp32 masters (4 B/param in all) to host
    # memory at once (torch.save moves one storage at a time, and each rank's is one flat tensor).
    "train_host_bytes_per_param": 4.0,
    # Conversion (CPU): zero_to_fp32 holds the fp32 masters (4 B/param) while each tensor is cast to
    # bf16; benchmarks/convert_memory.py measured a peak of 4.25 B/param over 0.96 GB of imports.
    "convert_startup_s": 30.0,
    "convert_host_base_gb": 2.0,
    "convert_host_bytes_per_param": 4.5,
    # Evaluation: lm-eval + vLLM on one GPU. Start: imports, weights, torch.compile, CUDA graphs.
    "eval_startup_s": 70.0,
    "eval_decode_step_overhead_s": 0.005,  # per decode step, besides reading the weights once
    "eval_hbm_tb_per_s": 4.0,  # effective memory bandwidth while decoding (of ~8 TB/s)
    "eval_tflops": 500.0,  # effective, prefill and large decode batches
    "eval_max_sequences": 256,  # vLLM's default max_num_seqs: requests decoded at once
    "eval_bin_overhead_s": 5.0,  # per bin: building its requests, scoring them, writing the cell
    "eval_host_base_gb": 16.0,
    "eval_host_bytes_per_param": 2.0,
    "cell_bytes_per_question": 2000.0,  # a cell's per-question log (response, filters, metrics)
    "default_max_gen_toks": 256,  # lm-eval's generation limit where a task sets none
}

# The shape of each kind of data (keyed by prompt_format). `rows`: the dataset's size, used only until
# its bins exist. Token counts are rough means, chat template included; `base_answer_tokens` is what an
# instruct model writes before it stops (one answer per cell is assumed to run to the length limit); a
# fine-tuned model answers like its training target.
DATA_SHAPES = {
    "arc": dict(rows=1170, prompt_tokens=140, target_tokens=2, base_answer_tokens=0, choices=4),
    "bbh": dict(rows=5250, prompt_tokens=220, target_tokens=8, base_answer_tokens=80, choices=0),
    "gpqa_extended": dict(rows=546, prompt_tokens=260, target_tokens=2, base_answer_tokens=0, choices=4),
    "gsm8k": dict(rows=1319, prompt_tokens=140, target_tokens=120, base_answer_tokens=200, choices=0),
    "ifeval": dict(rows=541, prompt_tokens=110, target_tokens=350, base_answer_tokens=400, choices=0),
    "math": dict(rows=1324, prompt_tokens=130, target_tokens=10, base_answer_tokens=500, choices=0),
    "math_solutions": dict(rows=1324, prompt_tokens=130, target_tokens=350, base_answer_tokens=500, choices=0),
    "mmlu_pro": dict(rows=12032, prompt_tokens=330, target_tokens=2, base_answer_tokens=400, choices=0),
    "musr": dict(rows=756, prompt_tokens=1100, target_tokens=5, base_answer_tokens=0, choices=3),
}

# ---- the request policy -----------------------------------------------------------------------------
HEADROOM_SHARE = 0.5  # a request is the estimate + 50%,
HEADROOM_MIN_S = 180.0  # and at least 3 minutes more
MEMORY_HEADROOM = 1.25
RETRY_MEMORY_GROWTH = 0.5  # attempt k asks for (1 + 0.5 (k - 1)) x the memory


def runtime_request(estimate_s: float, attempt: int, max_minutes: int) -> int:
    """Minutes to ask for: the estimate with headroom, times the attempt, never above the partition limit."""
    first = math.ceil((estimate_s + max(HEADROOM_SHARE * estimate_s, HEADROOM_MIN_S)) / 60)
    return attempt_runtime(first, attempt, max_minutes)


def attempt_runtime(first_minutes: int, attempt: int, max_minutes: int) -> int:
    """Attempt k asks for k times the first attempt's minutes, capped at the partition limit."""
    return int(min(first_minutes * attempt, max_minutes))


def memory_request(estimate_bytes: float, attempt: int, max_mb: int) -> int:
    """MB to ask for, in whole GB: the estimate with headroom, growing with each attempt, capped."""
    first_gb = math.ceil(estimate_bytes * MEMORY_HEADROOM / GB)
    return int(min(first_gb * 1000 * (1 + RETRY_MEMORY_GROWTH * (attempt - 1)), max_mb))


def size_class(classes: list[dict], parameters: int) -> dict:
    """gpu and threads of the first `by_model_size` class whose max_parameters_b holds the model ({}:
    none does, the rule's own values apply). Classes are read in the order the config lists them."""
    for entry in classes:
        if parameters <= entry["max_parameters_b"] * 1e9:
            return {"gpu": entry["gpu"], "threads": entry["threads"]}
    return {}


def node_split(gpus: int, gpus_per_node: int) -> tuple[int, int]:
    """(nodes, GPUs on each) of a job of `gpus` GPUs on nodes of `gpus_per_node`: as few nodes as hold
    them, the same count on each (a ZeRO-3 job starts one launcher per node with as many ranks as the
    node has GPUs). ValueError where they cannot be spread evenly (12 over nodes of 8)."""
    if gpus <= gpus_per_node:
        return 1, gpus
    nodes = math.ceil(gpus / gpus_per_node)
    if gpus % nodes:
        raise ValueError(f"{gpus} GPUs do not spread evenly over {nodes} nodes of at most {gpus_per_node} GPUs")
    return nodes, gpus // nodes


# Full fine-tuning under ZeRO-3 keeps, spread over the job's GPUs: bf16 weights (2 B/param) and
# gradients (2), fp32 master weights (4), and the optimizer's two moments: 8-bit (2) or fp32 (8).
# Activations come on top (the pilot's memory probe measures them at the longest sequences).
GPU_STATE_BYTES_PER_PARAM = {"8bit": 10.0, "fp32": 16.0}


def zero3_state_bytes_per_gpu(parameters: int, gpus: int, optim: str) -> float:
    """ZeRO-3 training state one GPU holds for a model of `parameters` trained on `gpus` GPUs."""
    moments = "8bit" if "8bit" in optim else "fp32"
    return GPU_STATE_BYTES_PER_PARAM[moments] * parameters / max(gpus, 1)


def checkpoint_write_seconds(parameters: int) -> float:
    """Seconds to write one training checkpoint (the ZeRO state) at the assumed storage rate: what a train
    job keeps in hand before its time limit until it has measured its own (training.py)."""
    a = ASSUMPTIONS
    return a["zero_state_bytes_per_param"] * parameters / (a["storage_write_gb_per_s"] * GB)


# ---- facts read from disk (cached by path and modification time) --------------------------------------


@functools.lru_cache(maxsize=None)
def _json_file(path: str, mtime: float) -> dict:
    with open(path) as handle:
        return json.load(handle)


def _read_json(path: str) -> dict | None:
    try:
        return _json_file(path, os.path.getmtime(path))
    except (OSError, ValueError):
        return None


def parameter_count(config: dict) -> int:
    """Parameters of a decoder-only model from its config.json.

    Llama, Mistral and Qwen2 layouts by formula (exact: tests/unit/test_sizing.py checks it against the
    modules transformers builds); any other architecture is built on the meta device and counted."""
    config = config.get("text_config", config)
    kind = config.get("model_type")
    if kind not in ("llama", "mistral", "qwen2"):
        return _meta_device_count(config)
    hidden, layers, inner = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    if kind == "qwen2":  # Qwen2 has biases on q, k and v
        attention += heads * head_dim + 2 * kv_heads * head_dim
    elif config.get("attention_bias"):
        attention += heads * head_dim + 2 * kv_heads * head_dim + hidden
    mlp = 3 * hidden * inner + ((2 * inner + hidden) if config.get("mlp_bias") else 0)
    embedding = config["vocab_size"] * hidden
    head = 0 if config.get("tie_word_embeddings", False) else embedding
    return embedding + layers * (attention + mlp + 2 * hidden) + hidden + head


def _meta_device_count(config: dict) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    values = dict(config)
    built = AutoConfig.for_model(values.pop("model_type"), **values)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(built)
    return sum(p.numel() for p in model.parameters())


@functools.lru_cache(maxsize=None)
def _count_of(path: str, mtime: float) -> int:
    return parameter_count(_json_file(path, mtime))


def model_parameters(model_dir: str, declared: int | None, name: str) -> int:
    """The parameter count of a model: from its config.json where the model is on disk, else the
    `parameters` of its model entry (the model card's count), which a plan needs before fetch_model."""
    path = os.path.join(model_dir, "config.json")
    if os.path.isfile(path):
        return _count_of(path, os.path.getmtime(path))
    if declared:
        return int(declared)
    raise ValueError(
        f"models.{name}: its parameter count is unknown until {path} exists; "
        f"fix: set models.{name}.parameters (the count on the model card) or fetch the model first"
    )


def parquet_rows(path: str) -> int | None:
    """Rows of a bin file from its footer (no data read); None while the file does not exist."""
    if not os.path.isfile(path):
        return None
    return _rows_of(path, os.path.getmtime(path))


@functools.lru_cache(maxsize=None)
def _rows_of(path: str, mtime: float) -> int:
    import pyarrow.parquet

    return pyarrow.parquet.read_metadata(path).num_rows


def expected_rows(prompt_format: str, n_bins: int, share: float = 1.0) -> int:
    """Rows of one bin before the bins exist: equal-width quantile bins hold about equal shares."""
    return max(1, round(DATA_SHAPES[prompt_format]["rows"] * share / n_bins))


@functools.lru_cache(maxsize=None)
def _task_definition(path: str) -> dict:
    return task_files.read(Path(path))


def task_output(task_file: str) -> tuple[str, int]:
    """(output_type, max_gen_toks) of an lm-eval task file; for a group, over all of its tasks."""
    definition = _task_definition(task_file)
    if "group" in definition:
        folder = os.path.dirname(task_file)
        parts = [task_output(os.path.join(folder, f"{name}.yaml")) for name in definition["task"]]
        kind = "generate_until" if any(k == "generate_until" for k, _ in parts) else parts[0][0]
        return kind, max(limit for _, limit in parts)
    limit = (definition.get("generation_kwargs") or {}).get("max_gen_toks") or ASSUMPTIONS["default_max_gen_toks"]
    return definition.get("output_type", "generate_until"), int(limit)


# ---- measured rates -------------------------------------------------------------------------------------


def _benchmark(path: str) -> dict | None:
    """Snakemake's benchmark line of a job: s (wall seconds), max_rss (MB), ..."""
    try:
        with open(path) as handle:
            row = next(csv.DictReader(handle, delimiter="\t"))
        return {
            key: float(value) for key, value in row.items() if value not in ("", "NA", "-", None) and key != "h:m:s"
        }
    except (OSError, StopIteration, ValueError):
        return None


def _peak_memory_bytes(bench: dict) -> float:
    """A job's peak memory from its benchmark: PSS where measured (a page that several ranks map, such
    as a loaded model file, counts once, as the job's cgroup counts it), else RSS; both in MB."""
    return (bench.get("max_pss") or bench.get("max_rss") or 0) * 1e6


@dataclass
class Calibration:
    """Factors measured/assumed per model size, and measured tokens per example per dataset."""

    factors: dict = field(default_factory=dict)  # component -> {parameters: [factor, ...]}
    tokens_per_example: dict = field(default_factory=dict)  # dataset -> [tokens, ...]
    measured_jobs: dict = field(default_factory=dict)  # component -> count of jobs measured

    def add(self, component: str, parameters: int, measured: float, assumed: float) -> None:
        if measured > 0 and assumed > 0:
            self.factors.setdefault(component, {}).setdefault(int(parameters), []).append(measured / assumed)
            self.measured_jobs[component] = self.measured_jobs.get(component, 0) + 1

    def factor(self, component: str, parameters: int) -> float:
        """The median factor of the measured model nearest in size (1.0: nothing measured yet)."""
        measured = self.factors.get(component)
        if not measured:
            return 1.0
        nearest = min(measured, key=lambda size: abs(math.log(size / parameters)))
        return statistics.median(measured[nearest])

    def tokens(self, dataset: str, assumed: float) -> float:
        seen = self.tokens_per_example.get(dataset)
        return statistics.median(seen) if seen else assumed

    @classmethod
    def measure(cls, results_dir: str, prompt_formats: dict, tasks_dir: str, workdir: str = ".") -> "Calibration":
        """Read every finished train, convert and generate job of a results folder (the layout of
        workflow_scripts/lib/layout.py: models/M/D/train-B/hf/, cells/M/D/train-R/test-T.json, benchmarks/<rule>/...).
        `workdir`: where the cells' relative model paths start (Snakemake's working directory)."""
        calibration = cls()
        for record_path in glob.glob(os.path.join(results_dir, "models", "*", "*", "train-*", "hf", "training.json")):
            hf = os.path.dirname(record_path)
            model, dataset, row = hf.split(os.sep)[-4:-1]
            record = _read_json(record_path) or {}
            parameters = record.get("parameters") or _parameters_on_disk(hf)
            if parameters and dataset in prompt_formats:
                calibration._add_training(
                    record,
                    parameters,
                    dataset,
                    _benchmark(os.path.join(results_dir, "benchmarks", "train", model, dataset, f"{row}.tsv")),
                )
                converted = _benchmark(os.path.join(results_dir, "benchmarks", "convert", model, dataset, f"{row}.tsv"))
                if converted:
                    assumed = convert_estimate(parameters, _dtype_bytes(_read_json(os.path.join(hf, "config.json"))))
                    calibration.add("convert_time", parameters, converted["s"], assumed.seconds)
                    calibration.add("convert_memory", parameters, _peak_memory_bytes(converted), assumed.memory_bytes)
        rows: dict[tuple, list] = {}
        for cell_path in sorted(glob.glob(os.path.join(results_dir, "cells", "*", "*", "train-*", "test-*.json"))):
            cell = _read_json(cell_path) or {}
            model, dataset, row = cell_path.split(os.sep)[-4:-1]
            parameters = _parameters_on_disk(os.path.join(workdir, cell.get("model_path", "")))
            if not parameters or dataset not in prompt_formats or "n" not in cell:
                continue
            task_file = os.path.join(tasks_dir, f"{cell.get('task')}.yaml")
            if not os.path.isfile(task_file):
                continue
            kind, limit = task_output(task_file)
            work = EvalWork(
                parameters,
                int(cell["n"]),
                prompt_formats[dataset],
                kind,
                limit,
                trained=cell.get("train_kind") == "bin",
                in_context_k=cell.get("in_context_k") or 0,
            )
            if "generation_seconds" in cell:  # the row's generate job timed it
                rows.setdefault((model, dataset, row), []).append((work, cell))
        for (model, dataset, row), cells in rows.items():
            bench = _benchmark(os.path.join(results_dir, "benchmarks", "generate", model, dataset, f"{row}.tsv"))
            calibration._add_row(tuple(work for work, _ in cells), cells[0][1]["generation_seconds"], bench)
        return calibration

    def _add_training(self, record: dict, parameters: int, dataset: str, bench: dict | None) -> None:
        settings = record.get("settings", {})
        examples, epochs = record.get("examples"), record.get("epochs")
        if not examples or not epochs or not record.get("tokens_seen"):
            return
        per_example = record["tokens_seen"] / (examples * epochs)
        self.tokens_per_example.setdefault(dataset, []).append(per_example)
        if record.get("resumed_from_step"):
            return  # its runtime covers only the resumed part
        work = TrainWork(
            parameters,
            examples,
            epochs,
            settings.get("per_device_batch_size", 1),
            settings.get("gradient_accumulation_steps", 1),
            bool(settings.get("gradient_checkpointing")),
            record.get("world_size", 1),
            per_example,
            0,
        )
        assumed = train_estimate(work)
        checkpoint_s = sum(c.get("seconds", 0) for c in record.get("checkpoints", []))
        self.add("train_work", parameters, record.get("train_runtime_s", 0) - checkpoint_s, assumed.parts["work_s"])
        if bench:
            self.add("train_fixed", parameters, bench["s"] - record.get("train_runtime_s", 0), assumed.parts["fixed_s"])
            self.add("train_memory", parameters, _peak_memory_bytes(bench), assumed.memory_bytes)

    def _add_row(self, works: tuple, generation_s: float, bench: dict | None) -> None:
        """A generate job: the row's generation time (all its bins) from the raw files, its start-up
        the rest of the job's benchmark."""
        assumed = row_estimate(works)
        n = works[0].parameters
        self.add("eval_generation", n, generation_s, assumed.parts["generation_s"])
        if bench:
            self.add("eval_startup", n, bench["s"] - generation_s, assumed.parts["startup_s"])
            self.add("eval_memory", n, _peak_memory_bytes(bench), assumed.memory_bytes)


NO_MEASUREMENTS = Calibration()


def _parameters_on_disk(model_dir: str) -> int | None:
    path = os.path.join(model_dir, "config.json")
    return _count_of(path, os.path.getmtime(path)) if os.path.isfile(path) else None


def _dtype_bytes(config: dict | None) -> int:
    dtype = (config or {}).get("dtype") or (config or {}).get("torch_dtype") or "bfloat16"
    return 4 if dtype == "float32" else 2


# ---- estimates ------------------------------------------------------------------------------------------


@dataclass
class Estimate:
    seconds: float
    memory_bytes: float
    output_bytes: float  # what the job leaves on disk as its outputs
    parts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainWork:
    parameters: int
    examples: int
    epochs: float
    per_device_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    ranks: int
    tokens_per_example: float
    checkpoint_minutes: float

    @property
    def steps(self) -> int:
        """Optimizer steps, counted as the Trainer counts them (each rank gets ceil(examples / ranks))."""
        batches = math.ceil(math.ceil(self.examples / self.ranks) / self.per_device_batch_size)
        return math.ceil(self.epochs * math.ceil(batches / self.gradient_accumulation_steps))


def train_estimate(work: TrainWork, calibration: Calibration = NO_MEASUREMENTS) -> Estimate:
    a, n = ASSUMPTIONS, work.parameters
    flops_per_token = (8 if work.gradient_checkpointing else 6) * n  # checkpointing recomputes the forward
    tokens_per_gpu_step = work.per_device_batch_size * work.gradient_accumulation_steps * work.tokens_per_example
    step_s = a["train_step_overhead_s"] + tokens_per_gpu_step * flops_per_token / (a["train_tflops_per_gpu"] * 1e12)
    work_s = work.steps * step_s * calibration.factor("train_work", n)
    zero_bytes = a["zero_state_bytes_per_param"] * n
    save_s = zero_bytes / (a["storage_write_gb_per_s"] * GB)
    fixed_s = (a["train_startup_s"] + 2 * n / (a["storage_read_gb_per_s"] * GB) + save_s) * calibration.factor(
        "train_fixed", n
    )
    interval = work.checkpoint_minutes * 60
    checkpoints = max(0, math.ceil(work_s / interval) - 1) if interval > 0 else 0  # none at the final step
    memory = (
        a["train_host_base_gb_per_rank"] * work.ranks * GB + a["train_host_bytes_per_param"] * n
    ) * calibration.factor("train_memory", n)
    return Estimate(
        seconds=work_s + fixed_s + checkpoints * save_s,
        memory_bytes=memory,
        output_bytes=zero_bytes,
        parts={
            "work_s": work_s,
            "fixed_s": fixed_s,
            "checkpoints": checkpoints,
            "checkpoint_bytes": zero_bytes,
            "steps": work.steps,
            "tokens": work.examples * work.epochs * work.tokens_per_example,
        },
    )


def convert_estimate(parameters: int, dtype_bytes: int, calibration: Calibration = NO_MEASUREMENTS) -> Estimate:
    a, n = ASSUMPTIONS, parameters
    read, write = a["storage_read_gb_per_s"] * GB, a["storage_write_gb_per_s"] * GB
    # Read the ZeRO state, write the model, read it back for the probe check.
    seconds = (
        a["convert_startup_s"] + a["zero_state_bytes_per_param"] * n / read + dtype_bytes * n * (1 / write + 1 / read)
    )
    memory = a["convert_host_base_gb"] * GB + a["convert_host_bytes_per_param"] * n
    return Estimate(
        seconds=seconds * calibration.factor("convert_time", n),
        memory_bytes=memory * calibration.factor("convert_memory", n),
        output_bytes=dtype_bytes * n,
    )


@dataclass(frozen=True)
class EvalWork:
    parameters: int
    questions: int
    prompt_format: str
    output_type: str  # lm-eval's: generate_until, multiple_choice, loglikelihood
    max_gen_toks: int
    trained: bool  # a fine-tuned model answers like its target; the base model like an instruct model
    in_context_k: int = 0


def evaluation_startup_s(parameters: int, calibration: Calibration = NO_MEASUREMENTS) -> float:
    """Seconds before the first request: imports, weights from the file system, engine start."""
    a = ASSUMPTIONS
    return (a["eval_startup_s"] + 2 * parameters / (a["storage_read_gb_per_s"] * GB)) * calibration.factor(
        "eval_startup", parameters
    )


def evaluation_generation_s(work: EvalWork, calibration: Calibration = NO_MEASUREMENTS) -> float:
    """Seconds to answer one bin's questions once the engine runs: prefill, then decoding in waves of
    up to eval_max_sequences answers; a generation-limit tail for the base model. A job that serves
    several bins with one engine pays evaluation_startup_s once and this once per bin."""
    a, n, shape = ASSUMPTIONS, work.parameters, DATA_SHAPES[work.prompt_format]
    weight_bytes = 2 * n
    prompt_tokens = shape["prompt_tokens"] + work.in_context_k * (shape["prompt_tokens"] + shape["target_tokens"])
    sequences = work.questions * max(1, shape["choices"] if work.output_type != "generate_until" else 1)
    prefill_s = sequences * prompt_tokens * 2 * n / (a["eval_tflops"] * 1e12)
    decode_s = 0.0
    if work.output_type == "generate_until":
        answer = min(work.max_gen_toks, shape["target_tokens"] if work.trained else shape["base_answer_tokens"])
        batch = min(work.questions, a["eval_max_sequences"])
        step_s = a["eval_decode_step_overhead_s"] + max(
            weight_bytes / (a["eval_hbm_tb_per_s"] * 1e12), batch * 2 * n / (a["eval_tflops"] * 1e12)
        )
        steps = math.ceil(work.questions / a["eval_max_sequences"]) * max(answer, 1)
        if not work.trained:
            steps += work.max_gen_toks - answer  # one answer runs on to the limit
        decode_s = steps * step_s
    return (a["eval_bin_overhead_s"] + prefill_s + decode_s) * calibration.factor("eval_generation", n)


def row_estimate(works: tuple[EvalWork, ...], calibration: Calibration = NO_MEASUREMENTS) -> Estimate:
    """A generate job: one engine start, then every bin of the row (works: one EvalWork per bin)."""
    cells = [bin_estimate(work, calibration) for work in works]
    startup_s = cells[0].parts["startup_s"]
    generation_s = sum(cell.parts["generation_s"] for cell in cells)
    return Estimate(
        seconds=startup_s + generation_s,
        memory_bytes=max(cell.memory_bytes for cell in cells),
        output_bytes=sum(cell.output_bytes for cell in cells),
        parts={"startup_s": startup_s, "generation_s": generation_s},
    )


def bin_estimate(work: EvalWork, calibration: Calibration = NO_MEASUREMENTS) -> Estimate:
    """One test bin of a generate job, as if it ran alone (row_estimate counts one engine start)."""
    a, n = ASSUMPTIONS, work.parameters
    startup_s, generation_s = evaluation_startup_s(n, calibration), evaluation_generation_s(work, calibration)
    memory = (a["eval_host_base_gb"] * GB + a["eval_host_bytes_per_param"] * n) * calibration.factor("eval_memory", n)
    return Estimate(
        seconds=startup_s + generation_s,
        memory_bytes=memory,
        output_bytes=work.questions * a["cell_bytes_per_question"],
        parts={"startup_s": startup_s, "generation_s": generation_s},
    )
