# Helpers only: paths, config lookups, wildcard constraints. No rules here.
import json
import os
import re
import shlex

from snakemake.exceptions import WorkflowError

RESULTS = config["results_dir"]
MODELS = list(config["models"])
DATASETS = list(config["datasets"])
REPO = workflow.basedir

# Every step runs `python -m workflow_scripts.<step>` from the repository, wherever the job runs.
# (The prefix is formatted like a shell command, hence the doubled braces.)
shell.prefix(
    "set -euo pipefail; export PYTHONPATH=" + shlex.quote(REPO) + "${{PYTHONPATH:+:$PYTHONPATH}}; "
)


def _one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    model=_one_of(MODELS),
    dataset=_one_of(DATASETS),
    train_bin=r"\d+",
    test_bin=r"\d+",
    train=r"base|\d+",


def results(*parts):
    return os.path.join(RESULTS, *parts)


def code(*files):
    """Source files a job runs, listed as inputs so that editing one re-runs its jobs.

    Relative to the working directory, so that moving a checkout (with its results) is not a change.
    Snakemake records small inputs' checksums: touching a file without changing it re-runs nothing.
    """
    return [os.path.relpath(os.path.join(REPO, f)) for f in files]


# ---- datasets -------------------------------------------------------------------------------


def dataset_setting(dataset, key):
    """A per-dataset value, falling back to the global one (n_bins, quantile_key)."""
    return config["datasets"][dataset].get(key, config[key])


def irt_settings(dataset):
    """The dataset's `irt` block with its defaults, or None when its bins use a shipped quantile column."""
    entry = config["datasets"][dataset].get("irt")
    if entry is None:
        return None
    defaults = {"model": "1pl", "min_responses": 20, "metric": config["datasets"][dataset]["headline_metric"]}
    return {**defaults, **entry}


def irt_bootstrap_arguments(dataset):
    rounds = irt_settings(dataset).get("bootstrap", 0)
    return f"--bootstrap {rounds} --n-bins {dataset_setting(dataset, 'n_bins')}" if rounds else ""


def binning_quantile_key(dataset):
    """The dataset's own quantile_key; else `irt_quantile` when it fits IRT; else the global one."""
    own = config["datasets"][dataset].get("quantile_key")
    return own or ("irt_quantile" if irt_settings(dataset) else config["quantile_key"])


def binning_data(wildcards):
    """What the bin step splits: the dataset joined with fitted difficulties, or the dataset as is."""
    if irt_settings(wildcards.dataset):
        return results("data", wildcards.dataset, "irt", "with_difficulty.parquet")
    return results("data", wildcards.dataset, "normalized.parquet")


def irt_responses(wildcards):
    """A response table as given, or the one converted from a folder of lm-eval per-sample logs."""
    responses = irt_settings(wildcards.dataset)["responses"]
    if os.path.isdir(responses):
        return results("data", wildcards.dataset, "irt", "responses.parquet")
    return responses


def bin_ids(dataset):
    return [str(k) for k in range(dataset_setting(dataset, "n_bins"))]


