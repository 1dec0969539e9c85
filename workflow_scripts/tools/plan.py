"""What a grid will ask for and use, before it is submitted: `make plan` (CONFIG=..., DIR=...).

    python -m workflow_scripts.tools.plan [--configfile F ...] [--directory DIR] [--json OUT] [TARGET ...] [SNAKEMAKE FLAGS]

Runs the workflow's own dry-run (so the jobs are exactly those a run would start: what is done already
is left out) and reads every job's request from it: GPUs, time (minutes) and memory, as the rules
compute them (rules/common/resources.smk, workflow_scripts/lib/sizing.py), and for the sized rules the estimate
(`expected_s`) and the size of the outputs (`output_mb`). Prints, per rule, jobs x GPUs x requested
time, the GPU-hours requested and expected, the largest request of any retry against the partition
limit, and the disk the results will take. Estimates use this results folder's measured rates where its
finished jobs have them (after `snakemake pilot`, say), the assumptions of sizing.py elsewhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from workflow_scripts.lib import config_files
from workflow_scripts.lib.sizing import PLAN_VARIABLE

REPO = Path(__file__).resolve().parents[2]
# Rules whose outputs are deleted once their consumer has run (temp() in rules/train.smk, pilot.smk).
TEMPORARY_OUTPUTS = {"train", "resume_drill"}
# Rules with a `retries:` of their own (train's from config resources.train.retries); every other rule
# retries as often as the profile says.
OWN_RETRIES = {
    "train": lambda retries: retries,
    "resume_drill": lambda retries: max(1, retries),
    "memory_probe": lambda retries: 0,
}


def dry_run(configfiles: list[str], directory: str, targets: list[str]) -> str:
    # Targets first: --configfile takes every word after it.
    command = [
        str(Path(sys.executable).parent / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "-n",
        "--directory",
        directory,
        *targets,
        *(["--configfile", *configfiles] if configfiles else []),
    ]
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        PLAN_VARIABLE: "1",
    }  # sized jobs then carry expected_s and output_mb (rules/common/resources.smk)
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=directory)
    if result.returncode != 0:
        raise SystemExit(f"error: the dry-run failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


def planned_jobs(output: str) -> list[dict]:
    """Every job block of a dry-run: rule, wildcards, threads and resources (numbers where they are)."""
    jobs = []
    for line in output.splitlines():
        if match := re.match(r"^(local)?rule (\w+):$", line):
            jobs.append(
                {"rule": match.group(2), "local": bool(match.group(1)), "wildcards": {}, "threads": 1, "resources": {}}
            )
        elif jobs and (match := re.match(r"^\s+(wildcards|threads|resources): (.*)$", line)):
            key, value = match.groups()
            if key == "threads":
                jobs[-1]["threads"] = int(value)
                continue
            pairs = dict(pair.split("=", 1) for pair in value.split(", ") if "=" in pair)
            if key == "resources":
                pairs = {k: int(v) if v.isdigit() else v for k, v in pairs.items()}
            jobs[-1][key] = pairs
    return jobs


def profile_retries(profile: Path) -> int:
    return int((yaml.safe_load(profile.read_text()) or {}).get("retries", 0)) if profile.is_file() else 0


def job_gpus(resources: dict) -> int:
    """A job's GPUs in all: `gpu` on one node; `gres` (per node) times `nodes` for a job across nodes."""
    if resources.get("gpu"):
        return resources["gpu"]
    gres = str(resources.get("gres", ""))
    if gres.startswith("gpu:"):
        return int(gres.rsplit(":", 1)[1]) * int(resources.get("nodes", 1))
    return 0


