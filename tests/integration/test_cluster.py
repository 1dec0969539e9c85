"""The cluster profile: `snakemake --profile slurm-b200` as typed in the repository root.

The dry-run and lint tests run everywhere. The SLURM tests start a real two-node SLURM on this host (Debian's
slurm-wlm + munge, tests/slurm/start_cluster.sh) and run the demo through the profile; they need root
and those packages (.ci/run installs them in CI) and are skipped with the reason otherwise.

What the SLURM run changes against the profile, on the command line where a reader sees it:
  - resources: tests/slurm/demo_resources.yaml (test sizes; GPU rules still ask for GPUs);
  - no conda (`--sdm env-modules`: none of our rules names a module, so jobs run in this venv):
    conda cannot be installed here, and the env files are checked by tests/integration/test_envs.py instead;
  - job states from squeue and no account: the test cluster has no accounting database (sacct);
  - status checks every second instead of every 30 s;
  - CROSS_DIFFICULTY_DUMMY_GPUS=1: the test cluster's GPUs are dummy GRES devices, so GPU jobs run on
    the CPU instead of stopping (a real GPU job that sees no CUDA device stops at once).
The profile's conda prefix names $SCRATCH; the tests that read the profile with conda on set it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.workflow import REPO, snakemake
from workflow_scripts.lib import runtime

GPU_RULES = {"train", "generate"}
CPU_RULES = {
    "bin",
    "convert",
    "score",
    "aggregate",
    "cell_table",
    "seed_table",
    "heatmaps",
    "change_by_distance",
    "change_grid",
    "training_loss",
}
LOCAL_RULES = {"download", "fetch_model", "fetch_nltk_data", "sample_data", "tiny_model", "punkt_model", "all"}
SLURM_TEST_FLAGS = [
    "--sdm",
    "env-modules",
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "1",
    "--latency-wait",
    "5",
]


def planned_resources(dry_run_output: str) -> list[tuple[str, dict]]:
    """(rule, resources) of every job a dry-run prints."""
    jobs, rule = [], None
    for line in dry_run_output.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line.strip()):
            rule = match.group(1)
            jobs.append((rule, {}))
        elif rule and line.strip().startswith("resources:"):
            pairs = line.strip()[len("resources:") :].split(", ")
            jobs[-1][1].update(pair.split("=", 1) for pair in pairs if "=" in pair)
    return jobs


def with_fake_conda(scratch) -> dict:
    """Conda is on in the profile; a dry-run asks conda a few questions, answered by a stand-in here.
    The profile builds the envs under $SCRATCH."""
    fake_conda = REPO / "tests/slurm/fake_conda"
    return {"PATH": f"{fake_conda}:{os.environ['PATH']}", "SCRATCH": str(scratch)}


def test_profile_dry_run_places_every_rule_of_the_paper_grid(tmp_path):
    result = snakemake("--profile", "slurm-b200", "-n", env_extra=with_fake_conda(tmp_path))
    assert "Using profile slurm-b200" in result.stdout + result.stderr
    jobs = planned_resources(result.stdout)
    by_rule: dict[str, set] = {}
    for rule, resources in jobs:
        by_rule.setdefault(rule, set()).add(
            (resources.get("slurm_partition"), resources.get("gpu"), resources.get("mem_mb"), resources.get("runtime"))
        )
    assert (
        len([rule for rule, _ in jobs if rule == "generate"])
        == len([rule for rule, _ in jobs if rule == "score"])
        == 616
    )
    # Placement as configured in config/config.yaml `cluster:` and `resources:`.
    # Train GPUs by the model's size (resources.train.by_model_size): 14B on 4, 7B/8B on 2, the rest on 1.
    assert {(p, g) for p, g, *_ in by_rule["train"]} == {("b200", "1"), ("b200", "2"), ("b200", "4")}
    assert {(p, g) for p, g, *_ in by_rule["generate"]} == {("b200", "1")}
    assert {(p, g, m, r) for p, g, m, r in by_rule["score"]} == {("cpu", "0", "4000", "10")}
    assert {(p, g) for p, g, *_ in by_rule["convert"]} == {("cpu", "0")}
    for rule in CPU_RULES - {"convert"}:
        assert {partition for partition, *_ in by_rule[rule]} == {"cpu"}, rule
    # A GPU job's GPUs all on one node (the plugin turns `nodes` into --nodes); CPU jobs unpinned.
    for rule, resources in jobs:
        assert resources.get("nodes") == ("1" if rule in GPU_RULES else None), (rule, resources)
    # Time and memory sized per job from its work (the paper grid used to ask 720 min / 256 GB per
    # train job, 120 min / 64 GB per cell, 200 GB per conversion, whatever the model; a generate job
    # is a row of 10 bins behind one engine start).
    longest = {}
    for rule, resources in jobs:
        if rule in ("train", "generate", "convert"):
            longest[rule] = max(longest.get(rule, 0), int(resources["runtime"]))
    assert 10 <= longest["train"] <= 30 and longest["generate"] <= 30 and longest["convert"] <= 10, longest
    assert all(int(r["runtime"]) >= 4 for rule, r in jobs if rule in ("train", "generate"))
    # convert: ~2x the bf16 model (the fp32 masters; 4.25 B/param measured) + 2 GB, with 25% headroom.
    import math

    import yaml

    models = yaml.safe_load((REPO / "config/config.yaml").read_text())["models"]
    expected = {1000 * math.ceil(1.25 * (2 + 4.5 * entry["parameters"] / 1e9)) for entry in models.values()}
    assert {int(mem) for _, _, mem, _ in by_rule["convert"]} == expected
    assert max(expected) == 86_000 and min(expected) == 10_000
    # Hub access stays on the login node: no partition, no SLURM job.
    assert by_rule["download"] == by_rule["fetch_model"] == by_rule["fetch_nltk_data"] == {(None, None, None, None)}
    assert len(by_rule["fetch_model"]) == 1 and sum(rule == "fetch_model" for rule, _ in jobs) == 7


def test_lint_is_clean_with_the_profile(tmp_path):
    result = snakemake("--profile", "slurm-b200", "--lint", env_extra={"SCRATCH": str(tmp_path)})
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_conda_envs_are_built_under_the_profiles_prefix(tmp_path):
    """Not in the checkout (home quotas): where the profile's conda-prefix says, $SCRATCH expanded."""
    result = snakemake("--profile", "slurm-b200", "--list-conda-envs", env_extra=with_fake_conda(tmp_path / "scratch"))
    locations = re.findall(r"^envs/(\w+)\.yaml\s+(\S+)$", result.stdout, re.M)
    assert {name for name, _ in locations} == {"data", "train", "eval", "report"}
    # Snakemake prints a location relative to the working directory where that is shorter (a checkout
    # beside the temporary folder, say): resolved from there.
    prefix = (tmp_path / "scratch/cross-difficulty/conda-envs").resolve()
    assert all((REPO / where).resolve().parent == prefix for _, where in locations), locations
    unset = {k: v for k, v in with_fake_conda(tmp_path).items() if k != "SCRATCH"}
    env = {k: v for k, v in os.environ.items() if k != "SCRATCH"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--profile", "slurm-b200", "-n"],
        cwd=REPO,
        env={**env, **unset},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert (
        "conda-prefix = '$SCRATCH/cross-difficulty/conda-envs' names an environment variable that is not set; fix:"
        in result.stdout + result.stderr
    )


def test_cluster_settings_reach_every_job(tmp_path):
    """Partition names, account and GPU model are one config section; a site edits only that."""
    site = tmp_path / "site.yaml"
    site.write_text("cluster: {gpu_partition: gpu-big, cpu_partition: short, account: lab42, gpu_model: b200}\n")
    result = snakemake(
        "--configfile",
        str(REPO / "config/demo.yaml"),
        str(REPO / "tests/slurm/demo_resources.yaml"),
        str(site),
        "-n",
        workdir=tmp_path,
    )
    for rule, resources in planned_resources(result.stdout):
        if rule in GPU_RULES:
            assert (resources["slurm_partition"], resources["gpu_model"]) == ("gpu-big", "b200"), rule
        elif rule in CPU_RULES:
            assert resources["slurm_partition"] == "short" and "gpu_model" not in resources, rule
        if rule not in LOCAL_RULES:
            assert resources["slurm_account"] == "lab42", rule


# ---- a real SLURM -------------------------------------------------------------------------------


def slurm_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root to start slurmctld/slurmd/munged"
    missing = [
        tool for tool in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol") if not shutil.which(tool)
    ]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = slurm_unavailable()
    if reason:
        pytest.skip(f"no local SLURM: {reason}")
    started = subprocess.run(
        [str(REPO / "tests/slurm/start_cluster.sh"), "b200", "cpu"], capture_output=True, text=True, timeout=120
    )
    if started.returncode != 0:
        pytest.skip(f"SLURM could not be started here: {started.stdout[-500:]} {started.stderr[-1500:]}")


def slurm_jobs(workdir: Path) -> list[dict]:
    """SLURM's own record of every job submitted from workdir (finished jobs stay: MinJobAge is large)."""
    listing = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in listing.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs.append(fields)
    return jobs


def rule_of(job: dict) -> str:
    # The plugin comments each job `rule_<name>` or `rule_<name>_wildcards_<...>`.
    return re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)


