"""Which parts of an lm-eval task shape the requests the model is asked (generation), and which only
score its responses (scoring).

Generation and scoring are separate steps (generation.py, scoring.py): generation needs a GPU and
should re-run only when the requests could change. A task key belongs to generation when it can change
the requests lm-eval builds: which documents (dataset, splits, process_docs), the prompt (doc_to_text,
doc_to_choice, description, delimiters, few-shot settings), the output type and generation_kwargs
(stop sequences, lengths). Filters, metrics, process_results, a group's aggregate metrics and the
task's version belong to scoring. Two keys move to generation when they reach the prompt:
doc_to_target with few-shot examples (the examples' answers are in the prompt) and a metric_list with
acc_mutual_info (it adds unconditional log-likelihood requests).

`generation_fingerprint(task)` is what a generation job can depend on (a Snakemake param) instead of
the task files: the generation keys of the task (includes resolved, a group with its sub-tasks), each
`!function` hook replaced by the source of that hook and of everything it uses in its module (other
top-level functions, classes and constants, the import lines it relies on, and the whole file of a
first-party module it imports, e.g. workflow_scripts/lib/prompts.py). So an edit of a filter regex, a
metric or a scoring hook leaves it unchanged, an edit of a prompt or a stop sequence changes it.
The split is a judgement about lm-eval's keys; what makes it safe is the replay's check in scoring.py
(every request must equal the generated one), which stops a stale generation with one line.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import yaml

from workflow_scripts.lib import task_files

REPO = Path(__file__).resolve().parents[2]

DOCUMENT_KEYS = {
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "custom_dataset",
    "training_split",
    "validation_split",
    "test_split",
    "fewshot_split",
    "process_docs",
}
PROMPT_KEYS = {
    "doc_to_text",
    "doc_to_choice",
    "doc_to_image",
    "doc_to_audio",
    "use_prompt",
    "description",
    "target_delimiter",
    "fewshot_delimiter",
    "fewshot_config",
    "num_fewshot",
    "gen_prefix",
    "output_type",
    "generation_kwargs",
    "repeats",
}
GENERATION_KEYS = DOCUMENT_KEYS | PROMPT_KEYS
SCORING_KEYS = {
    "doc_to_target",
    "process_results",
    "metric_list",
    "filter_list",
    "should_decontaminate",
    "doc_to_decontamination_query",
    "metadata",
    "unsafe_code",
    "task_alias",
    "tag",
    # a group's own keys that score (its sub-tasks are split one by one)
    "group_alias",
    "aggregate_metric_list",
}
# Names, not contents: generation runs each task under a name of its own.
NAME_KEYS = {"task", "group"}


def lm_eval_task_keys() -> set[str]:
    """Every key lm-eval's task and group configs know (a test checks each one is classified)."""
    from lm_eval.config.group import GroupConfig
    from lm_eval.config.task import TaskConfig

    return {field.name for config in (TaskConfig, GroupConfig) for field in dataclasses.fields(config)}


def is_generation_key(key: str, definition: dict) -> bool:
    if key == "doc_to_target":  # the answers of few-shot examples are in the prompt
        return bool(definition.get("num_fewshot") or definition.get("fewshot_config"))
    if key == "metric_list":  # acc_mutual_info adds unconditional log-likelihood requests
        return any(entry.get("metric") == "acc_mutual_info" for entry in definition.get("metric_list") or [])
    # A key lm-eval may add later is counted as generation: a needless re-run beats a stale one.
    return key not in SCORING_KEYS | NAME_KEYS


class _FunctionRef(str):
    """A `!function module.name` value, kept apart from a plain string of the same text."""


class _HookKeepingLoader(yaml.SafeLoader):
    pass


_HookKeepingLoader.add_constructor("!function", lambda loader, node: _FunctionRef(loader.construct_scalar(node)))


def generation_part(task: str, tasks_dir: Path | None = None) -> dict:
    """The generation keys of a task (a group: of each sub-task), hooks replaced by their sources."""
    tasks_dir = Path(tasks_dir or task_files.TASKS_DIR)
    definition = task_files.read(task_files.task_file(task, tasks_dir), _HookKeepingLoader)
    if "group" in definition:
        return {"sub-tasks": {child: generation_part(child, tasks_dir) for child in definition["task"]}}
    part = {key: value for key, value in definition.items() if is_generation_key(key, definition)}
    hooks = {str(ref): _hook_source(tasks_dir, ref) for ref in _function_refs(part)}
    return {**json.loads(json.dumps(part, default=str)), "hooks": hooks}


def generation_fingerprint(task: str, tasks_dir: Path | None = None) -> str:
    """A short hash of generation_part: equal before and after an edit that cannot change requests."""
    text = json.dumps(generation_part(task, tasks_dir), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _function_refs(value) -> list[_FunctionRef]:
    if isinstance(value, _FunctionRef):
        return [value]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _function_refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _function_refs(item)]
    return []


def _hook_source(tasks_dir: Path, ref: str) -> str:
    """The source text a hook's behaviour depends on within our code (see the module docstring)."""
    module, name = ref.rsplit(".", 1)
    return _source_closure(str(tasks_dir / f"{module.replace('.', '/')}.py"), name)


@functools.cache
def _source_closure(module_file: str, name: str) -> str:
    text = Path(module_file).read_text()
    tree = ast.parse(text)
    definitions: dict[str, list[ast.stmt]] = {}
    imports: dict[str, ast.stmt] = {}
    for statement in tree.body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            definitions.setdefault(statement.name, []).append(statement)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                for node in ast.walk(target):
                    if isinstance(node, ast.Name):
                        definitions.setdefault(node.id, []).append(statement)
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                imports[(alias.asname or alias.name).split(".")[0]] = statement
    if name not in definitions:
        raise ValueError(f"{module_file} defines no {name!r}, which a task file names with !function")
    seen, pending, pieces = set(), [name], []
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        for statement in definitions.get(current, []):
            pieces.append(ast.get_source_segment(text, statement))
            pending += [node.id for node in ast.walk(statement) if isinstance(node, ast.Name)]
            pending += [
                node.value.id
                for node in ast.walk(statement)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            ]
        if current in imports:
            pieces.append(ast.unparse(imports[current]) + _first_party_source(imports[current], current))
    return "\n".join(dict.fromkeys(pieces))


def _first_party_source(statement: ast.stmt, name: str) -> str:
    """The hash of a first-party module an import line binds (its whole file: a prompt helper's edit
    is a prompt edit)."""
    if isinstance(statement, ast.ImportFrom) and statement.module:
        candidates = [f"{statement.module}.{name}", statement.module]
    else:
        candidates = [alias.name for alias in statement.names]
    for module in candidates:
        path = REPO / f"{module.replace('.', '/')}.py"
        if path.is_file():
            return f"  # {module} {hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
    return ""
