"""The command-line arguments of a row's generate and score jobs, from plain values.

rules/common/arguments.smk gives them the grid's values (config, paths, wildcards);
benchmarks/gpu_smoke.py gives them a tiny model's on a GPU machine. One builder for both, so the smoke
test runs the steps with the arguments the grid's jobs get. No imports beyond the standard library:
the workflow's dry-run imports this module.
"""

from __future__ import annotations

import json


def generation(
    task: str,
    fingerprint: str,
    bins,
    model,
    settings: dict,
    *,
    chat_template_date: str | None = None,
    trust_remote_code: bool = False,
    extra=(),
) -> list[str]:
    """`workflow_scripts.steps.generation`'s arguments: everything that shapes a row's requests and responses.

    bins: (test_bin, test_file, raw_out) per test bin; settings: the evaluation settings (backend,
    dtype, batch_size, seed; attention_backend, max_gen_toks where set); extra: arguments appended as
    given (an in-context row's)."""
    args = ["--task", task, "--task-fingerprint", fingerprint]
    for test_bin, test_file, raw_out in bins:
        args += ["--bin", str(test_bin), str(test_file), str(raw_out)]
    args += [
        "--model",
        str(model),
        "--backend",
        settings["backend"],
        "--dtype",
        settings["dtype"],
        "--batch-size",
        str(settings["batch_size"]),
        "--seed",
        str(settings["seed"]),
    ]
    if chat_template_date:
        args += ["--chat-template-date", chat_template_date]
    if settings["backend"] == "vllm" and settings.get("attention_backend"):
        args += ["--attention-backend", settings["attention_backend"]]
    if settings.get("max_gen_toks"):
        args += ["--max-gen-toks", str(settings["max_gen_toks"])]
    if trust_remote_code:
        args.append("--trust-remote-code")
    return args + list(extra)


def scoring(task: str, label: dict, tokenizer, cells, extra=()) -> list[str]:
    """`workflow_scripts.steps.scoring`'s arguments: a row's cells and the labels every cell file carries.

    cells: (test_bin, test_file, raw_file, cell_out) per test bin; tokenizer: the base model's folder
    (it renders the chat prompts again); extra: as for generation."""
    args = ["--task", task, "--label", json.dumps(label), "--tokenizer", str(tokenizer)]
    for test_bin, test_file, raw_file, cell_out in cells:
        args += ["--cell", str(test_bin), str(test_file), str(raw_file), str(cell_out)]
    return args + list(extra)