def run_through_profile(
    workdir: Path, *targets: str, verbose: bool = False, configs: tuple = ()
) -> subprocess.CompletedProcess:
    # Typed in the repository root, as in the README; --directory keeps this run's files apart.
    command = [
        str(Path(sys.executable).parent / "snakemake"),
        "--profile",
        "slurm-b200",
        *SLURM_TEST_FLAGS,
        "--configfile",
        str(REPO / "config/demo.yaml"),
        str(REPO / "tests/slurm/demo_resources.yaml"),
        *map(str, configs),
        "--directory",
        str(workdir),
        *(["--verbose"] if verbose else []),
        *targets,
    ]
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        runtime.DUMMY_GPUS_VARIABLE: "1",
    }
    # A status loop that hangs ignores SIGTERM; SIGINT stops it (hence not subprocess's own timeout).
    result = subprocess.run(
        ["timeout", "-s", "INT", "-k", "30", "1500", *command], cwd=REPO, env=env, capture_output=True, text=True
    )
    (workdir / "run-output.txt").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, f"run through the profile failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def sbatch_calls(output: str) -> dict[str, str]:
    """The plugin's own sbatch command line per rule, as it logs it with --verbose."""
    calls = {}
    for call in re.findall(r"sbatch call: (sbatch .*)$", output, re.M):
        calls[re.search(r"--comment '?rule_(\w+?)(?:_wildcards_\S*)?'? ", call).group(1)] = call
    return calls


