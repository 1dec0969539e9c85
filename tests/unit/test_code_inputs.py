"""Each job's code inputs are its step's first-party import closure, plus the task files it reads:
editing a module re-runs exactly the jobs that run it (README: what reruns when)."""

from __future__ import annotations

import re

import pytest

from tests.support import plan_golden
from workflow_scripts.lib import code_inputs

# convert: its code is recorded in the model's conversion.json instead (rules/train.smk explains why).
NO_CODE_INPUTS = {"convert", "all"}


def test_closure_follows_imports_anywhere_in_a_module():
    # seed_summary imports the cell table's library inside functions; cell_table imports io_utils.
    assert set(code_inputs.closure("workflow_scripts.steps.seed_summary")) == {
        f"workflow_scripts/{name}.py" for name in ("steps/seed_summary", "lib/cell_table", "lib/io_utils")
    }
    # evaluation imports in_context for in-context cells only: those cells list it, no other cell does.
    assert "workflow_scripts/lib/in_context.py" not in code_inputs.closure("workflow_scripts.lib.evaluation")


def test_a_group_task_lists_its_sub_tasks_and_templates():
    files = code_inputs.task_inputs("cross_difficulty_bbh")
    assert {
        "tasks/cross_difficulty_bbh_yesno.yaml",
        "tasks/_cross_difficulty_bbh_template_yaml",
        "tasks/_cross_difficulty_template_yaml",
        "tasks/utils.py",
        "workflow_scripts/lib/prompts.py",
    } <= set(files)


@pytest.mark.parametrize("case", ["demo-switches", "demo-irt", "demo-pilot"])
def test_every_jobs_code_inputs_are_its_import_closure(case):
    jobs = plan_golden.plan(case, repo_inputs=True)
    checked = set()
    for key, job in jobs.items():
        if job["rule"] in NO_CODE_INPUTS:
            continue
        step = re.search(r"python -m (workflow_scripts\.\w+\.\w+)", job["shell"])
        assert step, key
        expected = set(code_inputs.closure(step.group(1)))
        if job["rule"] == "score":  # generate reads no task file: what shapes its requests is an argument
            expected |= set(code_inputs.task_inputs(re.search(r"--task (\S+)", job["shell"]).group(1)))
        if job["rule"] in ("generate", "score") and "--in-context-k" in job["shell"]:
            expected |= set(code_inputs.closure("workflow_scripts.lib.in_context"))
        if job["rule"] in ("train", "resume_drill", "memory_probe"):
            expected.add(re.search(r"--accelerate-config <repo>/(\S+)", job["shell"]).group(1))
        assert set(job["code"]) == expected, key
        checked.add(job["rule"])
    assert len(checked) >= 5


def test_no_import_circle_among_our_modules():
    """No module imports one that imports it back (in_context used to reach into evaluation)."""
    from pathlib import Path

    modules = [f"workflow_scripts.{path.stem}" for path in Path(code_inputs.REPO, "workflow_scripts").glob("*.py")]
    circles = []
    for module in modules:
        own = f"workflow_scripts/{module.split('.')[1]}.py"
        for imported in code_inputs._imports(code_inputs._file(module)):
            if own in code_inputs.closure(imported):
                circles.append((module, imported))
    assert circles == []


def test_the_layout_keeps_its_kinds_apart():
    """Steps import the library and never another step; the library imports only itself; the rules
    import only the library (README: what lives where). Tools and the demo's builders may import steps."""
    package = code_inputs.REPO / "workflow_scripts"
    kinds = {path.stem: path.parent.name for path in package.glob("*/*.py") if path.stem != "__init__"}
    assert set(kinds.values()) == {"steps", "lib", "tools", "demo"}
    for path in package.glob("*/*.py"):
        kind = path.parent.name
        imported = {name.split(".")[1] for name in code_inputs._imports(path)}
        if kind == "steps":
            assert imported <= {"lib"}, path
        elif kind == "lib":
            assert imported <= {"lib"}, path
    rules = [code_inputs.REPO / "Snakefile", *(code_inputs.REPO / "rules").rglob("*.smk")]
    for path in rules:
        found = set(re.findall(r"^\s*(?:from|import) workflow_scripts\.(\w+)", path.read_text(), re.M))
        assert found <= {"lib"}, path
