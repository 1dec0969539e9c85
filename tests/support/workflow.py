"""Helpers of the tests: the repository, the demo config, running the real snakemake CLI, and reading
the jobs a dry-run plans."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

# Set for the whole demo run; test_workflow checks it appears in no file and no output.
SENTINEL_TOKEN = "hf_SENTINEL_do_not_leak_4242"


def demo_config(**changes) -> dict:
    """config/demo.yaml as a dict, with top-level keys changed."""
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config.update(changes)
    return config


def training_settings(**changes) -> dict:
    """A training job's settings as the workflow passes them: the schema's defaults (the study's) with
    the accumulation steps derived for the demo's 2 ranks (the effective batch 4 of config/demo.yaml),
    then the changes."""
    from snakemake.utils import validate

    from workflow_scripts.lib import batch

    config = demo_config(training={"effective_batch_size": 4})
    validate(config, str(REPO / "config/schema.yaml"))
    settings = batch.job_settings(config["training"], ranks=2)
    return {**settings, "system_prompt": None, "chat_template_date": None, **changes}


def write_config(folder: Path, config: dict, name: str = "case") -> str:
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


def snakemake(*args, workdir=None, repo=REPO, check=True, timeout=1800, env_extra=None) -> subprocess.CompletedProcess:
    """Run the real snakemake CLI of this environment on a checkout's Snakefile (this repository's)."""
    env = {**os.environ, **(env_extra or {})}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    command = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(Path(repo) / "Snakefile")]
    if workdir is not None:
        command += ["--directory", str(workdir)]
    result = subprocess.run(
        [*command, *args], cwd=workdir or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The dry-run's 'Job stats' table as {rule: count}."""
    lines = dry_run_output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("job ") and "count" in line)
    counts = {}
    for line in lines[start + 2 :]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def planned_jobs(dry_run_output: str, leave_out=("all",)) -> set[tuple[str, frozenset]]:
    """A dry-run's jobs as (rule, wildcards), without the rules named in leave_out."""
    jobs, rule, wildcards = set(), None, frozenset()
    for line in dry_run_output.splitlines() + ["rule end:"]:
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            if rule and rule not in leave_out:
                jobs.add((rule, wildcards))
            rule, wildcards = match.group(1), frozenset()
        elif rule and (match := re.match(r"^\s+wildcards: (.*)$", line)):
            wildcards = frozenset(tuple(part.split("=", 1)) for part in match.group(1).split(", "))
    return jobs


def job(rule: str, **wildcards) -> tuple[str, frozenset]:
    return rule, frozenset(wildcards.items())
