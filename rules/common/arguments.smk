# Each rule's inputs and arguments that depend on the job: one function per rule where a
# grid has thousands of jobs (fewer functions keep its dry-run fast).
import json
import os
import shlex

from workflow_scripts.lib import cell_names, layout, row_arguments


def irt_bootstrap_arguments(dataset):
    rounds = irt_settings(dataset)["bootstrap"]
    return f"--bootstrap {rounds} --n-bins {dataset_setting(dataset, 'n_bins')}" if rounds else ""


def binning_data(wildcards):
    """What the bin step splits: the dataset joined with fitted difficulties, or the dataset as is."""
    if irt_settings(wildcards.dataset):
        return layout.irt_file(RESULTS, wildcards.dataset, "with_difficulty.parquet")
    return layout.normalized_table(RESULTS, wildcards.dataset)


def irt_responses(wildcards):
    """A response table as given, or the one converted from a folder of lm-eval per-sample logs."""
    responses = irt_settings(wildcards.dataset)["responses"]
    if os.path.isdir(responses):
        return layout.irt_file(RESULTS, wildcards.dataset, "responses.parquet")
    return responses


def local_source(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    return [source["path"]] if "path" in source else []


def local_base_model(wildcards):
    """The base model as an input: jobs wait for fetch_model, and compute nodes never need the hub."""
    return [base_model(wildcards.model)]


def heldout_split_input(wildcards):
    """The held-out split, for a training job whose row carries the -heldout tag."""
    heldout = cell_names.labels(wildcards.trained_row)["eval_split"] == "heldout"
    return [layout.heldout_dir(RESULTS, wildcards.dataset)] if heldout else []


def training_file(wildcards, input):
    labels = cell_names.labels(wildcards.trained_row)
    if labels["eval_split"] == "heldout":
        return layout.pool_file(RESULTS, wildcards.dataset, labels["train_bin"], True)
    return os.path.join(input.bins, layout.bin_file_name(labels["train_bin"]))


def training_settings(wildcards):
    labels = cell_names.labels(wildcards.trained_row)
    return json.dumps(train_settings(wildcards.model, wildcards.dataset, labels["seed"]), sort_keys=True)


def row_rule_names():
    """{n_bins: {"generate": name, "score": name}}: one pair of rules per distinct bin count."""
    counts = sorted({dataset_setting(dataset, "n_bins") for dataset in DATASETS})
    if len(counts) == 1:
        return {counts[0]: {"generate": "generate", "score": "score"}}
    return {n: {"generate": f"generate_{n}_bins", "score": f"score_{n}_bins"} for n in counts}


def datasets_with_bins(n_bins):
    return _one_of([dataset for dataset in DATASETS if dataset_setting(dataset, "n_bins") == n_bins])


def row_model(model, dataset, row):
    """The folder a row's generation loads: the converted fine-tuned model, or the base model (`base`
    and in-context rows)."""
    if cell_names.labels(row)["train_kind"] == "bin":
        return layout.trained_model_dir(RESULTS, model, dataset, row)
    return base_model(model)


def row_extra_inputs(wildcards):
    """The held-out split and the in-context code where the row uses them."""
    labels = cell_names.labels(wildcards.row)
    inputs = {}
    if labels["eval_split"] == "heldout":
        inputs["split"] = layout.heldout_dir(RESULTS, wildcards.dataset)
    if labels["train_kind"] == "in_context":
        inputs["in_context_code"] = step_code("workflow_scripts.lib.in_context")
    return inputs


def generation_inputs(wildcards):
    """A row's model (the converted fine-tuned one, or a local base model), its held-out split and
    in-context code. Not the task files: what of them shapes the requests is in the arguments."""
    if cell_names.labels(wildcards.row)["train_kind"] == "bin":
        model = [layout.trained_model_dir(RESULTS, wildcards.model, wildcards.dataset, wildcards.row)]
    else:
        model = local_base_model(wildcards)
    return {"model": model, **row_extra_inputs(wildcards)}


def scoring_inputs(wildcards):
    """The task files (filters and metrics), the base model's folder (its tokenizer renders the chat
    prompts again; the trained model may be gone), the held-out split and in-context code."""
    return {
        "task": task_files(wildcards),
        "tokenizer": local_base_model(wildcards),
        "nltk_data": dataset_nltk_packages(wildcards.dataset),
        **row_extra_inputs(wildcards),
    }


_FINGERPRINTS = {}


def generation_fingerprint(task):
    """The task's generation part, hashed (workflow_scripts/lib/task_parts.py), once per task and run; a
    task not written yet has none (generation.py names the missing file when the job runs)."""
    if task not in _FINGERPRINTS:
        from workflow_scripts.lib import task_parts

        exists = os.path.isfile(os.path.join(REPO, "tasks", f"{task}.yaml"))
        _FINGERPRINTS[task] = task_parts.generation_fingerprint(task) if exists else "missing"
    return _FINGERPRINTS[task]


def in_context_arguments(dataset, labels):
    if labels["train_kind"] != "in_context":
        return []
    return [
        "--in-context-k",
        str(labels["in_context_k"]),
        "--in-context-pool",
        layout.pool_file(RESULTS, dataset, labels["train_bin"], labels["eval_split"] == "heldout"),
        "--in-context-seed",
        str(labels["seed"]),
        "--prompt-format",
        config["datasets"][dataset]["prompt_format"],
    ]


def generation_arguments(wildcards):
    """The command-line arguments of a row's generation: everything that shapes its requests and
    responses (so changing any of it re-runs the row), nothing that only scores them. Built by
    workflow_scripts/lib/row_arguments.py, as the GPU smoke test builds its own."""
    dataset, model, row = wildcards.dataset, wildcards.model, wildcards.row
    labels = cell_names.labels(row)
    heldout = labels["eval_split"] == "heldout"
    task = config["datasets"][dataset]["task"]
    args = row_arguments.generation(
        task,
        generation_fingerprint(task),
        [(b, path, layout.raw_file(RESULTS, model, dataset, row, b)) for b, path in test_files(dataset, heldout)],
        row_model(model, dataset, row),
        evaluation_settings(dataset),
        chat_template_date=config["chat_template_date"],
        trust_remote_code=config["models"][model]["trust_remote_code"],
        extra=in_context_arguments(dataset, labels),
    )
    return shlex.join(args)


def scoring_arguments(wildcards):
    """The command-line arguments of a row's scoring: its cells and labels. The generation settings
    are read from the raw files, so scoring cannot disagree with them."""
    dataset, model, row = wildcards.dataset, wildcards.model, wildcards.row
    labels = cell_names.labels(row)
    heldout = labels["eval_split"] == "heldout"
    # The cell file carries every label (row kind, bin learned from, k, seed, eval_split): no table
    # has to parse a path.
    cells = [
        (b, path, layout.raw_file(RESULTS, model, dataset, row, b), layout.cell(RESULTS, model, dataset, row, b))
        for b, path in test_files(dataset, heldout)
    ]
    args = row_arguments.scoring(
        config["datasets"][dataset]["task"],
        {"model": model, "dataset": dataset, **labels},
        base_model(model),
        cells,
        extra=in_context_arguments(dataset, labels),
    )
    return shlex.join(args)


# The pilot's memory probe: the first optimizer step allocates the optimizer state, the next two show
# the steady peak.
MEMORY_PROBE_STEPS = 3


def pilot_entries():
    """Config `pilot` with its defaults resolved (model: the smallest, dataset: the first) and each row's
    name: the first seed, in this eval_split."""
    entries = []
    for entry in config["pilot"]:
        model = entry.get("model") or min(MODELS, key=model_parameters)
        dataset = entry.get("dataset") or DATASETS[0]
        row = cell_names.bin_name(entry["train_bin"], eval_split(), seeds()[0])
        entries.append({**entry, "model": model, "dataset": dataset, "row": row})
    return entries


def tied_embeddings(model):
    """Whether the model's head is its input embedding (config.json once on disk; None before)."""
    path = os.path.join(base_model(model), "config.json")
    if not os.path.isfile(path):
        return None
    with open(path) as handle:
        model_config = json.load(handle)
    return bool(model_config.get("tie_word_embeddings", model_config.get("text_config", {}).get("tie_word_embeddings")))


def training_paths(model, dataset):
    """The GPU paths a train job of (model, dataset) takes, as the pilot's report names them."""
    checkpointing = merged_training(model, dataset)["gradient_checkpointing"]
    nodes = job_nodes("train", model)[0]
    return [
        f"training on {train_processes(model)} rank(s)" + (f" across {nodes} nodes" if nodes > 1 else ""),
        "gradient checkpointing" if checkpointing else "no gradient checkpointing",
    ]


def conversion_path(model):
    tied = tied_embeddings(model)
    if tied is None:
        return f"conversion of {model} (tied embeddings or not: unknown until fetch_model has run)"
    return "conversion of a model with tied embeddings" if tied else "conversion of a model with an untied head"


def evaluation_path(dataset):
    kind = task_output(config["datasets"][dataset]["task"])[0]
    what = "generation" if kind == "generate_until" else "log-likelihoods"
    return f"{what} on {evaluation_settings(dataset)['backend']} ({kind})"


def resume_path(ranks):
    return "checkpoint and resume across ranks" if ranks > 1 else "checkpoint and resume"


def memory_path(model, dataset):
    settings = merged_training(model, dataset)
    checkpointing = ", gradient checkpointing" if settings["gradient_checkpointing"] else ""
    return (
        f"memory of {model} at {settings['max_length']} tokens x batch {settings['per_device_batch_size']}"
        f"{checkpointing}"
    )


def known_parameters(model):
    """The model's parameter count, or None before the model exists or says it (a local model built by
    the workflow, like the demo's, during a dry-run)."""
    try:
        return model_parameters(model)
    except ValueError:
        return None


def grid_paths():
    """Every path the grid's jobs take: each train job's, each model's conversion, each dataset's
    evaluation, resuming, and the memory of the largest model with the settings that hold the most
    activations (the largest batch without gradient checkpointing, else with it)."""
    paths = set()
    for model in MODELS:
        paths.add(conversion_path(model))
        for dataset in DATASETS:
            paths.update(training_paths(model, dataset))
    paths.update(evaluation_path(dataset) for dataset in DATASETS)
    paths.add(resume_path(max(train_processes(model) for model in MODELS)))
    largest = max(MODELS, key=lambda model: known_parameters(model) or 0)

    def activations(dataset):
        settings = merged_training(largest, dataset)
        return (not settings["gradient_checkpointing"], settings["per_device_batch_size"], settings["max_length"])

    paths.add(memory_path(largest, max(DATASETS, key=activations)))
    return sorted(paths)


def pilot_expectations(model, dataset):
    """What the pilot asserts a trained row's outputs show: the grid's GPU paths as configured."""
    settings = train_settings(model, dataset)
    gpus = rule_gpus("train", model)
    return {
        "ranks": train_processes(model),
        "backend": "nccl" if gpus else "gloo",
        "mixed_precision": "bf16" if settings["bf16"] else "no",
        "optimizer": settings["optim"] if gpus else settings["cpu_optim"],
        "use_liger_kernel": settings["use_liger_kernel"],
        "evaluation_backend": evaluation_settings(dataset)["backend"],
    }


def pilot_row(index, entry):
    """One trained row of the pilot: where its outputs are and what they must show."""
    model, dataset, row = entry["model"], entry["dataset"], entry["row"]
    test_bin = str(entry["train_bin"])
    heldout = eval_split() == "heldout"
    base = cell_names.base_name(eval_split())
    benchmarks = {
        "train": layout.row_benchmark(RESULTS, "train", model, dataset, row),
        "convert": layout.row_benchmark(RESULTS, "convert", model, dataset, row),
        "generate": layout.row_benchmark(RESULTS, "generate", model, dataset, row),
        "generate_base": layout.row_benchmark(RESULTS, "generate", model, dataset, base),
    }
    paths = [*training_paths(model, dataset), conversion_path(model), evaluation_path(dataset)]
    drill = drill_work_dir = None
    if entry["resume_drill"]:
        drill = layout.resume_drill_dir(RESULTS, model, dataset, row)
        drill_work_dir = layout.resume_drill_work_dir(RESULTS, model, dataset, row)
        benchmarks["resume_drill"] = layout.row_benchmark(RESULTS, layout.RESUME_DRILL, model, dataset, row)
        paths.append(resume_path(train_processes(model)))
    return {
        "name": f"{model} on {dataset} bin {test_bin}",
        "model_dir": layout.trained_model_dir(RESULTS, model, dataset, row),
        "cell": layout.cell(RESULTS, model, dataset, row, test_bin),
        "base_cell": layout.cell(RESULTS, model, dataset, base, test_bin),
        "test_file": layout.test_file(RESULTS, dataset, test_bin, heldout),
        "drill": drill,
        "drill_work_dir": drill_work_dir,  # its checkpoints: the pilot removes them once checked
        "expect": pilot_expectations(model, dataset),
        "paths": paths,
        "benchmarks": benchmarks,
    }


def pilot_probe(entry):
    model, dataset = entry["model"], entry["dataset"]
    settings = train_settings(model, dataset)
    return {
        "name": f"memory probe of {model} with {dataset}'s settings",
        "report": layout.memory_probe(RESULTS, model, dataset),
        "expect": {
            "steps": MEMORY_PROBE_STEPS,
            "ranks": train_processes(model),
            "max_length": settings["max_length"],
            "gpu": bool(rule_gpus("train", model)),
        },
        "gpu_memory_gb": config["cluster"]["gpu_memory_gb"],
        "paths": [*training_paths(model, dataset), memory_path(model, dataset)],
        "benchmark": layout.memory_probe_part(RESULTS, "benchmarks", model, dataset),
    }


def pilot_spec():
    """Everything the pilot step checks, as JSON: its rows, its probes and the grid's paths."""
    entries = pilot_entries()
    return json.dumps(
        {
            "rows": [pilot_row(i, e) for i, e in enumerate(entries) if not e["memory_probe"]],
            "probes": [pilot_probe(e) for e in entries if e["memory_probe"]],
            "grid_paths": grid_paths(),
        },
        sort_keys=True,
    )


def pilot_inputs(wildcards):
    """The pilot's rows (converted model, its cell and the base model's there, the bins), its resume
    drills and its probes' reports."""
    inputs = {}
    for i, entry in enumerate(pilot_entries()):
        model, dataset, row = entry["model"], entry["dataset"], entry["row"]
        if entry["memory_probe"]:
            inputs[f"probe_{i}"] = layout.memory_probe(RESULTS, model, dataset)
            continue
        spec = pilot_row(i, entry)
        inputs.update({f"model_{i}": spec["model_dir"], f"cell_{i}": spec["cell"], f"base_cell_{i}": spec["base_cell"]})
        inputs[f"bins_{i}"] = layout.bins_dir(RESULTS, dataset)
        if spec["drill"]:
            inputs[f"drill_{i}"] = spec["drill"]
    return inputs


def bootstrap_arguments():
    """The interval settings (config `statistics`): they change the tables, hence every figure."""
    settings = config["statistics"]
    return (
        f"--resamples {settings['bootstrap_resamples']} --seed {settings['seed']}"
        f" --confidence {settings['confidence']}"
    )


def figure_arguments():
    """How figures are drawn (config `report`): changing it re-runs the figures only."""
    return f"--dpi {config['report']['figure_dpi']}" + ("" if config["report"]["annotate_cells"] else " --no-annotate")


def loss_rows(dataset):
    """The trained rows whose loss curves a (model, dataset)'s figure shows: each bin, in this
    eval_split, of the first seed (one line per bin stays readable; the other seeds' records sit in
    their models' training.json)."""
    return [cell_names.bin_name(b, eval_split(), seeds()[0]) for b in bin_ids(dataset)]
