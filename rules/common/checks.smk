# Config checks that run when the workflow is parsed, before any job: each problem is one line that
# names the field and the fix. The schema (config/schema.yaml) says what is allowed; this file turns
# its findings into readable messages and adds the checks a schema cannot express.
import functools
import json
import os
import re
import shutil
import subprocess

import jsonschema
import yaml

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from workflow_scripts.lib import batch, config_files, layout, sizing, task_files

KEY_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit"


def _field(path):
    return ".".join(str(part) for part in path) or "(top level)"


# Keys that were settings once, and what took their place: a config that still has one gets this line.
RENAMED_KEYS = {
    "gradient_accumulation_steps": "set effective_batch_size instead (sequences per optimizer step over all "
    "ranks; each job derives its accumulation steps from its rank count)",
}


def _describe(error):
    field, value = _field(error.absolute_path), error.instance
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed))
        renamed = [key for key in unknown if key in RENAMED_KEYS]
        if renamed:
            return f"{field}.{renamed[0]} is no setting any more; fix: {RENAMED_KEYS[renamed[0]]}"
        return f"{field}: unknown key(s) {unknown}; fix: remove or rename them (allowed: {allowed})"
    if "propertyNames" in error.schema_path:
        return f"{field}: name {value!r} is not allowed; fix: rename it using only {KEY_RULE} (names become folders and wildcards)"
    if error.validator == "required":
        return f"{field}: {error.message}; fix: add it (config/config.yaml shows every key)"
    if error.validator == "oneOf" and field.endswith(".source"):
        return f"{field}: give exactly one of `hub` (with `name`) or `path`; fix: remove the other"
    if error.validator == "oneOf":
        return f"{field}: give exactly one of `hub` or `path`; fix: remove the other"
    if field == "pilot" and isinstance(value, dict):
        return (
            "pilot is a list of entries now (one per GPU path to prove); fix: write it as "
            f"pilot: [{json.dumps(value)}] and add entries (config/config.yaml shows the study's)"
        )
    if error.validator == "pattern" and field.endswith("headline_metric"):
        return f"{field} = {value!r} is not 'metric,filter'; fix: e.g. 'acc,none' or 'exact_match,strict-match'"
    limits = {
        k: error.schema[k]
        for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "type", "enum", "pattern")
        if k in error.schema
    }
    return f"{field} = {value!r}: {error.message}; fix: use a value with {limits}"


