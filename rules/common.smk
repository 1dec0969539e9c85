# Helpers only: paths, config lookups, wildcard constraints. No rules here.
import json
import os
import re
import shlex

from snakemake.exceptions import WorkflowError

from workflow_scripts import cell_names, runtime

RESULTS = config["results_dir"]
MODELS = list(config["models"])
DATASETS = list(config["datasets"])
REPO = workflow.basedir


def cache_dir():
    """Where jobs keep JIT and compile caches (config `cache_dir`, default results_dir/cache), absolute."""
    folder = os.path.expanduser(os.path.expandvars(config.get("cache_dir") or os.path.join(RESULTS, "cache")))
    return os.path.abspath(folder)


def job_environment_exports():
    variables = runtime.job_environment(cache_dir())
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items()) + "; "


# Every step runs `python -m workflow_scripts.<step>` from the repository, wherever the job runs, with
# its caches under cache_dir(). In the prefix, not in params: moving the caches re-runs nothing.
# (The prefix is formatted like a shell command, hence the doubled braces.)
_exports = job_environment_exports().replace("{", "{{").replace("}", "}}")
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(REPO)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {_exports}")
# Only download and fetch_model (localrules, on the login node) reach the hub. train, convert and
# evaluate read local files and export HF_HUB_OFFLINE=1: on an offline compute node a stray hub lookup
# then fails at once instead of hanging on network timeouts.


def _one_of(names):
    return "|".join(re.escape(name) for name in names)


wildcard_constraints:
    model=_one_of(MODELS),
    dataset=_one_of(DATASETS),
    train_bin=cell_names.TRAIN_BIN_PATTERN,
    test_bin=r"\d+",
    train=cell_names.TRAIN_PATTERN,


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
    """The folder from_pretrained gets: a local `path`, or the model cache that fetch_model fills."""
    entry = config["models"][model]
    return entry.get("path") or model_cache_dir(model)


def model_cache_dir(model):
    return os.path.join(config["model_cache"], model)


def local_base_model(wildcards):
    """The base model as an input: jobs wait for fetch_model, and compute nodes never need the hub."""
    return [base_model(wildcards.model)]


def train_settings(model, dataset, seed=None):
    """The hyper-parameters of one (model, dataset): defaults < dataset overrides < model overrides;
    `seed` (one of `seeds`) is the run's own."""
    settings = dict(config["training"])
    settings.update(config["datasets"][dataset].get("training", {}))
    settings.update(config["models"][model].get("training", {}))
    settings["system_prompt"] = config["models"][model].get("system_prompt")
    settings["chat_template_date"] = config.get("chat_template_date")
    if seed is not None:
        settings["seed"] = seed
    return settings


def train_processes():
    """One rank per GPU of the train job; on a CPU-only run, launch.cpu_processes ranks."""
    return config["resources"]["train"]["gpu"] or config["launch"]["cpu_processes"]


# Rules that only some configs use, so their resources are optional in the config.
DEFAULT_RESOURCES = {"irt": {"gpu": 0, "threads": 1, "mem_mb": 8000, "runtime": 60}}


def rule_resources(rule_name):
    """The SLURM request of a rule's jobs, from config `resources:` and `cluster:`.

    GPU rules go to the GPU partition with `gpu=N` (the plugin turns it into --gpus=N), CPU rules to
    the CPU partition; a local run ignores the partition. The time limit grows with each attempt, so
    a job killed at its limit gets more time when it is retried."""
    entry = config["resources"].get(rule_name) or DEFAULT_RESOURCES[rule_name]
    cluster = config["cluster"]
    minutes = entry["runtime"]
    resources = {
        "mem_mb": entry["mem_mb"],
        "runtime": lambda wildcards, attempt: minutes * attempt,
        "gpu": entry["gpu"],
        "slurm_partition": cluster["gpu_partition"] if entry["gpu"] else cluster["cpu_partition"],
    }
    if entry["gpu"] and cluster.get("gpu_model"):
        resources["gpu_model"] = cluster["gpu_model"]
    if entry["gpu"]:
        # All of a job's GPUs on one node: the plugin passes --gpus=N without --nodes, and the job
        # step it starts (srun -n1 --gpus=N --nodes=1) cannot use GPUs SLURM spread over nodes.
        resources["nodes"] = 1
    if cluster.get("account"):
        resources["slurm_account"] = cluster["account"]
    return resources