def test_cluster_check_sees_the_gpus_each_rule_asks_for(slurm, tmp_path):
    result = run_through_profile(tmp_path, "cluster_check", verbose=True)
    for rule, gpus in (("train", 2), ("generate", 1)):
        seen = json.loads((tmp_path / f"results/demo/cluster_check/{rule}.json").read_text())
        assert seen["expected_gpus"] == seen["visible_gpus"] == gpus
        assert len(seen["CUDA_VISIBLE_DEVICES"].split(",")) == gpus
        assert seen["slurm_partition"] == "b200" and seen["slurm_job_id"]
    jobs = slurm_jobs(tmp_path)
    assert sorted(rule_of(job) for job in jobs) == ["cluster_check_generate", "cluster_check_train"]
    # What the plugin submitted: the GPUs, and all of them on one node.
    calls = sbatch_calls(result.stdout + result.stderr)
    assert set(calls) == {"cluster_check_train", "cluster_check_generate"}, calls
    for rule, gpus in (("cluster_check_train", 2), ("cluster_check_generate", 1)):
        assert re.search(rf"--gpus[= ]{gpus}\b", calls[rule]) and " --nodes=1" in calls[rule], calls[rule]


def test_demo_through_slurm_places_jobs_and_matches_a_local_run(slurm, tmp_path, demo_run):
    run_through_profile(tmp_path)
    jobs = slurm_jobs(tmp_path)
    rules = [rule_of(job) for job in jobs]
    # Every non-local job of the demo went through SLURM, once, and finished.
    assert sorted(set(rules)) == sorted(GPU_RULES | CPU_RULES)
    assert rules.count("train") == rules.count("convert") == 6
    assert rules.count("generate") == rules.count("score") == 8  # one each per row (4 rows x 2 datasets)
    assert {job["JobState"] for job in jobs} == {"COMPLETED"}
    for job, rule in zip(jobs, rules):
        if rule in GPU_RULES:
            assert job["Partition"] == "b200", job
            assert job.get("TresPerJob") == f"gres:gpu:{2 if rule == 'train' else 1}", job
        else:
            assert job["Partition"] == "cpu" and "gpu" not in job.get("TresPerJob", ""), job

    # The same result files as the local run of the same config.
    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != ".run.lock"}

    assert files(tmp_path / "results/demo") == files(demo_run / "results/demo")