def _semantic_problems(config):
    """Checks a schema cannot express, on the config with its defaults filled in."""
    problems = []
    accelerate = config.get("launch", {}).get("accelerate_config")
    if accelerate and not os.path.isfile(os.path.join(workflow.basedir, accelerate)):
        problems.append(
            f"launch.accelerate_config: {accelerate} does not exist; fix: point it at a file in config/accelerate/"
        )
    evaluation = config.get("evaluation", {})
    gpus = config.get("resources", {}).get("generate", {}).get("gpu", 0)
    for name, dataset in config.get("datasets", {}).items():
        task = dataset.get("task")
        if task and not os.path.isfile(os.path.join(workflow.basedir, "tasks", f"{task}.yaml")):
            problems.append(f"datasets.{name}.task: no file tasks/{task}.yaml; fix: name a task in tasks/")
        elif task and dataset.get("headline_metric"):
            # The tables and figures pick this score from every cell: a name the task never reports
            # would only fail in the figure jobs, after all evaluation ran.
            declared = sorted(task_files.declared_scores(task))
            if dataset["headline_metric"] not in declared:
                problems.append(
                    f"datasets.{name}.headline_metric = {dataset['headline_metric']!r} is not a score "
                    f"tasks/{task}.yaml declares; fix: use one of {declared}"
                )
        backend = dataset.get("evaluation", {}).get("backend", evaluation.get("backend"))
        if backend == "vllm" and not gpus and not _jobs_have_cpu_vllm():
            problems.append(
                f"datasets.{name}: evaluation backend 'vllm' needs a GPU but resources.generate.gpu is 0 "
                "(and the jobs' python has no CPU build of vLLM); fix: set evaluation.backend: hf for a "
                "CPU run"
            )
    problems += _path_problems(config)
    problems += _train_job_problems(config)
    problems += _resource_limit_problems(config)
    problems += _data_problems(config)
    problems += _model_problems(config)
    # Only train, convert and generate are sized from their work (rules/common/resources.smk SIZED_RULES).
    for rule_name, entry in config.get("resources", {}).items():
        missing = [key for key in ("runtime", "mem_mb") if key not in (entry or {})]
        if missing and rule_name not in ("train", "convert", "generate"):
            problems.append(
                f"resources.{rule_name}: no {' or '.join(missing)}; fix: add it (only train, convert and "
                "generate are sized from their work)"
            )
    # Sized jobs need each model's parameter count before its config.json is on disk (a plan, a dry-run).
    sized = [
        r
        for r in ("train", "convert", "generate")
        if not {"runtime", "mem_mb"} <= set(config.get("resources", {}).get(r) or {})
    ]
    for name, model in config.get("models", {}).items():
        folder = (model or {}).get("path") or os.path.join(config["model_cache"], name)
        if sized and not (model or {}).get("parameters") and not os.path.isfile(os.path.join(folder, "config.json")):
            problems.append(
                f"models.{name}: no `parameters` and no {folder}/config.json yet, but resources.{sized[0]} is "
                f"sized from the model's size; fix: set models.{name}.parameters (the count on the model card)"
            )
    problems += _pilot_problems(config)
    # A run's seed is part of its name (-seed<S>); an override would train under another name's seed.
    for kind in ("models", "datasets"):
        for name, entry in config.get(kind, {}).items():
            if "seed" in (entry or {}).get("training", {}):
                problems.append(
                    f"{kind}.{name}.training.seed: a run's seed comes from the top-level `seeds`; "
                    "fix: remove it and list the seeds there"
                )
    for name, model in config.get("models", {}).items():
        path = model.get("path")
        if path and os.path.isdir(path) and not _has_chat_template(path):
            problems.append(
                f"models.{name}.path: the tokenizer in {path} has no chat template; fix: use an instruct model"
            )
    return problems


# Rules whose jobs have a {model} wildcard: only their resources may depend on the model's size.
MODEL_SIZED_RESOURCES = ("train", "generate", "convert", "score")


def _model_parameters(config, name):
    """A model's parameter count (config.json on disk, else its entry's `parameters`); None if unknown
    (that problem has its own line above)."""
    model = config["models"][name]
    folder = model.get("path") or os.path.join(config["model_cache"], name)
    try:
        return sizing.model_parameters(folder, model.get("parameters"), name)
    except ValueError:
        return None