def rule_retries(rule_name):
    return config["resources"][rule_name].get("retries", 0)


def task_files(wildcards):
    """The task's yaml and the shared files it builds on (tracked like code)."""
    task = config["datasets"][wildcards.dataset]["task"]
    shared = code("tasks/_cross_difficulty_template_yaml", "tasks/utils.py")
    # A task not written yet must not stop a dry-run of the grid; evaluation.py names it when run.
    return [path for path in code(f"tasks/{task}.yaml") if os.path.exists(path)] + shared


# ---- beyond the study: held-out diagonal, repeated seeds, in-context baseline --------------------
# Off by default (the study's setting). Names of rows and their tags: workflow_scripts/cell_names.py.


def eval_split():
    return config.get("eval_split", "all")


def seeds():
    """Training seeds; each trained (and in-context) row is repeated per seed. Default: training.seed."""
    return config.get("seeds") or [config["training"].get("seed", cell_names.STUDY_SEED)]


def in_context_k():
    return config.get("in_context", {}).get("k", 0)


def heldout_dir(dataset):
    return results("data", dataset, "heldout")


def row_names(dataset, every_seed=True):
    """The rows of a (model, dataset) table in this config: the base model, one trained row per bin
    and seed, and with in_context.k one in-context row per source bin and seed."""
    split, runs = eval_split(), seeds() if every_seed else seeds()[:1]
    names = [cell_names.base_name(split)]
    names += [cell_names.bin_name(b, split, seed) for seed in runs for b in bin_ids(dataset)]
    if in_context_k() and every_seed:
        names += [cell_names.in_context_name(in_context_k(), b, split, seed) for seed in runs for b in bin_ids(dataset)]
    return names


def test_file(dataset, test_bin, heldout):
    """The items a cell is scored on: the whole test bin, or its held-out part."""
    if heldout:
        return os.path.join(heldout_dir(dataset), f"heldout-{test_bin}.parquet")
    return os.path.join(bins_dir(dataset), f"bin-{test_bin}.parquet")


def pool_file(dataset, source_bin, heldout):
    """The items a bin's row may learn from: the whole bin, or its training part."""
    if heldout:
        return os.path.join(heldout_dir(dataset), f"train-{source_bin}.parquet")
    return os.path.join(bins_dir(dataset), f"bin-{source_bin}.parquet")


def heldout_split_input(wildcards):
    """The held-out split, for a training job whose train_bin carries the -heldout tag."""
    heldout = cell_names.labels(wildcards.train_bin)["eval_split"] == "heldout"
    return [heldout_dir(wildcards.dataset)] if heldout else []


def training_file(wildcards, input):
    labels = cell_names.labels(wildcards.train_bin)
    if labels["eval_split"] == "heldout":
        return pool_file(wildcards.dataset, labels["train_bin"], True)
    return os.path.join(input.bins, f"bin-{labels['train_bin']}.parquet")


def training_settings(wildcards):
    labels = cell_names.labels(wildcards.train_bin)
    return json.dumps(train_settings(wildcards.model, wildcards.dataset, labels["seed"]), sort_keys=True)


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


def every_cell_of(model, dataset):
    """Every cell of a (model, dataset) in this config: the base model, each trained row per seed and,
    with in_context.k, each in-context row per seed. The tables read them all, so adding a seed re-runs
    that seed's jobs and the tables and figures built from them, nothing else."""
    return [cell_path(model, dataset, train, test_bin) for train in row_names(dataset) for test_bin in bin_ids(dataset)]