def test_a_train_job_killed_at_its_time_limit_resumes_from_the_checkpoint_it_wrote_before(slurm, tmp_path, demo_run):
    """SLURM's own time limit (1 min for the first attempt, 2 and 3 for the retries: resources.train
    runtime x attempt) kills a train job that needs longer; the job asked squeue for its time left
    and wrote a checkpoint before the kill, and the retry resumed from it instead of step 0.

    After the demo run (demo_run): DeepSpeed's CPU op is built by then; a first attempt killed while
    building it would leave a lock the retries wait on for 15 minutes (runtime.clear_stale_build_locks)."""
    overlay = tmp_path / "time_limit.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "n_bins": 2,
                # 30 rows / (2 ranks x 2) = 8 steps an epoch: 320 steps, more than the first attempt's
                # minute holds on 2 cores (2-6 steps a second after ~25 s of start-up: 50-210 steps);
                # the retry (2 minutes, then 3 if need be) finishes it.
                "datasets": {"arc": {"training": {"epochs": 40}}},
                "resources": {"train": {"gpu": 2, "threads": 2, "mem_mb": 3000, "runtime": 1, "retries": 3}},
            }
        )
    )
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    base = tmp_path / "arc_only.yaml"
    base.write_text(yaml.safe_dump(config))
    target = "results/demo/models/tiny-qwen2/arc/train-0/hf"
    run_through_profile(tmp_path, target, configs=(base, overlay))
    train_jobs = [job for job in slurm_jobs(tmp_path) if rule_of(job) == "train"]
    states = [job["JobState"] for job in sorted(train_jobs, key=lambda job: int(job["JobId"]))]
    assert states[0] == "TIMEOUT" and states[-1] == "COMPLETED" and set(states) <= {"TIMEOUT", "COMPLETED"}, states
    assert [job["TimeLimit"] for job in sorted(train_jobs, key=lambda job: int(job["JobId"]))] == [
        f"00:0{attempt}:00" for attempt in range(1, len(states) + 1)
    ]
    record = json.loads((tmp_path / target / "training.json").read_text())
    before_limit = [c for c in record["checkpoints"] if c["reason"] == "time limit"]
    # The attempt that finished may have written a checkpoint before its own limit too (it could not
    # know it would finish in time): it resumed from one an earlier attempt wrote before the kill.
    assert record["resumed_from_step"] in [c["step"] for c in before_limit] and record["resumed_from_step"] > 0
    assert record["global_step"] == 40 * 8  # the whole schedule, continued across attempts
    log = (tmp_path / "results/demo/logs/train/tiny-qwen2/arc/train-0.log").read_text()
    assert (
        "(squeue)" in log
        and f"resuming from results/demo/work/train/tiny-qwen2/arc/train-0/checkpoint-{record['resumed_from_step']}"
        in log
    )


