"""Jobs beyond one node: how a large model's jobs are sized and placed (config/large_models.yaml), what
the plan says of them, and the launcher's pieces that a CPU can check exactly (its SLURM parsing and
commands). The two-machine training run is tests/integration/test_multi_node.py; the two-node SLURM
job, tests/integration/test_cluster.py."""

from __future__ import annotations

import pytest

from tests.support.workflow import REPO
from workflow_scripts.lib import launcher, sizing
from workflow_scripts.tools import plan

LARGE = [str(REPO / "config/config.yaml"), str(REPO / "config/large_models.yaml")]


@pytest.mark.parametrize(
    "gpus, per_node, expected",
    [(4, 8, (1, 4)), (8, 8, (1, 8)), (8, 4, (2, 4)), (16, 8, (2, 8)), (12, 8, (2, 6)), (10, 4, None)],
)
def test_a_job_spreads_its_gpus_evenly_over_as_few_nodes_as_hold_them(gpus, per_node, expected):
    if expected is None:
        with pytest.raises(ValueError, match="10 GPUs do not spread evenly over 3 nodes of at most 4"):
            sizing.node_split(gpus, per_node)
    else:
        assert sizing.node_split(gpus, per_node) == expected


def large_grid_jobs(tmp_path, *overlays: str) -> list[dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    configs = [*LARGE]
    for number, text in enumerate(overlays):
        path = tmp_path / f"overlay-{number}.yaml"
        path.write_text(text)
        configs.append(str(path))
    # Only the jobs the test reads (and what they need): the whole grid's dry-run takes ~15 s.
    targets = [
        f"results/paper/models/{model}/gsm8k/train-3/zero"
        for model in ("llama-3.3-70b-instruct", "qwen2.5-14b-instruct")
    ] + [
        f"results/paper/raw/{model}/gsm8k/train-3/test-0.json"
        for model in ("llama-3.3-70b-instruct", "qwen2.5-32b-instruct")
    ]
    return plan.planned_jobs(plan.dry_run(configs, str(tmp_path), targets))


def one_job(jobs, rule, **wildcards):
    return next(j for j in jobs if j["rule"] == rule and all(j["wildcards"].get(k) == v for k, v in wildcards.items()))


def test_large_rows_are_placed_by_their_size_on_nodes_of_8_and_of_4(tmp_path):
    on_8 = large_grid_jobs(tmp_path / "8")
    on_4 = large_grid_jobs(tmp_path / "4", "cluster: {gpus_per_node: 4}\n")
    row = {"model": "llama-3.3-70b-instruct", "dataset": "gsm8k", "trained_row": "3"}
    # One node of 8: asked as a one-node GPU job, as every 14B job is.
    train = one_job(on_8, "train", **row)["resources"]
    assert (
        (train["gpu"], train["nodes"], train["node_gpus"]) == (8, 1, 8) and "gres" not in train and "mpi" not in train
    )
    # Two of 4: --nodes=2 and 4 GPUs on each (gres counts per node), a task slot per GPU, the threads
    # (32 a node) per GPU, no `gpu` (the plugin would add --gpus=8, which SLURM may spread unevenly),
    # and `mpi`, so that the job step runs the command outside `srun -n1` (one node).
    train = one_job(on_4, "train", **row)["resources"]
    assert "gpu" not in train and (train["nodes"], train["node_gpus"], train["gres"]) == (2, 4, "gpu:4")
    assert (train["mpi"], train["tasks_per_node"], train["cpus_per_gpu"]) == ("srun", 4, 8)
    # Memory is per node: the two nodes of 4 each ask for about half of what the node of 8 asks for.
    assert train["mem_mb"] == pytest.approx(one_job(on_8, "train", **row)["resources"]["mem_mb"] / 2, rel=0.05)
    # Generation stays on one node: 2 GPUs, tensor-parallel, for a 70B model; 1 for 32B and below.
    generate = one_job(on_4, "generate", model="llama-3.3-70b-instruct", dataset="gsm8k", row="3")["resources"]
    assert (generate["gpu"], generate["nodes"]) == (2, 1)
    assert one_job(on_4, "generate", model="qwen2.5-32b-instruct", dataset="gsm8k", row="3")["resources"]["gpu"] == 1
    # The study's models are placed as before.
    for jobs in (on_8, on_4):
        small = one_job(jobs, "train", model="qwen2.5-14b-instruct", dataset="gsm8k", trained_row="3")["resources"]
        assert (small["gpu"], small["nodes"], small["node_gpus"]) == (4, 1, 4) and "mpi" not in small


def test_the_plan_counts_a_job_across_nodes_by_its_gpus_on_every_node():
    assert plan.job_gpus({"gpu": 2, "nodes": 1}) == 2
    assert plan.job_gpus({"gres": "gpu:4", "nodes": 2}) == 8
    assert plan.job_gpus({"gres": "gpu:b200:4", "nodes": 2}) == 8
    assert plan.job_gpus({"gpu": 0}) == 0
    jobs = [
        {
            "rule": "train",
            "local": False,
            "wildcards": {"model": "big"},
            "resources": {
                "gres": "gpu:4",
                "nodes": 2,
                "runtime": 60,
                "mem_mb": 200000,
                "expected_s": 1800,
                "output_mb": 706000,
            },
        },
        {
            "rule": "train",
            "local": False,
            "wildcards": {"model": "big"},
            "resources": {"gres": "gpu:4", "nodes": 2, "runtime": 30, "mem_mb": 200000, "expected_s": 900},
        },
        {
            "rule": "generate",
            "local": False,
            "wildcards": {"model": "big"},
            "resources": {"gpu": 2, "nodes": 1, "runtime": 30, "expected_s": 600},
        },
        {
            "rule": "convert",
            "local": False,
            "wildcards": {"model": "big"},
            "resources": {"gpu": 0, "runtime": 40, "mem_mb": 400000},
        },
    ]
    (row,) = plan.per_model(jobs).values()
    assert row["train"] == {(2, 4)} and row["generate"] == {(1, 2)}
    assert row["requested_gpu_h"] == pytest.approx(8 + 4 + 1) and row["expected_gpu_h"] == pytest.approx(4 + 2 + 1 / 3)
    assert row["largest"] == {
        "rule": "train",
        "nodes": 2,
        "gpus_per_node": 4,
        "minutes": 60,
        "mem_gb_per_node": 200.0,
        "gpu_h": 8.0,
    }
    assert (row["convert_mem_gb"], row["convert_min"], row["zero_state_gb"]) == (400, 40, 706)
    table = plan.render_models(plan.per_model(jobs))
    assert (
        "| big | 2 x 4 | 2 | 13.0 | 6.3 | train: 2 x 4 GPUs, 60 min, 200 GB/node | 400 GB, 40 min | 706.0 GB |" in table
    )


SCONTROL_JOB = (
    "JobId=352 JobName=x\n   UserId=root(0) Partition=b200\n   ReqNodeList=(null) ExcNodeList=(null)\n"
    "   NodeList=n[1-2]\n   BatchHost=n2\n   NumNodes=2 NumCPUs=8 NumTasks=4 CPUs/Task=1\n"
)


def test_the_launcher_reads_the_jobs_nodes_as_scontrol_prints_them(monkeypatch):
    calls = []

    def scontrol(*arguments):
        calls.append(arguments)
        return {"job": SCONTROL_JOB, "hostnames": "n1\nn2\n"}[arguments[1]]

    monkeypatch.setattr(launcher, "scontrol", scontrol)
    monkeypatch.setenv("SLURM_JOB_ID", "352")
    job = launcher.slurm_job(2)
    # The batch host (where the job's process picks the port) first: machine rank 0.
    assert job == launcher.SlurmJob("352", ["n2", "n1"], 4)
    assert calls == [("show", "job", "352"), ("show", "hostnames", "n[1-2]")]  # NodeList, not ReqNodeList
    with pytest.raises(ValueError, match="job 352 asked for 3 nodes but SLURM gave it 2: n1, n2"):
        launcher.slurm_job(3)
    monkeypatch.delenv("SLURM_JOB_ID")
    with pytest.raises(ValueError, match="runs outside SLURM"):
        launcher.slurm_job(2)


def test_one_launcher_per_node_each_with_its_machine_rank(monkeypatch):
    job = launcher.SlurmJob("352", ["n2", "n1"], 4)
    assert launcher.srun_command(job, ["python", "-m", "x"]) == [
        "srun", "--jobid=352", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--cpus-per-task=4",
        "--mem=0", "--kill-on-bad-exit=1", "--export=ALL", "python", "-m", "x",
    ]  # fmt: skip
    monkeypatch.setenv("SLURMD_NODENAME", "n1")
    assert launcher.machine_rank(job.nodes) == 1
    command = launcher.accelerate_command("zero3.yaml", 8, "m", ["train"], launcher.Machines(2, 1, "10.0.0.2", 29555))
    assert command[command.index("--num_processes") :] == [
        "--num_processes", "8", "--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "10.0.0.2",
        "--main_process_port", "29555", "--deepspeed_multinode_launcher", "standard", "-m", "m", "train",
    ]  # fmt: skip
    monkeypatch.setenv("SLURMD_NODENAME", "n3")
    with pytest.raises(ValueError, match="node 'n3' is not one of the job's nodes: n2, n1"):
        launcher.machine_rank(job.nodes)
