# Helpers only: paths, config lookups, wildcard constraints. No rules here.
import functools
import json
import math
import os
import re
import shlex

from snakemake.exceptions import WorkflowError

from workflow_scripts import cell_names, code_inputs, layout, runtime, sizing

RESULTS = config["results_dir"]
MODELS = list(config["models"])
DATASETS = list(config["datasets"])
REPO = workflow.basedir


def cache_dir():
    """Where jobs keep JIT and compile caches (config `cache_dir`, default results_dir/cache), absolute."""
    folder = os.path.expanduser(os.path.expandvars(config["cache_dir"] or os.path.join(RESULTS, "cache")))
    return os.path.abspath(folder)


def job_environment_exports():
    variables = runtime.job_environment(cache_dir())
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items()) + "; "


# Every step runs `python -m workflow_scripts.<step>` from the repository, wherever the job runs, with
# its caches under cache_dir(). In the prefix, not in params: moving the caches re-runs nothing.
# (The prefix is formatted like a shell command, hence the doubled braces.)
_exports = job_environment_exports().replace("{", "{{").replace("}", "}}")
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(REPO)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {_exports}")
# Only download and fetch_model (localrules, on the login node) reach the hub. train, convert,
# generate and score read local files and export HF_HUB_OFFLINE=1: on an offline compute node a stray hub lookup
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


def step_code(module):
    """The files a step runs: its module and every first-party module it imports (code_inputs.py)."""
    return code(*code_inputs.closure(module))


# ---- datasets -------------------------------------------------------------------------------


def dataset_setting(dataset, key):
    """A per-dataset value, falling back to the global one (n_bins, quantile_key)."""
    return config["datasets"][dataset].get(key, config[key])


def irt_settings(dataset):
    """The dataset's `irt` block (schema defaults filled in; `metric` defaults to the headline metric),
    or None when its bins use a shipped quantile column."""
    entry = config["datasets"][dataset].get("irt")
    if entry is None:
        return None
    return {"metric": config["datasets"][dataset]["headline_metric"], **entry}


def irt_bootstrap_arguments(dataset):
    rounds = irt_settings(dataset)["bootstrap"]
    return f"--bootstrap {rounds} --n-bins {dataset_setting(dataset, 'n_bins')}" if rounds else ""


def binning_quantile_key(dataset):
    """The dataset's own quantile_key; else `irt_quantile` when it fits IRT; else the global one."""
    own = config["datasets"][dataset].get("quantile_key")
    return own or ("irt_quantile" if irt_settings(dataset) else config["quantile_key"])


def binning_data(wildcards):
    """What the bin step splits: the dataset joined with fitted difficulties, or the dataset as is."""
    if irt_settings(wildcards.dataset):
        return results("data", wildcards.dataset, "irt", "with_difficulty.parquet")
    return layout.normalized_table(RESULTS, wildcards.dataset)


def irt_responses(wildcards):
    """A response table as given, or the one converted from a folder of lm-eval per-sample logs."""
    responses = irt_settings(wildcards.dataset)["responses"]
    if os.path.isdir(responses):
        return results("data", wildcards.dataset, "irt", "responses.parquet")
    return responses


def bin_ids(dataset):
    return layout.bins_of(config, dataset)


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
    settings["system_prompt"] = config["models"][model]["system_prompt"]
    settings["chat_template_date"] = config["chat_template_date"]
    if seed is not None:
        settings["seed"] = seed
    return settings


def train_processes():
    """One rank per GPU of the train job; on a CPU-only run, launch.cpu_processes ranks."""
    return config["resources"]["train"]["gpu"] or config["launch"]["cpu_processes"]


# The config's key for a rule's resources where it is not the rule's name: `evaluate` is the GPU job
# of evaluation, the generate rule since issue 16.
RESOURCE_KEYS = {"generate": "evaluate"}
# Rules whose time and memory follow from each job's work (workflow_scripts/sizing.py), unless the
# config gives them a fixed `runtime` / `mem_mb`.
SIZED_RULES = ("train", "convert", "generate")