def test_a_train_job_across_two_nodes_trains_one_model_with_a_launcher_on_each(slurm, tmp_path):
    """resources.train.gpu 4 over cluster.gpus_per_node 2: the plugin submits one job of two nodes (the
    test cluster's n1 and n2, two slurmd on this host), the job's process resolves them with scontrol
    and starts one launcher per node with srun, and the 4 ranks train one ZeRO-3 model that converts
    to the logits they computed."""
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    base = tmp_path / "arc_only.yaml"
    base.write_text(yaml.safe_dump(config))
    overlay = tmp_path / "two_nodes.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "n_bins": 2,
                # 4 ranks x 1 sequence: the demo's batch of 4 in one step.
                "datasets": {"arc": {"training": {"per_device_batch_size": 1}}},
                "cluster": {"gpus_per_node": 2},
                "resources": {"train": {"gpu": 4, "threads": 2, "mem_mb": 3000, "runtime": 30}},
            }
        )
    )
    target = "results/demo/models/tiny-qwen2/arc/train-0/hf"
    result = run_through_profile(tmp_path, target, verbose=True, configs=(base, overlay))

    call = sbatch_calls(result.stdout + result.stderr)["train"]
    # The same GPUs on each node (--gres counts per node), a task slot per GPU, and no --gpus=N that
    # SLURM could spread unevenly.
    for part in (" --nodes=2", " --gres=gpu:2", " --ntasks-per-node=2", " --cpus-per-gpu=1"):
        assert part in call, call
    assert "--gpus" not in call, call
    (job,) = [job for job in slurm_jobs(tmp_path) if rule_of(job) == "train"]
    assert job["JobState"] == "COMPLETED" and job["NumNodes"] == "2" and job["NodeList"] == "n[1-2]", job

    log = (tmp_path / "results/demo/logs/train/tiny-qwen2/arc/train-0.log").read_text()
    main_node = job["BatchHost"]
    other = {"n1": "n2", "n2": "n1"}[main_node]
    assert f"4 ranks on 2 nodes: {main_node}, {other} (main: {main_node})" in log, log[-3000:]
    assert "node 0 of 2: 2 ranks" in log and "node 1 of 2: 2 ranks" in log, log[-3000:]
    record = json.loads((tmp_path / target / "training.json").read_text())
    assert record["world_size"] == 4 and record["backend"] == "gloo"
    made = json.loads((tmp_path / target / "conversion.json").read_text())
    assert made["probe"]["probe_max_abs_diff"] <= 1e-5


def test_the_slurm_executor_needs_an_account_before_any_job(tmp_path):
    """Without cluster.account the plugin would guess one from the last sacct line: refused when the
    run starts, before any job or lock, nothing written."""
    finished = tmp_path / "results/demo/cells/x.json"
    finished.parent.mkdir(parents=True)
    finished.write_text("{}")
    result = snakemake(
        "--configfile",
        str(REPO / "config/demo.yaml"),
        "--executor",
        "slurm",
        "--jobs",
        "1",
        workdir=tmp_path,
        check=False,
    )
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "cluster.account is not set" in line]
    assert result.returncode != 0 and len(lines) == 1 and "fix: set cluster.account" in lines[0]
    assert "sbatch" not in output and "Submitted" not in output
    assert sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "results").rglob("*")) == [
        "results/demo",
        "results/demo/cells",
        "results/demo/cells/x.json",
    ]