def _train_job_problems(config):
    """Each (model, dataset)'s train job: its GPUs (by the model's size) against the node and the GPU
    memory, and its effective batch against its ranks."""
    problems = []
    resources, cluster = config["resources"], config["cluster"]
    for rule_name, entry in resources.items():
        classes = entry.get("by_model_size") or []
        if classes and rule_name not in MODEL_SIZED_RESOURCES:
            problems.append(
                f"resources.{rule_name}.by_model_size: its jobs have no model; fix: remove it (only "
                f"{', '.join(MODEL_SIZED_RESOURCES)} can depend on the model's size)"
            )
        elif any(bool(c["gpu"]) != bool(entry["gpu"]) for c in classes):
            problems.append(
                f"resources.{rule_name}.by_model_size: every class must ask for GPUs or none, as "
                f"resources.{rule_name}.gpu = {entry['gpu']} does (one partition per rule); fix: make them agree"
            )
        for gpus in sorted({entry["gpu"], *(c["gpu"] for c in classes)}):
            if gpus <= cluster["gpus_per_node"]:
                continue
            if rule_name != "train":
                problems.append(
                    f"resources.{rule_name}: gpu {gpus} is more than cluster.gpus_per_node = "
                    f"{cluster['gpus_per_node']} (only a train job spans nodes); fix: ask for at most "
                    f"{cluster['gpus_per_node']}, or correct cluster.gpus_per_node"
                )
                continue
            try:
                nodes, per_node = sizing.node_split(gpus, cluster["gpus_per_node"])
            except ValueError as problem:
                problems.append(
                    f"resources.train: gpu {gpus}: {problem} (cluster.gpus_per_node); fix: ask for a multiple "
                    "of the GPUs one node gives"
                )
                continue
            if per_node < 2:
                problems.append(
                    f"resources.train: gpu {gpus} over {nodes} nodes of one GPU each: the SLURM plugin submits a "
                    "job across nodes with more than one task per node; fix: set cluster.gpus_per_node to 2 or more"
                )
    train = resources["train"]
    for model in config["models"]:
        parameters = _model_parameters(config, model)
        if parameters is None:
            continue
        problems += _convert_memory_problems(config, model, parameters)
        gpus = {**train, **sizing.size_class(train.get("by_model_size") or [], parameters)}["gpu"]
        ranks = gpus or config["launch"]["cpu_processes"]
        for dataset, entry in config["datasets"].items():
            settings = {
                **config["training"],
                **entry.get("training", {}),
                **config["models"][model].get("training", {}),
            }
            try:
                batch.accumulation_steps(settings["effective_batch_size"], settings["per_device_batch_size"], ranks)
            except ValueError as problem:
                problems.append(
                    f"{model} on {dataset}: {problem} ({'resources.train.gpu' if gpus else 'launch.cpu_processes'}"
                    f" for this model); fix: set training.effective_batch_size (or the dataset's or model's) to a "
                    f"multiple of {settings['per_device_batch_size'] * ranks}, or change per_device_batch_size or "
                    "the GPUs"
                )
            held = sizing.zero3_state_bytes_per_gpu(parameters, gpus, settings["optim"]) / 1e9
            if gpus and held > 0.8 * cluster["gpu_memory_gb"]:
                problems.append(
                    f"resources.train: {model} ({parameters / 1e9:.1f}B parameters) on {gpus} GPU(s) holds "
                    f"~{held:.0f} GB of ZeRO-3 training state per GPU ({settings['optim']}), more than 80% of "
                    f"cluster.gpu_memory_gb = {cluster['gpu_memory_gb']}; fix: give models of this size more "
                    "GPUs (resources.train.by_model_size)"
                )
                break  # one line per model: the state does not depend on the dataset
    return problems


def _convert_memory_problems(config, model, parameters):
    """A convert job holds the model's fp32 weights in host memory (zero_to_fp32): refused before any
    training where no node of the CPU partition could hold them (cluster.max_mem_mb), as the job would
    otherwise ask for the cap and be killed after its model had trained."""
    if config["resources"].get("convert", {}).get("mem_mb"):
        return []  # a fixed request: checked against the cap with the other fixed ones
    dtype_bytes = 4 if config["conversion"]["dtype"] == "float32" else 2
    needed_mb = sizing.memory_request(sizing.convert_estimate(parameters, dtype_bytes).memory_bytes, 1, float("inf"))
    limit = config["cluster"]["max_mem_mb"]
    if needed_mb <= limit:
        return []
    return [
        f"resources.convert: converting {model} ({parameters / 1e9:.1f}B parameters) needs ~{needed_mb / 1000:,.0f} GB of "
        f"host memory (its fp32 weights), more than cluster.max_mem_mb = {limit}; fix: a CPU partition whose nodes "
        f"hold {needed_mb / 1000:,.0f} GB (cluster.cpu_partition, and cluster.max_mem_mb to match)"
    ]