def resource_entry(rule_name):
    """A rule's `resources:` entry (schema defaults filled in, e.g. for score and irt)."""
    return config["resources"][RESOURCE_KEYS.get(rule_name, rule_name)]


def placement(rule_name):
    """Where a rule's jobs go: GPU rules to the GPU partition with `gpu=N` (the plugin turns it into
    --gpus=N), CPU rules to the CPU partition; a local run ignores the partition."""
    entry = resource_entry(rule_name)
    cluster = config["cluster"]
    resources = {
        "gpu": entry["gpu"],
        "slurm_partition": cluster["gpu_partition"] if entry["gpu"] else cluster["cpu_partition"],
    }
    if entry["gpu"] and cluster["gpu_model"]:
        resources["gpu_model"] = cluster["gpu_model"]
    if entry["gpu"]:
        # All of a job's GPUs on one node: the plugin passes --gpus=N without --nodes, and the job
        # step it starts (srun -n1 --gpus=N --nodes=1) cannot use GPUs SLURM spread over nodes.
        resources["nodes"] = 1
    if cluster["account"]:
        resources["slurm_account"] = cluster["account"]
    return resources


def rule_resources(rule_name):
    """The SLURM request of a rule's jobs, from config `resources:` and `cluster:`.

    Time and memory are the config's `runtime` (minutes) and `mem_mb` where it gives them, else sized
    per job from its work (train, convert, generate; job_estimate). A retry asks for more: the time
    grows with each attempt (sized memory too), never beyond cluster.max_runtime / cluster.max_mem_mb,
    so a job killed at its limit gets more time when it is retried. In `make plan`'s dry-run, sized
    rules also carry `expected_s` (the estimate) and `output_mb` (what their outputs take on disk);
    SLURM ignores them."""
    entry = resource_entry(rule_name)
    cluster = config["cluster"]
    resources = placement(rule_name)
    minutes, mem_mb = entry.get("runtime"), entry.get("mem_mb")
    if minutes is not None:
        resources["runtime"] = lambda wildcards, attempt: sizing.attempt_runtime(
            minutes, attempt, cluster["max_runtime"]
        )
    else:
        resources["runtime"] = lambda wildcards, attempt: sized_request(rule_name, wildcards, attempt)[0]
    if mem_mb is not None:
        resources["mem_mb"] = min(mem_mb, cluster["max_mem_mb"])
    else:
        resources["mem_mb"] = lambda wildcards, attempt: sized_request(rule_name, wildcards, attempt)[1]
    if (minutes is None or mem_mb is None) and os.environ.get(sizing.PLAN_VARIABLE):
        resources["expected_s"] = lambda wildcards: on_main_process(
            lambda: round(job_estimate(rule_name, wildcards).seconds)
        )
        resources["output_mb"] = lambda wildcards: on_main_process(
            lambda: math.ceil(job_estimate(rule_name, wildcards).output_bytes / 1e6)
        )
    return resources


def check_resources(rule_name):
    """A rule's placement (partition, GPUs, account) for a job of seconds: rules/cluster.smk."""
    entry = config["resources"][rule_name]
    return {**placement(rule_name), "runtime": 10, "mem_mb": entry.get("mem_mb") or 8000}


def on_main_process(value, otherwise=0):
    """A sized figure where the run that submits the jobs computes it; `otherwise` inside a cluster job.

    A cluster job re-reads the workflow and may not ask for more of a resource than it was granted,
    and its own estimate could differ (more jobs have measured rates since it was queued). Nothing
    inside a job reads these figures."""
    return value() if workflow.is_main_process else otherwise


def sized_request(rule_name, wildcards, attempt):
    """(runtime minutes, mem_mb) of one attempt of a sized job: the estimate with headroom (sizing.py)."""
    if not workflow.is_main_process:
        return 1, 1
    cluster = config["cluster"]
    estimate = job_estimate(rule_name, wildcards)
    return (
        sizing.runtime_request(estimate.seconds, attempt, cluster["max_runtime"]),
        sizing.memory_request(estimate.memory_bytes, attempt, cluster["max_mem_mb"]),
    )


