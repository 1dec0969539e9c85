"""Reading our lm-eval task files (tasks/*.yaml): their keys with includes resolved, the hooks in
tasks/utils.py, and the scores a task declares. Read by evaluation, in_context, task_parts, sizing and
the config checks (rules/common/checks.smk); lm-eval itself reads the same files when a cell runs.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

TASKS_DIR = Path(__file__).resolve().parents[2] / "tasks"


class HookNameLoader(yaml.SafeLoader):
    """Reads a task file's keys; `!function utils.x` becomes the name 'x' (resolved in tasks/utils.py)."""


HookNameLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node).split(".", 1)[1])


def read(path: Path, loader: type[yaml.SafeLoader] = HookNameLoader) -> dict:
    """One task file's keys, the files it includes merged under it (its own keys win). `loader` says
    how `!function` values are read: as hook names (the default) or kept apart (task_parts)."""
    path = Path(path)
    status = path.stat()
    # A copy: callers may change what they get, the parsed file stays as read.
    definition = copy.deepcopy(_parsed(path, loader, status.st_mtime_ns, status.st_size))
    if "include" in definition:
        included = read(path.parent / definition.pop("include"), loader)
        definition = {**included, **definition}
    return definition


# Each file parsed once per process while it stays as it is: a dry-run of the grid asks for every task
# four times (sizing, NLTK data, generation part, config checks): 105 parses of 15 files before, 30 now.
@functools.cache
def _parsed(path: Path, loader: type[yaml.SafeLoader], mtime_ns: int, size: int) -> dict:
    return yaml.load(path.read_text(), Loader=loader) or {}


def task_file(task: str, tasks_dir: Path | None = None) -> Path:
    return Path(tasks_dir or TASKS_DIR) / f"{task}.yaml"


@functools.cache
def hooks():
    """tasks/utils.py, loaded once (it is not a package, so by file location)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cross_difficulty_task_utils", TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def declared_scores(task: str, tasks_dir: Path | None = None) -> set[str]:
    """The `metric,filter` names a task's results carry, as lm-eval names them: each metric of
    metric_list under each filter of filter_list (`none` without one); for a group, its aggregate
    metrics under their filters."""
    definition = read(task_file(task, tasks_dir))
    if "group" in definition:
        return {
            f"{entry['metric']},{name}"
            for entry in definition.get("aggregate_metric_list") or []
            for name in entry.get("filter_list") or ["none"]
        }
    filters = [entry["name"] for entry in definition.get("filter_list") or []] or ["none"]
    return {f"{entry['metric']},{name}" for entry in definition.get("metric_list") or [] for name in filters}


def nltk_packages(task: str, tasks_dir: Path | None = None) -> list[str]:
    """The NLTK data packages a task's scoring loads, as its file declares them (metadata.nltk_data); for
    a group, those of its tasks. A score job of the task waits for them (rules/score.smk)."""
    definition = read(task_file(task, tasks_dir))
    if "group" in definition:
        return sorted({package for name in definition["task"] for package in nltk_packages(name, tasks_dir)})
    return sorted((definition.get("metadata") or {}).get("nltk_data") or [])
