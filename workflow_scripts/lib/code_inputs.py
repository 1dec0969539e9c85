"""Which of our files a step runs: its module's first-party import closure, and the task files it reads.

The rules list these as inputs (rules/common/settings.smk `step_code`), so editing a step's module, or any
module it imports, re-runs that step's jobs; nothing is kept by hand. Imports inside functions count
too (our steps import lazily to start fast), except the ones in CONDITIONAL: imports only some jobs of
a step make, which the rule adds to those jobs alone.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import yaml

from workflow_scripts.lib import task_files

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "workflow_scripts"
# evaluation imports in_context for in-context cells only: editing in_context.py re-runs those cells,
# not every cell of the grid (rules/common/arguments.smk row_extra_inputs).
CONDITIONAL = {"workflow_scripts.lib.evaluation": {"workflow_scripts.lib.in_context"}}


def _file(module: str) -> Path:
    return REPO / (module.replace(".", "/") + ".py")


# Each file parsed once per process: the rules ask for the closures of 19 steps, which share most of
# their modules (100 parses of 28 files before: 0.22 s of every dry-run, 0.08 s now).
@functools.cache
def _imports(path: Path) -> frozenset[str]:
    """First-party modules one file imports, anywhere in it (`from workflow_scripts.lib import a, b`
    names the modules a and b; the packages' own files hold only docstrings and are not counted)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(PACKAGE + ".")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module != PACKAGE and not node.module.startswith(PACKAGE + "."):
                continue
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            modules = {name for name in names if _file(name).is_file()}
            found |= modules or ({node.module} if _file(node.module).is_file() else set())
    return frozenset(found)


@functools.cache
def closure(module: str) -> tuple[str, ...]:
    """The module's file and every first-party file it imports, directly or not, relative to the repository."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += sorted(_imports(_file(current)) - CONDITIONAL.get(current, set()))
    return tuple(str(_file(name).relative_to(REPO)) for name in [module, *sorted(seen - {module})])


def task_inputs(task: str) -> list[str]:
    """The files of a task as lm-eval reads them: its yaml, what it includes, a group's sub-tasks, and
    tasks/utils.py (the hooks) with the modules that imports. A task not written yet: none."""
    files, todo = [], [task_files.task_file(task)]
    while todo:
        path = todo.pop(0)
        if not path.is_file() or path in files:
            continue
        files.append(path)
        definition = yaml.load(path.read_text(), Loader=task_files.HookNameLoader) or {}
        if "include" in definition:
            todo.append(path.parent / definition["include"])
        if "group" in definition:
            todo += [task_files.task_file(child, path.parent) for child in definition["task"]]
    if not files:
        return []
    relative = [str(path.relative_to(REPO)) for path in files]
    return [*relative, "tasks/utils.py", *_hook_modules()]


@functools.cache
def _hook_modules() -> tuple[str, ...]:
    """Our modules that tasks/utils.py imports (its prompts)."""
    modules = sorted(_imports(task_files.TASKS_DIR / "utils.py"))
    return tuple(path for module in modules for path in closure(module))