def job_estimate(rule_name, wildcards):
    """The cost of one job from its work: what it trains on or answers, the model's size, the rates
    measured so far in this results folder (assumptions where none are).

    Kept per job while the files it reads (bin, model config) stay as they are: each sized job asks
    four times (runtime, mem_mb, expected_s, output_mb), and the paper grid has 7,280 of them."""
    key = (rule_name, tuple(wildcards.items()))
    known = _JOB_ESTIMATES.get(key)
    if known and known[1] == tuple(map(_modified, known[2])):
        return known[0]
    work, files = job_work(rule_name, wildcards)
    estimate = _estimate(rule_name, work)
    _JOB_ESTIMATES[key] = (estimate, tuple(map(_modified, files)), files)
    return estimate


_JOB_ESTIMATES = {}


def _modified(path):
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def job_work(rule_name, wildcards):
    """(the work of one job as sizing.py describes it, the files it was read from)."""
    model, dataset = wildcards.model, wildcards.dataset
    parameters = model_parameters(model)
    model_config = os.path.join(base_model(model), "config.json")
    if rule_name == "convert":
        dtype_bytes = 4 if config["conversion"]["dtype"] == "float32" else 2
        return (parameters, dtype_bytes), (model_config,)
    entry = config["datasets"][dataset]
    prompt_format, n_bins = entry["prompt_format"], dataset_setting(dataset, "n_bins")
    heldout_share = config["heldout_fraction"]
    if rule_name == "train":
        labels = cell_names.labels(wildcards.train_bin)
        heldout = labels["eval_split"] == "heldout"
        rows_file = pool_file(dataset, labels["train_bin"], heldout)
        rows = sizing.parquet_rows(rows_file) or sizing.expected_rows(
            prompt_format, n_bins, 1 - heldout_share if heldout else 1
        )
        settings = train_settings(model, dataset, labels["seed"])
        shape = sizing.DATA_SHAPES[prompt_format]
        work = sizing.TrainWork(
            parameters,
            rows,
            settings["epochs"],
            settings["per_device_batch_size"],
            settings["gradient_accumulation_steps"],
            settings["gradient_checkpointing"],
            train_processes(),
            measured_rates().tokens(dataset, shape["prompt_tokens"] + shape["target_tokens"]),
            config["launch"]["checkpoint_minutes"],
        )
        return work, (rows_file, model_config)
    # generate: the row's bins, one engine start for all of them.
    labels = cell_names.labels(wildcards.train)
    heldout = labels["eval_split"] == "heldout"
    output_type, limit = task_output(entry["task"])
    works, files = [], [model_config]
    for test_bin in bin_ids(dataset):
        rows_file = test_file(dataset, test_bin, heldout)
        questions = sizing.parquet_rows(rows_file) or sizing.expected_rows(
            prompt_format, n_bins, heldout_share if heldout else 1
        )
        works.append(
            sizing.EvalWork(
                parameters,
                questions,
                prompt_format,
                output_type,
                evaluation_settings(dataset).get("max_gen_toks") or limit,
                trained=labels["train_kind"] == "bin",
                in_context_k=labels["in_context_k"] or 0,
            )
        )
        files.append(rows_file)
    return tuple(works), tuple(files)


@functools.cache
def _estimate(rule_name, work):
    rates = measured_rates()
    if rule_name == "train":
        return sizing.train_estimate(work, rates)
    if rule_name == "convert":
        return sizing.convert_estimate(*work, rates)
    return sizing.row_estimate(work, rates)


@functools.cache
def measured_rates():
    """What this results folder's finished jobs measured, read once per Snakemake process."""
    formats = {name: entry["prompt_format"] for name, entry in config["datasets"].items()}
    return sizing.Calibration.measure(RESULTS, formats, os.path.join(REPO, "tasks"))


def task_output(task):
    path = os.path.join(REPO, "tasks", f"{task}.yaml")
    if not os.path.isfile(path):  # a task not written yet: evaluation.py names it when the cell runs
        return "generate_until", sizing.ASSUMPTIONS["default_max_gen_toks"]
    return sizing.task_output(path)


def model_parameters(model):
    """The model's parameter count: its config.json once on disk, else the model entry's `parameters`."""
    return sizing.model_parameters(base_model(model), config["models"][model].get("parameters"), model)


