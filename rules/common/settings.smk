# A job's settings, resolved from the config (schema defaults filled in by rules/common/checks.smk):
# per dataset, per model, the switches beyond the study, and the code a job runs.
import functools
import os

from workflow_scripts.lib import batch, code_inputs, layout, sizing
from workflow_scripts.lib import task_files as task_files_module

RESULTS = config["results_dir"]
MODELS = list(config["models"])
DATASETS = list(config["datasets"])
REPO = workflow.basedir


def code(*files):
    """Source files a job runs, listed as inputs so that editing one re-runs its jobs.

    Relative to the working directory, so that moving a checkout (with its results) is not a change.
    Snakemake records small inputs' checksums: touching a file without changing it re-runs nothing.
    """
    return [os.path.relpath(os.path.join(REPO, f)) for f in files]


def step_code(module):
    """The files a step runs: its module and every first-party module it imports (code_inputs.py)."""
    return code(*code_inputs.closure(module))


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


def binning_quantile_key(dataset):
    """The dataset's own quantile_key; else `irt_quantile` when it fits IRT; else the global one."""
    own = config["datasets"][dataset].get("quantile_key")
    return own or ("irt_quantile" if irt_settings(dataset) else config["quantile_key"])


def bin_ids(dataset):
    return layout.bins_of(config, dataset)


def evaluation_settings(dataset):
    """Evaluation settings of one dataset: the global ones < the dataset's `evaluation` overrides."""
    return {**config["evaluation"], **config["datasets"][dataset].get("evaluation", {})}


def base_model(model):
    """The folder from_pretrained gets: a local `path`, or the model cache that fetch_model fills."""
    entry = config["models"][model]
    return entry.get("path") or model_cache_dir(model)


def model_cache_dir(model):
    return os.path.join(config["model_cache"], model)


def merged_training(model, dataset):
    """The training config of one (model, dataset): defaults < dataset overrides < model overrides."""
    settings = dict(config["training"])
    settings.update(config["datasets"][dataset].get("training", {}))
    settings.update(config["models"][model].get("training", {}))
    return settings


def train_settings(model, dataset, seed=None):
    """The hyper-parameters one training job gets: merged_training with the accumulation steps derived
    from the effective batch and the job's ranks (workflow_scripts/lib/batch.py); `seed` (one of `seeds`)
    is the run's own."""
    settings = batch.job_settings(merged_training(model, dataset), train_processes(model))
    settings["system_prompt"] = config["models"][model]["system_prompt"]
    settings["chat_template_date"] = config["chat_template_date"]
    if seed is not None:
        settings["seed"] = seed
    return settings


def train_processes(model):
    """One rank per GPU of the model's train job (resources.train, by the model's size); on a CPU-only
    run, launch.cpu_processes ranks."""
    return rule_gpus("train", model) or config["launch"]["cpu_processes"]


def model_parameters(model):
    """The model's parameter count: its config.json once on disk, else the model entry's `parameters`."""
    return sizing.model_parameters(base_model(model), config["models"][model].get("parameters"), model)


def task_files(wildcards):
    """The task's yaml and the shared files it builds on (tracked like code)."""
    return dataset_task_files(wildcards.dataset)


@functools.cache  # once per dataset and run: 616 score jobs ask
def dataset_task_files(dataset):
    # A task not written yet (no files) must not stop a dry-run of the grid; evaluation.py names it when run.
    return code(*code_inputs.task_inputs(config["datasets"][dataset]["task"]))


@functools.cache  # once per dataset and run, like the task files
def dataset_nltk_packages(dataset):
    """The NLTK data a dataset's score jobs load (its task's metadata.nltk_data): IFEval's Punkt model.
    An input, so no score job of the task starts before fetch_nltk_data has run."""
    task = config["datasets"][dataset]["task"]
    if not os.path.isfile(os.path.join(REPO, "tasks", f"{task}.yaml")):
        return []  # a task not written yet: the config check names it
    return [nltk_package(package) for package in task_files_module.nltk_packages(task)]


def eval_split():
    return config["eval_split"]


def seeds():
    return layout.seeds_of(config)


def in_context_k():
    return config["in_context"]["k"]


def row_names(dataset, every_seed=True):
    """The rows of a (model, dataset) table in this config (workflow_scripts/lib/layout.py)."""
    return layout.rows_of(config, dataset, every_seed)


# The rule files read the config through these (not config[...]), so where a setting comes from is
# found here.
def setting(key):
    """A top-level setting (model_cache, heldout_fraction, heldout_seed, ...)."""
    return config[key]


def section(name):
    """A block of settings: launch, conversion, statistics, report."""
    return config[name]


def dataset_entry(dataset):
    return config["datasets"][dataset]


def model_entry(model):
    return config["models"][model]
