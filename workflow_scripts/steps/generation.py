"""Generation: one model on every test bin of its dataset in one lm-eval run, the model loaded once.

A row of the grid (model, dataset, row: a trained bin with its tags, `base`, an in-context row) is
tested on each test bin of its dataset. One lm-eval run per cell (evaluation.run_lm_eval) would load the
model (and start a vLLM engine) once per cell; here once per row. Each bin is a task of its own name
(`<task>__test-<bin>`; a group such as bbh becomes its sub-tasks, each cut to the bin as the cell's own
run cuts it), so one lm-eval run builds every bin's requests and hands them to one model. The tasks
run without their scoring parts (their filters; lm-eval's predict_only mode skips metrics and
process_results): nothing that scores can fail a GPU job after its generation is done. Each bin's raw outputs are a file
of their own: per request the task name the cell's own run gives it, doc_id, idx, request type, the
prompt arguments and the responses (generated text, or [log-likelihood, is-greedy]), next to what
generated them (model, backend, dtype, seed, lengths, chat template arguments, versions). With the HF
backend the model is called bin by bin inside that run (one_call_per_bin: its cells then equal the
per-cell ones to the last bit); with vLLM once for the whole row.
scoring.py turns each of them into the cell files of the row.

In the workflow (rules/generate.smk) this is the `generate` job of a row, one per row on the GPU;
its inputs are the model, the test files, the in-context pool, and its arguments carry the generation
settings and task_parts.generation_fingerprint(task), not the task files (an edit of a filter or a
metric then re-runs no GPU job). The raw files are kept: scoring re-runs from them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

from workflow_scripts.lib import evaluation, runtime, task_files
from workflow_scripts.lib.io_utils import atomic_write_json, one_line_errors, package_versions

# The name a bin's task runs under in a row's run: the cell's own task name and the bin.
BIN_TASK = "{task}__test-{test_bin}"

# What the model is asked, per lm-eval output type.
REQUEST_TYPES = {
    "multiple_choice": "loglikelihood",
    "generate_until": "generate_until",
    "loglikelihood": "loglikelihood",
    "loglikelihood_rolling": "loglikelihood_rolling",
}


def bin_tasks(task: str, test_bin, test_file: str, spec_overrides: dict | None = None) -> list[tuple[str, dict]]:
    """The tasks lm-eval runs for one bin of a row: (its name in the cell's own run, its spec here).

    Built from the cell's own spec (evaluation.cell_task_spec), so documents and prompts are the same;
    a group is replaced by its sub-tasks with the keys the group hands down to them."""
    from lm_eval.config.group import GroupConfig

    spec = {**evaluation.cell_task_spec(task, test_file), **(spec_overrides or {})}
    if "group" in spec:
        group_keys = {field.name for field in dataclasses.fields(GroupConfig)}
        handed_down = {key: value for key, value in spec.items() if key not in group_keys}
        leaves = [(child, {"include": str(task_files.task_file(child)), **handed_down}) for child in spec["task"]]
    else:
        leaves = [(task, spec)]
    # filter_list: None runs lm-eval's default (take the response as it is), never the task's filters.
    return [
        (name, {**leaf, "task": BIN_TASK.format(task=name, test_bin=test_bin), "filter_list": None})
        for name, leaf in leaves
    ]


def load_model(
    backend: str,
    model_path: str,
    dtype: str,
    batch_size: str,
    trust_remote_code: bool,
    seed: int,
    chat_template_date: str | None = None,
    attention_backend: str | None = None,
    tensor_parallel: int = 0,
):
    """The lm-eval model object, made as simple_evaluate makes it, kept so the raw files can say which
    chat template arguments rendered the prompts."""
    import lm_eval.models  # noqa: F401  (fills the model registry)
    from lm_eval.api.registry import get_model

    model_type, model_args = evaluation.model_spec(
        backend, model_path, dtype, trust_remote_code, seed, chat_template_date, attention_backend, tensor_parallel
    )
    return get_model(model_type).create_from_arg_obj(model_args, {"batch_size": batch_size}), model_args


def one_call_per_bin(backend: str) -> bool:
    """Whether the model gets each bin's requests in a call of its own.

    The HF backend pads each batch to its longest request, and a batch's shape changes its floats
    (log-likelihoods of the tiny model were seen to differ in the 7th digit; a greedy choice between
    near-equal tokens could flip): bin by bin, its batches are those of a per-cell run, so its cells
    are exactly the per-cell ones.
    vLLM schedules what it is given continuously; given the whole row, it fills the GPU across bins
    instead of idling at each bin's longest generation. Its floats depend on the schedule either way."""
    return backend == "hf"


@contextlib.contextmanager
def _calls_per_bin(lm, bin_of: dict):
    """While active, each request-type call into `lm` is made once per bin, in the order lm-eval gave."""

    def split(method):
        def call(requests, *args, **kwargs):
            answers, by_bin = [None] * len(requests), {}
            for position, request in enumerate(requests):
                by_bin.setdefault(bin_of[request.task_name], []).append(position)
            for positions in by_bin.values():
                for position, answer in zip(
                    positions, method([requests[p] for p in positions], *args, **kwargs), strict=True
                ):
                    answers[position] = answer
            return answers

        return call

    names = [name for name in ("loglikelihood", "loglikelihood_rolling", "generate_until") if hasattr(lm, name)]
    before = {name: lm.__dict__[name] for name in names if name in lm.__dict__}
    for name in names:
        setattr(lm, name, split(getattr(lm, name)))  # an instance attribute: the class is left alone
    try:
        yield
    finally:
        for name in names:
            if name in before:
                setattr(lm, name, before[name])
            else:
                delattr(lm, name)


def generate_row(
    task: str,
    test_files: dict,
    lm,
    batch_size: str,
    max_gen_toks: int | None,
    seed: int,
    spec_overrides: dict | None = None,
    per_bin: bool = True,
) -> tuple[dict, float]:
    """One lm-eval run of `lm` over the bins {test_bin: test file}; spec_overrides {test_bin: task keys}
    (the in-context prompt); per_bin: one model call per bin (see one_call_per_bin).
    Returns ({test_bin: [request records]}, seconds)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    started = time.time()
    names = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for test_bin, test_file in test_files.items():
            for name, spec in bin_tasks(task, test_bin, test_file, (spec_overrides or {}).get(test_bin)):
                path = Path(tmp) / f"{spec['task']}.yaml"
                path.write_text(yaml.safe_dump(spec, sort_keys=False))
                names[spec["task"]] = (test_bin, name)
                paths.append(str(path))
        bin_of = {run_name: test_bin for run_name, (test_bin, _) in names.items()}
        with _calls_per_bin(lm, bin_of) if per_bin else contextlib.nullcontext():
            output = simple_evaluate(
                model=lm,
                tasks=paths,
                task_manager=TaskManager(include_path=str(task_files.TASKS_DIR), include_defaults=False),
                predict_only=True,
                **evaluation.lm_eval_run_settings(batch_size, max_gen_toks, seed),
            )
    records = {test_bin: [] for test_bin in test_files}
    for run_name, samples in output["samples"].items():
        test_bin, name = names[run_name]
        request_type = REQUEST_TYPES[output["configs"][run_name]["output_type"]]
        for sample in samples:
            # One sample per document (no filters here); its requests come sorted by idx.
            for idx, (arguments, responses) in enumerate(zip(sample["arguments"], sample["resps"], strict=True)):
                records[test_bin].append(
                    {
                        "task": name,
                        "doc_id": sample["doc_id"],
                        "idx": idx,
                        "request_type": request_type,
                        "arguments": arguments,
                        "resps": responses,
                    }
                )
    return records, time.time() - started


def raw_record(
    requests: list[dict],
    *,
    task: str,
    test_bin,
    model_path: str,
    backend: str,
    dtype: str,
    batch_size,
    max_gen_toks,
    seed: int,
    lm,
    model_args: dict | None,
    seconds: float,
    row_bins: list,
    task_fingerprint: str | None = None,
    model_load_seconds: float | None = None,
) -> dict:
    """One bin's raw file: what generated it, then its requests."""
    generation = {
        "format": evaluation.RAW_FORMAT,
        "task": task,
        # task_parts.generation_fingerprint of the task when it ran (the workflow passes it).
        "task_fingerprint": task_fingerprint,
        "test_bin": test_bin,
        "model_path": model_path,
        "backend": backend,
        "dtype": dtype,
        "batch_size": batch_size,
        "max_gen_toks": max_gen_toks,
        "seed": seed,
        "model_args": model_args,
        # The prompts were rendered with these; the replay renders with them too.
        "chat_template_args": dict(getattr(lm, "chat_template_args", None) or {}),
        "row_seconds": round(seconds, 3),
        # Loading the model (vLLM: starting its engine), once for the row.
        "model_load_seconds": None if model_load_seconds is None else round(model_load_seconds, 3),
        "row_bins": row_bins,
        "versions": package_versions("lm_eval", "transformers", "torch", "vllm"),
    }
    return {"generation": generation, "requests": requests}


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="task name, a file tasks/<task>.yaml")
    parser.add_argument("--task-fingerprint", help="the task's generation fingerprint (task_parts.py), recorded")
    parser.add_argument(
        "--bin",
        nargs=3,
        action="append",
        required=True,
        metavar=("TEST_BIN", "TEST_FILE", "RAW_OUT"),
        help="a test bin, its parquet and the raw-output file to write; once per bin",
    )
    parser.add_argument("--model", required=True, help="hub name or local folder")
    evaluation.add_model_arguments(parser)
    parser.add_argument(
        "--gpus",
        type=int,
        default=0,
        help="GPUs the job asked for: vLLM's tensor_parallel_size; fewer visible stops it",
    )
    args = parser.parse_args(argv)

    bins = {int(test_bin): (test_file, Path(out)) for test_bin, test_file, out in args.bin}
    problem = runtime.missing_gpus(args.gpus, "resources.generate.gpu")
    if problem:  # before the model loads: a GPU job on the CPU would crawl until its time limit
        raise ValueError(problem)
    print(runtime.describe_caches(), file=sys.stderr)
    evaluation.check_test_files(test_file for test_file, _ in bins.values())
    evaluation.check_model_folder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        # The datasets library's arrow copies of the bins are throwaway: out of the shared cache (as
        # evaluation.py does). Set before datasets is first imported.
        os.environ["HF_DATASETS_CACHE"] = os.path.join(tmp, "datasets")
        test_files, overrides = prepare_test_files(args.task, {b: f for b, (f, _) in bins.items()}, args, tmp)
        loading = time.time()
        lm, model_args = load_model(
            args.backend,
            args.model,
            args.dtype,
            args.batch_size,
            args.trust_remote_code,
            args.seed,
            args.chat_template_date,
            args.attention_backend,
            args.gpus,
        )
        model_load_seconds = time.time() - loading
        records, seconds = generate_row(
            args.task,
            test_files,
            lm,
            args.batch_size,
            args.max_gen_toks,
            args.seed,
            overrides,
            one_call_per_bin(args.backend),
        )
    for test_bin, (_, out) in bins.items():
        atomic_write_json(
            raw_record(
                records[test_bin],
                task=args.task,
                test_bin=test_bin,
                model_path=args.model,
                backend=args.backend,
                dtype=args.dtype,
                batch_size=args.batch_size,
                max_gen_toks=args.max_gen_toks,
                seed=args.seed,
                lm=lm,
                model_args=model_args,
                seconds=seconds,
                row_bins=sorted(bins),
                task_fingerprint=args.task_fingerprint,
                model_load_seconds=model_load_seconds,
            ),
            out,
        )
    print(
        json.dumps(
            {
                "task": args.task,
                "bins": sorted(bins),
                "requests": sum(map(len, records.values())),
                "seconds": round(seconds, 3),
            }
        )
    )


def prepare_test_files(task: str, test_files: dict, args, folder) -> tuple[dict, dict | None]:
    """The in-context row's test files (each bin with its prompts, in_context.prepare_cell) and the task
    keys that read them; other rows' files as they are."""
    if not args.in_context_k:
        return test_files, None
    from workflow_scripts.lib import in_context

    prepared, overrides = {}, {}
    for test_bin, test_file in test_files.items():
        bin_folder = Path(folder) / f"test-{test_bin}"
        bin_folder.mkdir()
        prepared[test_bin], overrides[test_bin] = in_context.prepare_cell(
            task,
            test_file,
            args.in_context_pool,
            args.in_context_k,
            args.in_context_seed,
            args.prompt_format,
            bin_folder,
        )
    return prepared, overrides


if __name__ == "__main__":
    main()
    # The raw files are on disk (atomically); skip the interpreter's slow teardown, after stopping
    # vLLM's engine process (see evaluation.py).
    sys.stdout.flush()
    sys.stderr.flush()
    evaluation.stop_child_processes()
    os._exit(0)