def rule_retries(rule_name):
    return config["resources"][rule_name]["retries"]


def task_files(wildcards):
    """The task's yaml and the shared files it builds on (tracked like code)."""
    return dataset_task_files(wildcards.dataset)


@functools.cache  # once per dataset and run: 616 score jobs ask
def dataset_task_files(dataset):
    # A task not written yet (no files) must not stop a dry-run of the grid; evaluation.py names it when run.
    return code(*code_inputs.task_inputs(config["datasets"][dataset]["task"]))


# ---- beyond the study: held-out diagonal, repeated seeds, in-context baseline --------------------
# Off by default (the study's setting). Names of rows and their tags: workflow_scripts/cell_names.py.


def eval_split():
    return config["eval_split"]


def seeds():
    return layout.seeds_of(config)


def in_context_k():
    return config["in_context"]["k"]


def heldout_dir(dataset):
    return layout.heldout_dir(RESULTS, dataset)


def row_names(dataset, every_seed=True):
    """The rows of a (model, dataset) table in this config (workflow_scripts/layout.py)."""
    return layout.rows_of(config, dataset, every_seed)


def test_file(dataset, test_bin, heldout):
    return layout.test_file(RESULTS, dataset, test_bin, heldout)


def pool_file(dataset, source_bin, heldout):
    return layout.pool_file(RESULTS, dataset, source_bin, heldout)


def heldout_split_input(wildcards):
    """The held-out split, for a training job whose train_bin carries the -heldout tag."""
    heldout = cell_names.labels(wildcards.train_bin)["eval_split"] == "heldout"
    return [heldout_dir(wildcards.dataset)] if heldout else []


def training_file(wildcards, input):
    labels = cell_names.labels(wildcards.train_bin)
    if labels["eval_split"] == "heldout":
        return pool_file(wildcards.dataset, labels["train_bin"], True)
    return os.path.join(input.bins, layout.bin_file_name(labels["train_bin"]))


def training_settings(wildcards):
    labels = cell_names.labels(wildcards.train_bin)
    return json.dumps(train_settings(wildcards.model, wildcards.dataset, labels["seed"]), sort_keys=True)


# ---- paths ----------------------------------------------------------------------------------


def bins_dir(dataset):
    return layout.bins_dir(RESULTS, dataset)


def training_work_dir(model, dataset, train_bin):
    return layout.training_work_dir(RESULTS, model, dataset, train_bin)


def trained_model_dir(model, dataset, train_bin):
    return layout.trained_model_dir(RESULTS, model, dataset, train_bin)


def cell_path(model, dataset, train, test_bin):
    return layout.cell(RESULTS, model, dataset, train, test_bin)


def every_cell_of(model, dataset):
    """Every cell of a (model, dataset) in this config: the base model, each trained row per seed and,
    with in_context.k, each in-context row per seed. The tables read them all, so adding a seed re-runs
    that seed's jobs and the tables and figures built from them, nothing else."""
    return [cell_path(model, dataset, train, test_bin) for train in row_names(dataset) for test_bin in bin_ids(dataset)]


def evaluation_rule_names():
    """{n_bins: {"generate": name, "score": name}}: one pair of rules per distinct bin count."""
    counts = sorted({dataset_setting(dataset, "n_bins") for dataset in DATASETS})
    if len(counts) == 1:
        return {counts[0]: {"generate": "generate", "score": "score"}}
    return {n: {"generate": f"generate_{n}_bins", "score": f"score_{n}_bins"} for n in counts}


def datasets_with_bins(n_bins):
    return _one_of([dataset for dataset in DATASETS if dataset_setting(dataset, "n_bins") == n_bins])


def raw_path(model, dataset, train, test_bin):
    return results("raw", model, dataset, f"train-{train}", f"test-{test_bin}.json")


def evaluated_model(model, dataset, train):
    """The folder a row's generation loads: the converted fine-tuned model, or the base model (`base`
    and in-context rows)."""
    if cell_names.labels(train)["train_kind"] == "bin":
        return trained_model_dir(model, dataset, train)
    return base_model(model)