def local_source(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    return [source["path"]] if "path" in source else []


def evaluation_settings(dataset):
    """Evaluation settings of one dataset: the global ones < the dataset's `evaluation` overrides."""
    return {**config["evaluation"], **config["datasets"][dataset].get("evaluation", {})}


# ---- models ---------------------------------------------------------------------------------


def base_model(model):
    """What from_pretrained gets: a hub name or a local folder."""
    entry = config["models"][model]
    return entry.get("hub") or entry["path"]


def local_base_model(wildcards):
    entry = config["models"][wildcards.model]
    return [entry["path"]] if "path" in entry else []


def train_settings(model, dataset):
    """The hyper-parameters of one (model, dataset): defaults < dataset overrides < model overrides."""
    settings = dict(config["training"])
    settings.update(config["datasets"][dataset].get("training", {}))
    settings.update(config["models"][model].get("training", {}))
    settings["system_prompt"] = config["models"][model].get("system_prompt")
    return settings


def train_processes():
    """One rank per GPU of the train job; on a CPU-only run, launch.cpu_processes ranks."""
    return config["resources"]["train"]["gpu"] or config["launch"]["cpu_processes"]


# Rules that only some configs use, so their resources are optional in the config.
DEFAULT_RESOURCES = {"irt": {"gpu": 0, "threads": 1, "mem_mb": 8000, "runtime": 60}}


def rule_resources(rule_name):
    """SLURM-facing resources of a rule; the time limit grows with each retry of a job."""
    entry = config["resources"].get(rule_name) or DEFAULT_RESOURCES[rule_name]
    runtime = entry["runtime"]
    if entry.get("retries", 0):
        # Only rules that retry get a function (one per job to evaluate, on 6,160 cells it shows).
        runtime = lambda wildcards, attempt: entry["runtime"] * attempt
    return {"mem_mb": entry["mem_mb"], "runtime": runtime, "gpu": entry["gpu"]}


def rule_retries(rule_name):
    return config["resources"][rule_name].get("retries", 0)


def task_files(wildcards):
    """The task's yaml and the shared files it builds on (tracked like code)."""
    task = config["datasets"][wildcards.dataset]["task"]
    shared = code("tasks/_cross_difficulty_template_yaml", "tasks/utils.py")
    # A task not written yet must not stop a dry-run of the grid; evaluation.py names it when run.
    return [path for path in code(f"tasks/{task}.yaml") if os.path.exists(path)] + shared


# ---- paths ----------------------------------------------------------------------------------


def bins_dir(dataset):
    return results("data", dataset, "bins")


def training_work_dir(model, dataset, train_bin):
    """Trainer checkpoints for resuming a killed job; not an output, so a failed job keeps them."""
    return results("work", "train", model, dataset, f"train-{train_bin}")


def trained_model_dir(model, dataset, train_bin):
    return results("models", model, dataset, f"train-{train_bin}", "hf")


def cell_path(model, dataset, train, test_bin):
    return results("cells", model, dataset, f"train-{train}", f"test-{test_bin}.json")


def cells_of(model, dataset):
    return [
        cell_path(model, dataset, train, test_bin)
        for train in ["base", *bin_ids(dataset)]
        for test_bin in bin_ids(dataset)
    ]


def evaluation_inputs(wildcards):
    """A cell's model (the converted fine-tuned one, or a local base model for `base`) and task files.

    One function for both (fewer functions per job keep the paper grid's dry-run fast)."""
    if wildcards.train == "base":
        model = local_base_model(wildcards)
    else:
        model = [trained_model_dir(wildcards.model, wildcards.dataset, wildcards.train)]
    return {"model": model, "task": task_files(wildcards)}


def evaluation_arguments(wildcards):
    """The command-line arguments of one cell: what it evaluates, on which bin, with which settings.

    Everything a cell depends on is in here, so changing any of it re-runs that cell."""
    dataset, model = wildcards.dataset, wildcards.model
    settings = evaluation_settings(dataset)
    if wildcards.train == "base":
        evaluated = base_model(model)
    else:
        evaluated = trained_model_dir(model, dataset, wildcards.train)
    label = {"model": model, "dataset": dataset, "train": wildcards.train, "test_bin": int(wildcards.test_bin)}
    args = [
        "--task", config["datasets"][dataset]["task"],
        "--bin-file", os.path.join(bins_dir(dataset), f"bin-{wildcards.test_bin}.parquet"),
        "--model", evaluated,
        "--label", json.dumps(label),
        "--backend", settings["backend"],
        "--dtype", settings["dtype"],
        "--batch-size", str(settings["batch_size"]),
        "--seed", str(settings["seed"]),
    ]  # fmt: skip
    if settings.get("max_gen_toks"):
        args += ["--max-gen-toks", str(settings["max_gen_toks"])]
    if config["models"][model].get("trust_remote_code"):
        args.append("--trust-remote-code")
    return shlex.join(args)


def figures_of(model, dataset):
    return [results("figures", model, dataset, f"{name}.png") for name in ("accuracy", "change_vs_base")]


def final_outputs():
    """Tables, figures, and every cell: cells are results in their own right, so a deleted or
    missing cell file is re-made even when the tables built from it look up to date."""
    outputs = [results("tables", "cells.csv"), results("tables", "cells.parquet")]
    for model in MODELS:
        for dataset in DATASETS:
            outputs += figures_of(model, dataset) + cells_of(model, dataset)
    return outputs


# ---- one run per results folder ---------------------------------------------------------------
# Snakemake locks its working directory; two runs from different directories could still write the
# same results_dir. The first real run (not a dry-run) takes this lock; a second is refused.


def results_lock():
    return results(".run.lock")


def take_results_lock():
    import socket

    os.makedirs(RESULTS, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    try:
        descriptor = os.open(results_lock(), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        host, pid = open(results_lock()).read().split()
        if host == socket.gethostname() and not process_alive(int(pid)):
            os.replace(results_lock(), results_lock() + ".stale")  # that run is gone: take over
            return take_results_lock()
        raise WorkflowError(
            f"results_dir {RESULTS} is in use by another Snakemake run (process {pid} on {host}); "
            f"wait for it to finish, or delete {results_lock()} if that run no longer exists"
        )
    with os.fdopen(descriptor, "w") as handle:
        handle.write(me + "\n")


def process_alive(pid):
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_results_lock():
    if os.path.exists(results_lock()) and open(results_lock()).read().split()[1:] == [str(os.getpid())]:
        os.remove(results_lock())