def per_model(jobs: list[dict]) -> dict:
    """Each model's GPU jobs: its train and generate jobs' shapes, GPU-hours, its largest job; and its
    convert jobs' largest memory and time (a CPU node holds the ZeRO state's fp32 weights) and the ZeRO
    state one of its train jobs leaves until then."""
    models: dict[str, dict] = {}
    for job in jobs:
        model, res = job["wildcards"].get("model"), job["resources"]
        if not model or job["local"] or "runtime" not in res:
            continue
        row = models.setdefault(
            model,
            {
                "train": set(),
                "generate": set(),
                "requested_gpu_h": 0.0,
                "expected_gpu_h": 0.0,
                "largest": None,
                "convert_mem_gb": 0.0,
                "convert_min": 0,
                "zero_state_gb": 0.0,
            },
        )
        gpus, nodes = job_gpus(res), int(res.get("nodes", 1))
        if job["rule"] in ("train", "generate") and gpus:
            row[job["rule"]].add((nodes, gpus // nodes))
        if job["rule"] == "train":
            row["zero_state_gb"] = max(row["zero_state_gb"], res.get("output_mb", 0) / 1000)
        if job["rule"] == "convert":
            row["convert_mem_gb"] = max(row["convert_mem_gb"], res.get("mem_mb", 0) / 1000)
            row["convert_min"] = max(row["convert_min"], res["runtime"])
        if not gpus:
            continue
        requested = gpus * res["runtime"] / 60
        row["requested_gpu_h"] += requested
        row["expected_gpu_h"] += gpus * res.get("expected_s", 0) / 3600
        if row["largest"] is None or requested > row["largest"]["gpu_h"]:
            row["largest"] = {
                "rule": job["rule"],
                "nodes": nodes,
                "gpus_per_node": gpus // nodes,
                "minutes": res["runtime"],
                "mem_gb_per_node": res.get("mem_mb", 0) / 1000,
                "gpu_h": requested,
            }
    return models


def render_models(models: dict) -> str:
    def shapes(found: set) -> str:
        return ", ".join(f"{n} x {g}" if n > 1 else str(g) for n, g in sorted(found)) or "-"

    lines = [
        "| model | train GPUs (nodes x per node) | generate GPUs | requested GPU-h | expected GPU-h | largest job"
        " | convert job (memory, time) | ZeRO state of a train job |",
        "|---|---:|---:|---:|---:|---|---|---:|",
    ]
    for model, row in sorted(models.items(), key=lambda item: -item[1]["requested_gpu_h"]):
        big = row["largest"]
        largest = (
            f"{big['rule']}: {big['nodes']} x {big['gpus_per_node']} GPUs, {big['minutes']} min, "
            f"{big['mem_gb_per_node']:,.0f} GB/node"
            if big
            else "-"
        )
        lines.append(
            f"| {model} | {shapes(row['train'])} | {shapes(row['generate'])} | {row['requested_gpu_h']:,.1f} | "
            f"{row['expected_gpu_h']:,.1f} | {largest} | {row['convert_mem_gb']:,.0f} GB, {row['convert_min']} min | "
            f"{size(row['zero_state_gb'])} |"
        )
    return "\n".join(lines)


def summarise(jobs: list[dict], config: dict, default_retries: int) -> dict:
    from workflow_scripts.lib.sizing import attempt_runtime

    cap = config["cluster"]["max_runtime"]
    rules: dict[str, dict] = {}
    for job in jobs:
        if job["rule"] == "all":
            continue
        res = job["resources"]
        row = rules.setdefault(
            job["rule"],
            {
                "jobs": 0,
                "local": job["local"],
                "gpu": 0,  # the most a job of the rule asks for
                "gpu_counts": set(),  # each job's, by its model's size where the rule sizes them so
                "threads": job["threads"],
                "minutes": [],
                "requested_gpu_h": 0.0,
                "expected_gpu_h": None,
                "requested_core_h": 0.0,
                "expected_h": None,
                "output_gb": 0.0,
                "largest_output_gb": 0.0,
                "startup_gpu_h": None,  # generate: the engine starts within expected_gpu_h
            },
        )
        row["jobs"] += 1
        if job["local"] or "runtime" not in res:  # a local rule: runs where Snakemake runs, asks for nothing
            row["local"] = True
            continue
        minutes, gpus = res["runtime"], job_gpus(res)
        row["gpu"] = max(row["gpu"], gpus)
        row["gpu_counts"].add(gpus)
        row["minutes"].append(minutes)
        row["requested_gpu_h"] += gpus * minutes / 60
        row["requested_core_h"] += job["threads"] * minutes / 60
        if "expected_s" in res:
            row["expected_h"] = (row["expected_h"] or 0) + res["expected_s"] / 3600
            row["expected_gpu_h"] = (row["expected_gpu_h"] or 0) + gpus * res["expected_s"] / 3600
            row["output_gb"] += res.get("output_mb", 0) / 1000
            row["largest_output_gb"] = max(row["largest_output_gb"], res.get("output_mb", 0) / 1000)
        if "expected_startup_s" in res:
            row["startup_gpu_h"] = (row["startup_gpu_h"] or 0) + gpus * res["expected_startup_s"] / 3600
    for name, row in rules.items():
        row["gpu_counts"] = sorted(row["gpu_counts"])
        retries = OWN_RETRIES[name](config["resources"]["train"]["retries"]) if name in OWN_RETRIES else default_retries
        row["attempts"] = retries + 1
        row["largest_request_min"] = max(
            (attempt_runtime(m, row["attempts"], cap) for m in row["minutes"]), default=None
        )
    gpu_rules = [row for row in rules.values() if row["gpu"] and row["minutes"]]
    requested = sum(row["requested_gpu_h"] for row in gpu_rules)
    expected = sum(row["expected_gpu_h"] or 0 for row in gpu_rules)
    return {
        "rules": rules,
        "default_attempts": default_retries + 1,
        "requested_gpu_h": requested,
        "expected_gpu_h": expected,
        "max_runtime": cap,
        "largest_request_min": max((row["largest_request_min"] or 0 for row in rules.values()), default=0),
        "kept_output_gb": sum(row["output_gb"] for name, row in rules.items() if name not in TEMPORARY_OUTPUTS),
        "temporary_output_gb_per_job": max(
            (row["largest_output_gb"] for name, row in rules.items() if name in TEMPORARY_OUTPUTS), default=0.0
        ),
    }


def stale_conversions(results_dir: Path, config: dict) -> list[str]:
    """Converted models made by other conversion code or settings than the current ones (conversion.json)."""
    from workflow_scripts.steps.conversion import PROVENANCE, code_checksum

    current = {
        "code_sha256": code_checksum(),
        "dtype": config["conversion"]["dtype"],
        "max_shard_size": config["conversion"]["max_shard_size"],
    }
    stale = []
    for path in sorted(results_dir.glob(f"models/*/*/train-*/hf/{PROVENANCE}")):
        made = json.loads(path.read_text())
        if any(made.get(key) != value for key, value in current.items()):
            stale.append(str(path.parent))
    return stale


def measured_summary(results_dir: str, config: dict, workdir: str) -> str:
    from workflow_scripts.lib.sizing import Calibration

    formats = {name: entry["prompt_format"] for name, entry in config["datasets"].items()}
    measured = Calibration.measure(results_dir, formats, str(REPO / "tasks"), workdir).measured_jobs
    if not measured:
        return "none in this results folder yet: every rate is an assumption of workflow_scripts/lib/sizing.py"
    return ", ".join(f"{part} from {count} job(s)" for part, count in sorted(measured.items()))


def folder_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e9 if folder.is_dir() else 0.0


def size(gb: float) -> str:
    return f"{gb / 1000:,.2f} TB" if gb >= 1000 else f"{gb:,.1f} GB"


def render(summary: dict, header: list[str]) -> str:
    lines = [
        *header,
        "",
        "| rule | jobs | GPUs/job | requested min/job | requested GPU-h | expected GPU-h | expected min/job |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    order = sorted(summary["rules"].items(), key=lambda item: (-item[1]["requested_gpu_h"], item[0]))
    for name, row in order:
        if row["local"]:
            lines.append(f"| {name} | {row['jobs']:,} | local | - | - | - | - |")
            continue
        span = f"{min(row['minutes'])}-{max(row['minutes'])}" if row["minutes"] else "-"
        counts = row["gpu_counts"]
        gpu = (f"{counts[0]}-{counts[-1]}" if len(counts) > 1 else row["gpu"]) if row["gpu"] else "CPU"
        expected = f"{row['expected_gpu_h']:,.1f}" if row["expected_gpu_h"] is not None and row["gpu"] else "-"
        per_job = f"{60 * row['expected_h'] / row['jobs']:.1f}" if row["expected_h"] is not None else "-"
        requested = f"{row['requested_gpu_h']:,.1f}" if row["gpu"] else f"({row['requested_core_h']:,.1f} core-h)"
        lines.append(f"| {name} | {row['jobs']:,} | {gpu} | {span} | {requested} | {expected} | {per_job} |")
    ratio = summary["requested_gpu_h"] / summary["expected_gpu_h"] if summary["expected_gpu_h"] else math.nan
    lines += [
        f"| **GPU total** | | | | **{summary['requested_gpu_h']:,.1f}** | **{summary['expected_gpu_h']:,.1f}** | |",
        "",
        f"Requested / expected GPU-hours: {ratio:.2f}." if summary["expected_gpu_h"] else "No sized GPU jobs.",
        "Retries: "
        + "; ".join(
            f"{name} up to attempt {row['attempts']}, at most {row['largest_request_min']} min"
            for name, row in order
            if row["expected_h"] is not None and row["attempts"] > 1
        )
        + f"; every other rule up to attempt {summary['default_attempts']} of its fixed minutes (partition limit cluster.max_runtime = {summary['max_runtime']} min).",
        f"Disk: the planned jobs leave {size(summary['kept_output_gb'])} of results (converted models, cells);"
        f" a train job's ZeRO state, up to {size(summary['temporary_output_gb_per_job'])}, lives until its convert"
        " job has run, beside at most one checkpoint of the same size (kept until then, for a retry to resume).",
    ]
    return "\n".join(lines)


def engine_starts(generate: dict) -> str:
    """What starting an engine costs the generate jobs: each loads its model and compiles afresh."""
    share = generate["startup_gpu_h"] / generate["expected_gpu_h"]
    per_job = 3600 * generate["startup_gpu_h"] / generate["jobs"] / max(generate["gpu"], 1)
    return (
        f"Engine starts: each generate job starts one engine (~{per_job:.0f} s: imports, weights, torch.compile, "
        f"CUDA graphs), {generate['startup_gpu_h']:,.1f} of its {generate['expected_gpu_h']:,.1f} expected GPU-h "
        f"({share:.0%}). vLLM keys its torch.compile cache by the model's path, so no row reuses another row's "
        "compile; only Triton's kernels are shared (TRITON_CACHE_DIR under cache_dir)."
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--configfile", nargs="+", default=[], help="as given to snakemake (default: config/config.yaml)"
    )
    parser.add_argument("--directory", default=".", help="Snakemake's working directory (default: here)")
    parser.add_argument(
        "--profile", default=str(REPO / "slurm-b200/profile.yaml"), help="for the retries of rules without their own"
    )
    parser.add_argument("--json", help="also write the summary here")
    parser.add_argument("targets", nargs="*", help="targets as for snakemake (default: the whole grid)")
    args, snakemake_flags = parser.parse_known_args(argv)  # e.g. --forceall: what a full rerun would cost
    configfiles = [str(Path(f).resolve()) for f in args.configfile]
    config = config_files.resolved(configfiles or [str(REPO / "config/config.yaml")])
    jobs = planned_jobs(dry_run(configfiles, args.directory, [*args.targets, *snakemake_flags]))
    summary = summarise(jobs, config, profile_retries(Path(args.profile)))
    results_dir = Path(args.directory) / config["results_dir"]
    stale = stale_conversions(results_dir, config)
    header = [
        f"Plan for {config['results_dir']}: {sum(r['jobs'] for r in summary['rules'].values()):,} jobs to run"
        f" ({', '.join(args.targets) or 'the whole grid'}); the results folder holds {size(folder_gb(results_dir))} now.",
        f"Measured rates: {measured_summary(str(results_dir), config, args.directory)}.",
    ]
    if stale:
        header.append(
            f"{len(stale)} converted model(s) were made by other conversion code or settings than the current"
            " ones; they are kept (re-making one needs its ZeRO state: re-train it with --forcerun train), e.g."
            f" {stale[0]}"
        )
    summary["models"] = per_model(jobs)
    lines = [render(summary, header), "", render_models(summary["models"]), ""]
    generate = summary["rules"].get("generate")
    if generate and generate["startup_gpu_h"] is not None and generate["expected_gpu_h"]:
        lines.append(engine_starts(generate))
    if not args.targets:  # the whole grid: what its pilot, run first, costs on its own
        pilot = summarise(
            planned_jobs(dry_run(configfiles, args.directory, ["pilot"])), config, profile_retries(Path(args.profile))
        )
        summary["pilot"] = {key: pilot[key] for key in ("requested_gpu_h", "expected_gpu_h")}
        jobs = sum(row["jobs"] for name, row in pilot["rules"].items() if row["gpu"])
        lines.append(
            f"The pilot (`snakemake --profile slurm-b200 pilot`, config `pilot`: {len(config['pilot'])} entries): {jobs} GPU "
            f"job(s), {pilot['requested_gpu_h']:,.1f} GPU-h requested, {pilot['expected_gpu_h']:,.1f} expected; the grid "
            "reuses its rows' train, convert, generate and score jobs."
        )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "stale_conversions": stale}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
