"""The jobs the paper grid and the demo plan, recorded once and compared since (tests/unit/test_plan_golden.py).

    python tests/support/plan_golden.py            # compare with tests/golden/plans.json.gz, print what differs
    python tests/support/plan_golden.py --write    # record the current plans (only where a change is meant)

A plan is every job of a fresh folder's dry-run (`snakemake -n -p`): rule, wildcards, outputs, log,
benchmark, threads, resources and the shell command, plus its inputs other than repository files.
Repository files (the steps' code, tasks/, the accelerate configs) are left out: which code a job
depends on is checked against the import closure instead (tests/unit/test_code_inputs.py). Paths are
written relative to the repository and the working folder, so the record holds on any machine.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests/golden/plans.json.gz"
# What varies by machine or by run, not by plan.
DROPPED_FIELDS = {"jobid", "reason"}
DROPPED_RESOURCES = {"tmpdir"}


def switches_config(folder: Path) -> list[str]:
    """The demo with all three switches beyond the study on."""
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config.update(eval_split="heldout", seeds=[42, 43], in_context={"k": 2})
    path = folder / "switches.yaml"
    path.write_text(yaml.safe_dump(config))
    return [str(path)]


# name: (config files, or a function of a scratch folder returning them; targets)
CASES = {
    "paper": ([], []),
    "paper-pilot": ([], ["pilot"]),
    "demo": (["config/demo.yaml"], []),
    "demo-pilot": (["config/demo.yaml"], ["pilot"]),
    "demo-irt": (["config/demo.yaml", "config/demo_irt.yaml"], []),
    "demo-switches": (switches_config, []),
}


def parse(output: str, workdir: Path, repo_inputs: bool = False) -> dict[str, dict]:
    """A dry-run's job blocks as {key: record}; the key names the rule and its outputs. With
    repo_inputs, a record's `code` lists its inputs from the repository (`<repo>/...`)."""
    repo_prefix = os.path.relpath(REPO, workdir) + os.sep

    def normal(text: str) -> str:
        # The relative form first: it ends in the absolute one's tail.
        return text.replace(repo_prefix, "<repo>/").replace(str(REPO), "<repo>").replace(str(workdir), "<workdir>")

    jobs, record, shell, shell_open = {}, None, [], False

    def close():
        if record is not None:
            record["shell"] = normal("\n".join(shell))
            key = " ".join([record["rule"], *record.get("output", []), record.get("wildcards", "")])
            jobs[key.strip()] = record

    for line in output.splitlines():
        if match := re.match(r"^(local)?rule (\w+):$", line):
            close()
            record, shell, shell_open = {"rule": match.group(2), "local": bool(match.group(1))}, [], False
        elif record is None:
            continue
        elif shell_open:
            # Snakemake's own notes may follow a command without a blank line between.
            if not line.strip() or line.startswith(("[", "Job stats", "Would remove temporary output")):
                shell_open = False
            else:
                shell.append(line)
        elif line.startswith("Shell command: "):
            shell, shell_open = [line.removeprefix("Shell command: ")], True
        elif match := re.match(r"^    (\w+): (.*)$", line):
            field, value = match.groups()
            if field in DROPPED_FIELDS:
                continue
            if field in ("input", "output", "log"):
                paths = [normal(p) for p in value.split(", ")]
                if field == "input":
                    if repo_inputs:
                        record["code"] = sorted(p.removeprefix("<repo>/") for p in paths if p.startswith("<repo>"))
                    paths = sorted(p for p in paths if not p.startswith("<repo>"))
                record[field] = paths
            elif field == "resources":
                record[field] = ", ".join(p for p in value.split(", ") if p.split("=", 1)[0] not in DROPPED_RESOURCES)
            else:
                record[field] = normal(value)
    close()
    return jobs


def plan(case: str, repo_inputs: bool = False) -> dict[str, dict]:
    """One case's jobs, from a dry-run in a fresh folder."""
    configfiles, targets = CASES[case]
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch) / "work"
        workdir.mkdir()
        if callable(configfiles):
            configfiles = configfiles(Path(scratch))
        configfiles = [str(REPO / path) for path in configfiles]
        command = [
            str(Path(sys.executable).parent / "snakemake"),
            "--snakefile",
            str(REPO / "Snakefile"),
            "-n",
            "-p",
            "--directory",
            str(workdir),
            *targets,
            *(["--configfile", *configfiles] if configfiles else []),
        ]
        env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
        if result.returncode != 0:
            raise AssertionError(f"dry-run of {case} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
        return parse(result.stdout + result.stderr, workdir, repo_inputs)


def recorded() -> dict[str, dict[str, dict]]:
    return json.loads(gzip.decompress(GOLDEN.read_bytes()))


def differences(case: str, now: dict[str, dict], then: dict[str, dict], limit: int = 5) -> list[str]:
    """Readable lines: jobs added, removed, or changed (field by field), at most `limit` of each."""
    lines = []
    added, removed = sorted(now.keys() - then.keys()), sorted(then.keys() - now.keys())
    lines += [f"{case}: new job {key}" for key in added[:limit]]
    lines += [f"{case}: job gone {key}" for key in removed[:limit]]
    changed = [key for key in sorted(now.keys() & then.keys()) if now[key] != then[key]]
    for key in changed[:limit]:
        for field in sorted(now[key].keys() | then[key].keys()):
            if now[key].get(field) != then[key].get(field):
                lines.append(f"{case}: {key}: {field}\n    was {then[key].get(field)}\n    now {now[key].get(field)}")
    counts = (len(added), len(removed), len(changed))
    if any(counts):
        lines.append(f"{case}: {counts[0]} jobs new, {counts[1]} gone, {counts[2]} changed")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the current plans")
    parser.add_argument("cases", nargs="*", default=list(CASES))
    args = parser.parse_args(argv)
    plans = {case: plan(case) for case in args.cases}
    if args.write:
        old = recorded() if GOLDEN.exists() else {}
        GOLDEN.parent.mkdir(exist_ok=True)
        text = json.dumps({**old, **plans}, sort_keys=True, separators=(",", ":"))
        GOLDEN.write_bytes(gzip.compress(text.encode(), mtime=0))
        print(f"recorded {', '.join(f'{c}: {len(p)} jobs' for c, p in plans.items())} in {GOLDEN}")
        return 0
    golden = recorded()
    lines = [line for case, now in plans.items() for line in differences(case, now, golden[case])]
    print("\n".join(lines) or "every plan as recorded")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