def row_extra_inputs(wildcards):
    """The held-out split and the in-context code where the row uses them."""
    labels = cell_names.labels(wildcards.train)
    inputs = {}
    if labels["eval_split"] == "heldout":
        inputs["split"] = heldout_dir(wildcards.dataset)
    if labels["train_kind"] == "in_context":
        inputs["in_context_code"] = step_code("workflow_scripts.in_context")
    return inputs


def generation_inputs(wildcards):
    """A row's model (the converted fine-tuned one, or a local base model), its held-out split and
    in-context code. Not the task files: what of them shapes the requests is in the arguments."""
    if cell_names.labels(wildcards.train)["train_kind"] == "bin":
        model = [trained_model_dir(wildcards.model, wildcards.dataset, wildcards.train)]
    else:
        model = local_base_model(wildcards)
    return {"model": model, **row_extra_inputs(wildcards)}


def scoring_inputs(wildcards):
    """The task files (filters and metrics), the base model's folder (its tokenizer renders the chat
    prompts again; the trained model may be gone), the held-out split and in-context code."""
    return {"task": task_files(wildcards), "tokenizer": local_base_model(wildcards), **row_extra_inputs(wildcards)}


_FINGERPRINTS = {}


def generation_fingerprint(task):
    """The task's generation part, hashed (workflow_scripts/task_parts.py), once per task and run; a
    task not written yet has none (generation.py names the missing file when the job runs)."""
    if task not in _FINGERPRINTS:
        from workflow_scripts import task_parts

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
        pool_file(dataset, labels["train_bin"], labels["eval_split"] == "heldout"),
        "--in-context-seed",
        str(labels["seed"]),
        "--prompt-format",
        config["datasets"][dataset]["prompt_format"],
    ]


def generation_arguments(wildcards):
    """The command-line arguments of a row's generation: everything that shapes its requests and
    responses (so changing any of it re-runs the row), nothing that only scores them."""
    dataset, model, train = wildcards.dataset, wildcards.model, wildcards.train
    settings = evaluation_settings(dataset)
    labels = cell_names.labels(train)
    heldout = labels["eval_split"] == "heldout"
    task = config["datasets"][dataset]["task"]
    args = ["--task", task, "--task-fingerprint", generation_fingerprint(task)]
    for test_bin in bin_ids(dataset):
        args += ["--bin", test_bin, test_file(dataset, test_bin, heldout), raw_path(model, dataset, train, test_bin)]
    args += [
        "--model",
        evaluated_model(model, dataset, train),
        "--backend",
        settings["backend"],
        "--dtype",
        settings["dtype"],
        "--batch-size",
        str(settings["batch_size"]),
        "--seed",
        str(settings["seed"]),
    ]
    if config["chat_template_date"]:
        args += ["--chat-template-date", config["chat_template_date"]]
    if settings["backend"] == "vllm" and settings.get("attention_backend"):
        args += ["--attention-backend", settings["attention_backend"]]
    if settings.get("max_gen_toks"):
        args += ["--max-gen-toks", str(settings["max_gen_toks"])]
    if config["models"][model]["trust_remote_code"]:
        args.append("--trust-remote-code")
    return shlex.join(args + in_context_arguments(dataset, labels))


def scoring_arguments(wildcards):
    """The command-line arguments of a row's scoring: its cells and labels. The generation settings
    are read from the raw files, so scoring cannot disagree with them."""
    dataset, model, train = wildcards.dataset, wildcards.model, wildcards.train
    labels = cell_names.labels(train)
    heldout = labels["eval_split"] == "heldout"
    # The cell file carries every label (row kind, bin learned from, k, seed, eval_split): no table
    # has to parse a path.
    args = [
        "--task",
        config["datasets"][dataset]["task"],
        "--label",
        json.dumps({"model": model, "dataset": dataset, **labels}),
        "--tokenizer",
        base_model(model),
    ]
    for test_bin in bin_ids(dataset):
        args += [
            "--cell",
            test_bin,
            test_file(dataset, test_bin, heldout),
            raw_path(model, dataset, train, test_bin),
            cell_path(model, dataset, train, test_bin),
        ]
    return shlex.join(args + in_context_arguments(dataset, labels))


