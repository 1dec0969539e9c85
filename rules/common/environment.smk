# How every job runs: its shell prefix (PYTHONPATH, caches under cache_dir, NLTK_DATA).
import os
import shlex

from workflow_scripts.lib import layout, runtime


def cache_dir():
    """Where jobs keep JIT and compile caches (config `cache_dir`, default results_dir/cache), absolute."""
    folder = os.path.expanduser(os.path.expandvars(config["cache_dir"] or os.path.join(RESULTS, "cache")))
    return os.path.abspath(folder)


def nltk_data_dir():
    """The NLTK data folder (config `nltk_data`), absolute: jobs run in other working directories."""
    return os.path.abspath(os.path.expanduser(os.path.expandvars(config["nltk_data"])))


def nltk_package(package):
    """Where an NLTK package lives in the nltk_data folder (fetch_nltk_data's output, a score job's input):
    every package the tasks declare is one of NLTK's tokenizers (the rule's output pattern)."""
    return layout.nltk_package_dir(config["nltk_data"], package)


def job_environment_exports():
    variables = runtime.job_environment(cache_dir(), nltk_data_dir())
    return "export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in variables.items()) + "; "


# Every step runs `python -m workflow_scripts.<step>` from the repository, wherever the job runs, with
# its caches under cache_dir(). In the prefix, not in params: moving the caches re-runs nothing.
# (The prefix is formatted like a shell command, hence the doubled braces.)
_exports = job_environment_exports().replace("{", "{{").replace("}", "}}")
shell.prefix(f"set -euo pipefail; export PYTHONPATH={shlex.quote(REPO)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; {_exports}")
# Only download and fetch_model (localrules, on the login node) reach the hub. train, convert,
# generate and score read local files and export HF_HUB_OFFLINE=1: on an offline compute node a stray hub lookup
# then fails at once instead of hanging on network timeouts.
