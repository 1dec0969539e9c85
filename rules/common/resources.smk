# What each job asks SLURM for: partition, GPUs, threads, and time and memory sized from its
# work (workflow_scripts/lib/sizing.py), with retries capped at the partition limits.
import functools
import math
import os

from workflow_scripts.lib import cell_names, sizing

# The config's key for a rule's resources where it is not the rule's name: the pilot's memory probe
# is a train job.
RESOURCE_KEYS = {"memory_probe": "train"}
# Rules whose time and memory follow from each job's work (workflow_scripts/lib/sizing.py), unless the
# config gives them a fixed `runtime` / `mem_mb`.
SIZED_RULES = ("train", "convert", "generate", "memory_probe")


def resource_entry(rule_name):
    """A rule's `resources:` entry (schema defaults filled in, e.g. for score and irt)."""
    return config["resources"][RESOURCE_KEYS.get(rule_name, rule_name)]


def model_resources(rule_name, model=None):
    """A rule's entry for one model's jobs: gpu and threads from its `by_model_size` class that holds the
    model's parameter count, where it has one (train: 1 GPU for a 1.5B model, 4 for 14B); else its own.
    Without a model (cluster_check), the entry's own values: the most a job of the rule asks for."""
    entry = resource_entry(rule_name)
    if model is None or not entry.get("by_model_size"):
        return entry
    return {**entry, **sizing.size_class(entry["by_model_size"], model_parameters(model))}


# Rules whose jobs may span nodes (by their config key): a train job starts one launcher per node
# (workflow_scripts/lib/launcher.py). A generate job's engine and a convert job stay on one node.
MULTI_NODE_RESOURCES = ("train",)
# The keys placement() may give a job; a job's value None leaves the key out of its request.
PLACEMENT_KEYS = ("gpu", "nodes", "node_gpus", "gpu_model", "gres", "mpi", "tasks_per_node", "cpus_per_gpu")


def job_nodes(rule_name, model=None):
    """(nodes, GPUs on each) of a rule's job for one model: a train job whose GPUs exceed
    cluster.gpus_per_node spreads them evenly over as few nodes as hold them; every other job has one."""
    gpus = model_resources(rule_name, model)["gpu"]
    if not gpus or RESOURCE_KEYS.get(rule_name, rule_name) not in MULTI_NODE_RESOURCES:
        return 1, gpus
    return sizing.node_split(gpus, config["cluster"]["gpus_per_node"])