def evaluation_inputs(wildcards):
    """A cell's model (the converted fine-tuned one, or a local base model for `base` and in-context
    rows), task files, and the held-out split where the row uses it.

    One function for all (fewer functions per job keep the paper grid's dry-run fast)."""
    labels = cell_names.labels(wildcards.train)
    if labels["train_kind"] == "bin":
        model = [trained_model_dir(wildcards.model, wildcards.dataset, wildcards.train)]
    else:
        model = local_base_model(wildcards)
    inputs = {"model": model, "task": task_files(wildcards)}
    if labels["eval_split"] == "heldout":
        inputs["split"] = heldout_dir(wildcards.dataset)
    if labels["train_kind"] == "in_context":
        inputs["in_context_code"] = code("workflow_scripts/in_context.py", "workflow_scripts/heldout_split.py")
    return inputs


def evaluation_arguments(wildcards):
    """The command-line arguments of one cell: what it evaluates, on which bin, with which settings.

    Everything a cell depends on is in here, so changing any of it re-runs that cell."""
    dataset, model = wildcards.dataset, wildcards.model
    settings = evaluation_settings(dataset)
    labels = cell_names.labels(wildcards.train)
    heldout = labels["eval_split"] == "heldout"
    if labels["train_kind"] == "bin":
        evaluated = trained_model_dir(model, dataset, wildcards.train)
    else:
        evaluated = base_model(model)
    # The cell file carries every label (row kind, bin learned from, k, seed, eval_split): no table
    # has to parse a path.
    label = {"model": model, "dataset": dataset, **labels, "test_bin": int(wildcards.test_bin)}
    args = [
        "--task", config["datasets"][dataset]["task"],
        "--bin-file", test_file(dataset, wildcards.test_bin, heldout),
        "--model", evaluated,
        "--label", json.dumps(label),
        "--backend", settings["backend"],
        "--dtype", settings["dtype"],
        "--batch-size", str(settings["batch_size"]),
        "--seed", str(settings["seed"]),
    ]  # fmt: skip
    if config.get("chat_template_date"):
        args += ["--chat-template-date", config["chat_template_date"]]
    if settings["backend"] == "vllm" and settings.get("attention_backend"):
        args += ["--attention-backend", settings["attention_backend"]]
    if settings.get("max_gen_toks"):
        args += ["--max-gen-toks", str(settings["max_gen_toks"])]
    if config["models"][model].get("trust_remote_code"):
        args.append("--trust-remote-code")
    if labels["train_kind"] == "in_context":
        args += [
            "--in-context-k", str(labels["in_context_k"]),
            "--in-context-pool", pool_file(dataset, labels["train_bin"], heldout),
            "--in-context-seed", str(labels["seed"]),
            "--prompt-format", config["datasets"][dataset]["prompt_format"],
        ]  # fmt: skip
    return shlex.join(args)


def samples_of(model, dataset):
    """The per-question files beside a (model, dataset)'s cells: what the bootstrap resamples."""
    return [path.removesuffix(".json") + ".samples.jsonl" for path in every_cell_of(model, dataset)]


# ---- tables and figures ---------------------------------------------------------------------


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


def figures_of(model, dataset):
    names = ("accuracy", "change_vs_base", "training_loss")
    return [results("figures", model, dataset, f"{name}.{kind}") for name in names for kind in ("png", "pdf")]


def summary_figures():
    """One change-by-distance figure per dataset, one grid of every dataset per model."""
    return [
        results("figures", kind, f"{name}.{ext}")
        for kind, names in (("change_by_distance", DATASETS), ("change_grid", MODELS))
        for name in names
        for ext in ("png", "pdf")
    ]


def final_outputs():
    """Tables, figures, and every cell: cells are results in their own right, so a deleted or
    missing cell file is re-made even when the tables built from it look up to date."""
    outputs = [results("tables", f"{name}.{kind}") for name in ("cells", "seeds") for kind in ("csv", "parquet")]
    outputs += summary_figures()
    for model in MODELS:
        for dataset in DATASETS:
            outputs += figures_of(model, dataset) + every_cell_of(model, dataset)
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