def _pilot_problems(config):
    """Each pilot entry names a model and dataset of the config, and a bin its dataset has."""
    problems = []
    models, datasets = config.get("models", {}), config.get("datasets", {})
    for index, entry in enumerate(config.get("pilot") or []):
        where = f"pilot[{index}]"
        if entry.get("model") and entry["model"] not in models:
            problems.append(f"{where}.model: {entry['model']!r} is not in models; fix: name one of {sorted(models)}")
        if entry.get("dataset") and entry["dataset"] not in datasets:
            problems.append(
                f"{where}.dataset: {entry['dataset']!r} is not in datasets; fix: name one of {sorted(datasets)}"
            )
        elif entry.get("dataset"):
            n_bins = datasets[entry["dataset"]].get("n_bins", config["n_bins"])
            if entry["train_bin"] >= n_bins:
                problems.append(
                    f"{where}.train_bin: {entry['train_bin']} but {entry['dataset']} has {n_bins} bins; fix: use 0 "
                    f"to {n_bins - 1}"
                )
        if entry["memory_probe"] and entry["resume_drill"]:
            problems.append(
                f"{where}: a memory probe trains no row to resume; fix: give resume_drill to a row entry instead"
            )
    return problems


def _resource_limit_problems(config):
    """A fixed runtime or memory beyond the partition's limits: SLURM would refuse the job (or a cap
    would silently give it less than the config says)."""
    problems, cluster = [], config["cluster"]
    fits_irt = any(d.get("irt") for d in config["datasets"].values())
    for rule_name, entry in config["resources"].items():
        if rule_name == "irt" and not fits_irt:
            continue  # its defaults apply only to configs that fit IRT
        for key, limit in (("runtime", "max_runtime"), ("mem_mb", "max_mem_mb")):
            if key in entry and entry[key] > cluster[limit]:
                problems.append(
                    f"resources.{rule_name}.{key} = {entry[key]} is more than cluster.{limit} = {cluster[limit]} "
                    f"(the partition's limit); fix: ask for at most {cluster[limit]}, or correct cluster.{limit}"
                )
    batch_size = str(config["evaluation"]["batch_size"])
    sizes = [str(d.get("evaluation", {}).get("batch_size", batch_size)) for d in config["datasets"].values()]
    for value in {batch_size, *sizes}:
        if not re.fullmatch(r"auto(:\d+)?|[1-9]\d*", value):
            problems.append(
                f"evaluation.batch_size = {value!r} is not a batch size lm-eval takes; fix: a positive integer, "
                "`auto` or `auto:N`"
            )
    return problems