def placement(rule_name, model=None):
    """Where a rule's jobs go: GPU rules to the GPU partition, CPU rules to the CPU partition; a local
    run ignores the partition.

    On one node a GPU job asks for `gpu=N` (the plugin turns it into --gpus=N) and `nodes=1`: the job
    step the plugin starts (srun -n1 --gpus=N --nodes=1) cannot use GPUs SLURM spread over nodes. Across
    nodes it asks for --nodes=K and the same GPUs on each (`gres`, which SLURM counts per node, where
    --gpus=N could be spread unevenly), with one task slot per GPU; `mpi` makes the plugin's job step
    run the command in the job's batch script instead of inside `srun -n1`, so that the command can
    start its own step with one launcher on every node."""
    entry = model_resources(rule_name, model)
    cluster = config["cluster"]
    gpus = entry["gpu"]
    resources = {"gpu": gpus, "slurm_partition": cluster["gpu_partition"] if gpus else cluster["cpu_partition"]}
    nodes, per_node = job_nodes(rule_name, model)
    if RESOURCE_KEYS.get(rule_name, rule_name) in MULTI_NODE_RESOURCES:
        # What the training launcher reads, on GPUs or not: its nodes and the GPUs each must see.
        resources.update(nodes=1, node_gpus=per_node)
    if gpus and nodes == 1:
        resources["nodes"] = 1
        if cluster["gpu_model"]:
            resources["gpu_model"] = cluster["gpu_model"]
    elif gpus:
        gpu_type = f"{cluster['gpu_model']}:" if cluster["gpu_model"] else ""
        resources.update(
            gpu=None,
            nodes=nodes,
            gres=f"gpu:{gpu_type}{per_node}",
            mpi="srun",
            tasks_per_node=per_node,
            cpus_per_gpu=max(1, entry["threads"] // per_node),
        )
    if cluster["account"]:
        resources["slurm_account"] = cluster["account"]
    return {key: value for key, value in resources.items() if value is not None}


def per_model_placement(rule_name):
    """placement() of each job's model, for a rule whose entry has by_model_size (the config check keeps
    every class of a GPU rule on GPUs, so the partition stays)."""
    fixed = {key: value for key, value in placement(rule_name).items() if key not in PLACEMENT_KEYS}
    return {
        **fixed,
        **{
            key: functools.partial(_placement_value, rule_name, key)
            for key in PLACEMENT_KEYS
            if key != "gpu_model" or config["cluster"]["gpu_model"]
        },
    }


def _placement_value(rule_name, key, wildcards):
    model = wildcards.model
    return _model_placement(rule_name, model, model_parameters(model)).get(key)


@functools.cache
def _model_placement(rule_name, model, parameters):
    """placement() once per rule and model, not once per job and key (8 keys, ~1,200 sized jobs in the
    paper grid). The parameter count is part of the key: once fetch_model has put the model's
    config.json on disk, its count (which picks the size class) comes from there."""
    return placement(rule_name, model)


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
    resources = per_model_placement(rule_name) if entry.get("by_model_size") else placement(rule_name)
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
        if rule_name == "generate":  # the engine start within it: what `make plan` says a start costs
            resources["expected_startup_s"] = lambda wildcards: on_main_process(
                lambda: round(job_estimate(rule_name, wildcards).parts["startup_s"])
            )
        # The memory probe saves no model: it leaves a small report, whatever a train job would write.
        writes = rule_name != "memory_probe"
        resources["output_mb"] = lambda wildcards: on_main_process(
            lambda: math.ceil(job_estimate(rule_name, wildcards).output_bytes / 1e6) if writes else 0
        )
    return resources


# A cluster_check job imports torch and counts devices: seconds, and memory for torch's import where
# the rule's own memory is sized per job (no fixed mem_mb to reuse).
CHECK_JOB_MINUTES, CHECK_JOB_MEM_MB = 10, 8000


def check_resources(rule_name):
    """A rule's placement (partition, GPUs, account) for a job of seconds on one node: rules/cluster.smk.
    A rule whose largest job spans nodes is checked on one node with that job's GPUs per node."""
    entry = config["resources"][rule_name]
    resources = {key: value for key, value in placement(rule_name).items() if key not in PLACEMENT_KEYS}
    gpus = check_gpus(rule_name)
    resources.update(gpu=gpus, **({"nodes": 1} if gpus else {}))
    if gpus and config["cluster"]["gpu_model"]:
        resources["gpu_model"] = config["cluster"]["gpu_model"]
    return {**resources, "runtime": CHECK_JOB_MINUTES, "mem_mb": entry.get("mem_mb") or CHECK_JOB_MEM_MB}


def check_gpus(rule_name):
    """The GPUs one node of the rule's largest job holds (what its cluster_check job asks for and expects)."""
    return job_nodes(rule_name)[1]


def on_main_process(value, otherwise=0):
    """A sized figure where the run that submits the jobs computes it; `otherwise` inside a cluster job.

    A cluster job re-reads the workflow and may not ask for more of a resource than it was granted,
    and its own estimate could differ (more jobs have measured rates since it was queued). Nothing
    inside a job reads these figures."""
    return value() if workflow.is_main_process else otherwise


def sized_request(rule_name, wildcards, attempt):
    """(runtime minutes, mem_mb) of one attempt of a sized job: the estimate with headroom (sizing.py)."""
    if not workflow.is_main_process:
        # Inside a cluster job: what the submitting run granted (passed as --resources), which the
        # job's own command reads (train: --time-limit-minutes); never more than that.
        granted = workflow.global_resources
        return granted.get("runtime", 1), granted.get("mem_mb", 1)
    cluster = config["cluster"]
    estimate = job_estimate(rule_name, wildcards)
    # SLURM's --mem is per node; a job across nodes holds its ranks' memory spread evenly over them.
    nodes = job_nodes(rule_name, wildcards.model)[0]
    return (
        sizing.runtime_request(estimate.seconds, attempt, cluster["max_runtime"]),
        sizing.memory_request(estimate.memory_bytes / nodes, attempt, cluster["max_mem_mb"]),
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
    if rule_name == "memory_probe":  # a few steps of max_length sequences
        settings = train_settings(model, dataset)
        ranks = train_processes(model)
        per_step = settings["per_device_batch_size"] * ranks * settings["gradient_accumulation_steps"]
        work = sizing.TrainWork(
            parameters,
            MEMORY_PROBE_STEPS * per_step,
            1,
            settings["per_device_batch_size"],
            settings["gradient_accumulation_steps"],
            settings["gradient_checkpointing"],
            ranks,
            settings["max_length"],
            0,
        )
        return work, (model_config,)
    if rule_name == "train":
        labels = cell_names.labels(wildcards.trained_row)
        heldout = labels["eval_split"] == "heldout"
        rows_file = layout.pool_file(RESULTS, dataset, labels["train_bin"], heldout)
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
            train_processes(model),
            measured_rates().tokens(dataset, shape["prompt_tokens"] + shape["target_tokens"]),
            config["launch"]["checkpoint_minutes"],
        )
        return work, (rows_file, model_config)
    # generate: the row's bins, one engine start for all of them.
    labels = cell_names.labels(wildcards.row)
    heldout = labels["eval_split"] == "heldout"
    output_type, limit = task_output(entry["task"])
    max_gen_toks = evaluation_settings(dataset).get("max_gen_toks") or limit
    works, files = [], [model_config]
    for _, rows_file in test_files(dataset, heldout):
        questions = sizing.parquet_rows(rows_file) or sizing.expected_rows(
            prompt_format, n_bins, heldout_share if heldout else 1
        )
        works.append(
            sizing.EvalWork(
                parameters,
                questions,
                prompt_format,
                output_type,
                max_gen_toks,
                trained=labels["train_kind"] == "bin",
                in_context_k=labels["in_context_k"] or 0,
            )
        )
        files.append(rows_file)
    return tuple(works), tuple(files)


@functools.cache
def _estimate(rule_name, work):
    rates = measured_rates()
    if rule_name in ("train", "memory_probe"):
        return sizing.train_estimate(work, rates)
    if rule_name == "convert":
        return sizing.convert_estimate(*work, rates)
    return sizing.row_estimate(work, rates)


@functools.cache
def measured_rates():
    """What this results folder's finished jobs measured, read once per Snakemake process."""
    formats = {name: entry["prompt_format"] for name, entry in config["datasets"].items()}
    return sizing.Calibration.measure(RESULTS, formats, os.path.join(REPO, "tasks"))


@functools.cache  # once per task and run, like its task files (rules/common/settings.smk): 616 generate jobs ask
def task_output(task):
    path = os.path.join(REPO, "tasks", f"{task}.yaml")
    if not os.path.isfile(path):  # a task not written yet: evaluation.py names it when the cell runs
        return "generate_until", sizing.ASSUMPTIONS["default_max_gen_toks"]
    return sizing.task_output(path)


def rule_retries(rule_name):
    return config["resources"][rule_name]["retries"]


def rule_threads(rule_name):
    """A rule's threads: a function of each job's model where the rule's entry has by_model_size."""
    if resource_entry(rule_name).get("by_model_size"):
        return lambda wildcards: model_resources(rule_name, wildcards.model)["threads"]
    return resource_entry(rule_name)["threads"]


def rule_gpus(rule_name, model=None):
    """GPUs of a rule's jobs for one model (by_model_size); without a model, the most a job asks for."""
    return model_resources(rule_name, model)["gpu"]