def samples_of(model, dataset):
    """The per-question files beside a (model, dataset)'s cells: what the bootstrap resamples."""
    return [layout.samples(path) for path in every_cell_of(model, dataset)]


# ---- the pilot (rules/pilot.smk) ----------------------------------------------------------------


def pilot_job():
    """The pilot's row: config `pilot` (default: the smallest model, the first dataset, bin 0), trained
    with the first seed in this eval_split and evaluated on its own bin, beside the base model there."""
    entry = config["pilot"]
    model = entry.get("model") or min(MODELS, key=model_parameters)
    dataset = entry.get("dataset") or DATASETS[0]
    train_bin = entry["train_bin"]
    test_bin = str(train_bin)
    row = cell_names.bin_name(train_bin, eval_split(), seeds()[0])
    return {
        "model": model,
        "dataset": dataset,
        "row": row,
        "test_bin": test_bin,
        "model_dir": trained_model_dir(model, dataset, row),
        "cell": cell_path(model, dataset, row, test_bin),
        "base_cell": cell_path(model, dataset, cell_names.base_name(eval_split()), test_bin),
        "test_file": test_file(dataset, test_bin, eval_split() == "heldout"),
        "drill": results("pilot", "resume_drill", model, dataset, f"train-{row}", "zero"),
    }


def pilot_inputs(wildcards):
    job = pilot_job()
    return {
        "model": job["model_dir"],
        "cell": job["cell"],
        "base_cell": job["base_cell"],
        "drill": job["drill"],
        "bins": bins_dir(job["dataset"]),
    }


def pilot_expectations():
    """What the pilot asserts its outputs show: the grid's GPU paths as configured."""
    job = pilot_job()
    settings = train_settings(job["model"], job["dataset"])
    gpus = config["resources"]["train"]["gpu"]
    return json.dumps(
        {
            "ranks": train_processes(),
            "backend": "nccl" if gpus else "gloo",
            "mixed_precision": "bf16" if settings["bf16"] else "no",
            "optimizer": settings["optim"] if gpus else settings["cpu_optim"],
            "use_liger_kernel": settings["use_liger_kernel"],
            "evaluation_backend": evaluation_settings(job["dataset"])["backend"],
        },
        sort_keys=True,
    )


def pilot_benchmarks():
    """The benchmark files of the pilot's jobs: read for the report where they exist."""
    job = pilot_job()
    where = (job["model"], job["dataset"], f"train-{job['row']}")
    return json.dumps(
        {
            "train": results("benchmarks", "train", *where[:2], f"{where[2]}.tsv"),
            "resume_drill": results("benchmarks", "pilot", "resume_drill", *where[:2], f"{where[2]}.tsv"),
            "convert": results("benchmarks", "convert", *where[:2], f"{where[2]}.tsv"),
            "generate": results("benchmarks", "generate", *where[:2], f"{where[2]}.tsv"),
            "generate_base": results(
                "benchmarks", "generate", *where[:2], f"train-{cell_names.base_name(eval_split())}.tsv"
            ),
        }
    )


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
    return layout.run_lock(RESULTS)


def take_results_lock():
    import socket

    os.makedirs(RESULTS, exist_ok=True)
    me = f"{socket.gethostname()} {os.getpid()}"
    try:
        descriptor = os.open(results_lock(), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        host, pid = open(results_lock()).read().split()
        if host == socket.gethostname() and not layout.process_alive(int(pid)):
            os.replace(results_lock(), results_lock() + ".stale")  # that run is gone: take over
            return take_results_lock()
        raise WorkflowError(
            f"results_dir {RESULTS} is in use by another Snakemake run (process {pid} on {host}); "
            f"wait for it to finish, or delete {results_lock()} if that run no longer exists"
        )
    with os.fdopen(descriptor, "w") as handle:
        handle.write(me + "\n")


def release_results_lock():
    if os.path.exists(results_lock()) and open(results_lock()).read().split()[1:] == [str(os.getpid())]:
        os.remove(results_lock())