def _bin_sizes(config, name, dataset):
    """{bin: rows} of a dataset from what exists (its bins, its downloaded table, its local source), or
    None before any of them does (a hub dataset not downloaded yet: the bin step checks then)."""
    import pandas

    from workflow_scripts.lib import bins

    n_bins = dataset.get("n_bins", config["n_bins"])
    bins_manifest = os.path.join(layout.bins_dir(config["results_dir"], name), "manifest.json")
    if os.path.isfile(bins_manifest):
        try:
            manifest = json.load(open(bins_manifest))
            if manifest.get("n_bins") == n_bins:
                return {int(k): int(v) for k, v in manifest["counts"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # the bin step re-makes a broken manifest and names it
    if dataset.get("irt"):
        return None  # bins come from a fit that has not run
    key = dataset.get("quantile_key") or config["quantile_key"]
    table = layout.normalized_table(config["results_dir"], name)
    source = dataset["source"].get("path")
    try:
        if os.path.isfile(table):
            quantiles = pandas.read_parquet(table, columns=[key])[key]
        elif source and os.path.isfile(source) and source.endswith(".parquet"):
            quantiles = pandas.read_parquet(source, columns=[key])[key]
        elif source and os.path.isfile(source) and source.endswith((".jsonl", ".json")):
            quantiles = pandas.read_json(source, lines=source.endswith(".jsonl"))[key]
        else:
            return None
        assigned = bins.assign_bins(quantiles, n_bins)
    except (ValueError, KeyError, OSError):
        return None  # a missing column or bad values: download and bin refuse them with their own lines
    return {k: int((assigned == k).sum()) for k in range(n_bins)}


def _data_problems(config):
    """Training rows and in-context pools against the data on disk: enough items for min_train_rows
    and for in_context.k."""
    from workflow_scripts.lib import heldout as heldout_split

    problems = []
    heldout = config["eval_split"] == "heldout"
    k = config["in_context"]["k"]
    for name, dataset in config["datasets"].items():
        sizes = _bin_sizes(config, name, dataset)
        if sizes is None:
            continue
        empty = [k for k, n in sorted(sizes.items()) if n == 0]
        if empty:
            problems.append(
                f"datasets.{name}: difficulty bins {empty} of {len(sizes)} are empty; fix: lower n_bins or add data"
            )
            continue
        train = heldout_split.training_sizes(sizes, config["heldout_fraction"]) if heldout else sizes
        problem = heldout_split.too_few_rows(train, config["min_train_rows"])
        if problem:
            held = f" after holding out heldout_fraction = {config['heldout_fraction']}" if heldout else ""
            problems.append(
                f"datasets.{name}: {problem}{held}; fix: lower n_bins{' or heldout_fraction' if heldout else ''}, "
                "add data, or lower min_train_rows"
            )
        if k and min(train.values()) <= k:
            problems.append(
                f"in_context.k = {k} but {name}'s smallest source pool holds {min(train.values())} item(s) (each "
                "test item is left out of its own prompt); fix: lower in_context.k"
            )
    return problems


def _model_problems(config):
    """A local model folder that is not a model, and a max_length beyond a model's context."""
    problems = []
    for name, model in config["models"].items():
        folder = model.get("path") or os.path.join(config["model_cache"], name)
        config_json = os.path.join(folder, "config.json")
        if model.get("path") and os.path.isdir(folder) and not os.path.isfile(config_json):
            problems.append(
                f"models.{name}.path: {folder} has no config.json: not a Hugging Face model folder; fix: point "
                "it at the folder save_pretrained wrote"
            )
            continue
        if not os.path.isfile(config_json):
            continue
        try:
            model_config = json.load(open(config_json))
        except ValueError:
            problems.append(f"models.{name}: {config_json} is not JSON; fix: re-fetch or re-save the model")
            continue
        context = model_config.get("max_position_embeddings") or model_config.get("text_config", {}).get(
            "max_position_embeddings"
        )
        for dataset, entry in config["datasets"].items():
            length = {**config["training"], **entry.get("training", {}), **model.get("training", {})}["max_length"]
            if context and length > context:
                problems.append(
                    f"training.max_length = {length} ({name} on {dataset}) is more than {name}'s context "
                    f"({context} tokens, max_position_embeddings); fix: lower max_length"
                )
                break
    return problems


def check_inputs_exist():
    """Files and folders the config names that neither exist nor are made by the workflow's rules (a
    local model, a dataset's local source, IRT responses). Called at the end of the Snakefile, once
    every rule is defined (a path the workflow builds, like the demo's tiny model, is no problem).
    Without it, a missing local model plans nothing on a finished results folder and says nothing."""
    if not workflow.is_main_process:
        return
    named = [(f"models.{n}.path", m["path"]) for n, m in config["models"].items() if m.get("path")]
    named += [
        (f"datasets.{n}.source.path", d["source"]["path"])
        for n, d in config["datasets"].items()
        if "path" in d["source"]
    ]
    named += [
        (f"datasets.{n}.irt.responses", d["irt"]["responses"]) for n, d in config["datasets"].items() if d.get("irt")
    ]
    problems = [
        f"{field}: {path} does not exist and none of the workflow's rules makes it; fix: correct the path, or make "
        "the file there"
        for field, path in named
        if not os.path.exists(path) and not any(rule.is_producer(path) for rule in workflow.rules)
    ]
    if problems:
        raise WorkflowError("invalid config, nothing was run:\n" + "\n".join(f"  - {p}" for p in problems))


def _uses_conda():
    return DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method


@functools.cache
def _jobs_have_cpu_vllm():
    """Whether the python that evaluation jobs run has a CPU build of vLLM (version `...+cpu`).

    With conda, jobs run envs/eval.yaml (the CUDA build). Without, they run the `python` on PATH,
    which is asked here (a CPU-only run with vLLM, e.g. `PATH=.venv-vllm/bin:$PATH`)."""
    python = shutil.which("python")
    if _uses_conda() or python is None:
        return False
    asked = subprocess.run(
        [python, "-c", "from importlib.metadata import version; print(version('vllm'))"], capture_output=True, text=True
    )
    return asked.returncode == 0 and "cpu" in asked.stdout


def _path_problems(config):
    """Folders named with an environment variable that is not set (it would be created literally)."""
    problems = []
    cache = config.get("cache_dir") or ""
    if "$" in os.path.expandvars(cache):
        problems.append(
            f"cache_dir = {cache!r} names an environment variable that is not set; fix: set it, " "or give a plain path"
        )
    prefix = str(workflow.deployment_settings.conda_prefix or "")
    if _uses_conda() and "$" in prefix:
        problems.append(
            f"conda-prefix = {prefix!r} names an environment variable that is not set; fix: set it, "
            "or edit conda-prefix in the profile (slurm-b200/profile.yaml)"
        )
    return problems


def _has_chat_template(folder):
    if os.path.exists(os.path.join(folder, "chat_template.jinja")):
        return True
    tokenizer_config = os.path.join(folder, "tokenizer_config.json")
    return os.path.exists(tokenizer_config) and bool(json.load(open(tokenizer_config)).get("chat_template"))


def _config_file_problems():
    """Keys given twice in a config file (--configfile ones and the default): YAML keeps the last silently."""
    return [
        problem
        for path in workflow.configfiles
        if os.path.isfile(path)
        for problem in config_files.duplicate_keys(path)
    ]


# Resource keys renamed with the jobs they size: a config that still has one gets this one line.
RENAMED_RESOURCES = {"evaluate": "generate"}


def _renamed_resource_problems(config):
    resources = config.get("resources") or {}
    return [
        f"resources.{old} is resources.{new} now (it sizes the {new} jobs); fix: rename the key"
        for old, new in RENAMED_RESOURCES.items()
        if isinstance(resources, dict) and old in resources
    ]


def check_config(config):
    early = _config_file_problems() or _renamed_resource_problems(config)
    if early:
        raise WorkflowError("invalid config, nothing was run:\n" + "\n".join(f"  - {p}" for p in early))
    with open(os.path.join(workflow.basedir, "config/schema.yaml")) as handle:
        schema = yaml.safe_load(handle)
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        _describe(e) for e in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if not problems:
        validate(config, os.path.join(workflow.basedir, "config/schema.yaml"))  # the schema's defaults, filled in
    if not problems and workflow.is_main_process:
        # Checked once, by the run that plans the jobs. A cluster job re-reads the workflow while
        # other jobs may still be writing the files these checks look at (the demo's model folder),
        # and would fail on a half-written folder.
        problems = _semantic_problems(config)
    if problems:
        raise WorkflowError("invalid config, nothing was run:\n" + "\n".join(f"  - {p}" for p in problems))


def check_cluster_account():
    """With the SLURM executor, every job needs cluster.account (or --slurm-no-account, a cluster
    without accounts). Without one, snakemake-executor-plugin-slurm 2.8.0 guesses from the last line of
    a `sacct` query of your recent jobs (accounts.py), which may be an allocation without B200 access.
    Called when the run starts (the Snakefile's onstart): only then is the executor known."""
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm" or config["cluster"]["account"]:
        return
    if getattr(workflow.executor_settings, "no_account", False):
        return
    raise WorkflowError(
        "invalid config, nothing was run:\n  - cluster.account is not set: the SLURM executor would guess an "
        "account from your last sacct line, which may not reach the GPU partition; fix: set cluster.account "
        "(`sacctmgr -nP show assoc user=$USER format=account,partition` lists yours), or pass "
        "--slurm-no-account on a cluster without accounts"
    )


check_config(config)
