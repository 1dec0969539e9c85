"""Start the ranks of a training step with `accelerate launch`, from inside the job SLURM started.

The job's own process checks that it sees the GPUs it asked for, then runs `accelerate launch` (the
DeepSpeed ZeRO-3 config and one rank per GPU, or `launch.cpu_processes` ranks on a CPU-only run) on a
free port, and each rank runs the step's module again in its rank mode. A failing rank's traceback
stays in the job log, and one line after it says the launch failed.

A job across nodes (SLURM, `nodes` > 1) starts one launcher per node instead: the job's process resolves
the job's nodes as SLURM lists them, takes its own node (the batch host, where it runs) as the main
one with a port free there, and runs `srun` with one task per node; each task checks its node's GPUs
and runs `accelerate launch` with its machine rank (the node's place in that order). accelerate's
DeepSpeed path then starts torch's launcher on each node (`--deepspeed_multinode_launcher standard`),
not DeepSpeed's own, which would log in to the other nodes over ssh/pdsh.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.lib import runtime

REPO = str(Path(__file__).resolve().parents[2])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Machines:
    """One node's place in a job across nodes: how many, its rank, and where rank 0 listens."""

    count: int
    rank: int
    main_address: str
    main_port: int


def accelerate_command(
    accelerate_config: str, num_processes: int, module: str, arguments: list[str], machines: Machines | None = None
) -> list[str]:
    """`accelerate launch` of `python -m module arguments...` on `num_processes` ranks in all (one config
    value), on this machine alone or as one of `machines` (then num_processes / count ranks here)."""
    if machines is None:
        where = ["--main_process_port", str(free_port())]
    else:
        where = [
            "--num_machines",
            str(machines.count),
            "--machine_rank",
            str(machines.rank),
            "--main_process_ip",
            machines.main_address,
            "--main_process_port",
            str(machines.main_port),
            "--deepspeed_multinode_launcher",
            "standard",
        ]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        accelerate_config,
        "--num_processes",
        str(num_processes),
        *where,
        "-m",
        module,
        *arguments,
    ]


@dataclass(frozen=True)
class SlurmJob:
    """What a job across nodes needs to know of its allocation (`scontrol show job`)."""

    job_id: str
    nodes: list[str]  # SLURM's order, the batch host first
    cpus_per_node: int


def scontrol(*arguments: str) -> str:
    try:  # a bound, as job_deadline gives squeue: an unreachable controller must not hold the job's GPUs
        result = subprocess.run(["scontrol", *arguments], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise ValueError(f"scontrol {' '.join(arguments)} did not answer in 60 s (is slurmctld reachable?)") from None
    if result.returncode != 0:
        raise ValueError(f"scontrol {' '.join(arguments)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def scontrol_field(text: str, name: str) -> str:
    """One `Name=value` field of scontrol's output (NodeList, not ReqNodeList or ExcNodeList)."""
    match = re.search(rf"(?<![A-Za-z]){name}=(\S+)", text)
    if not match:
        raise ValueError(f"scontrol's output has no {name}= field:\n{text}")
    return match.group(1)


def slurm_job(nodes: int) -> SlurmJob:
    """The job this process runs in, resolved the way SLURM gives it. The SLURM plugin's job step keeps
    only SLURM_JOB_ID of the job's variables, so the node list comes from scontrol, not the environment."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        raise ValueError(
            f"this train job asks for {nodes} nodes (resources.train.gpu over cluster.gpus_per_node) but runs "
            "outside SLURM: a job across nodes runs only through the SLURM profile (snakemake --profile "
            "slurm-b200); fix: run it there, or give the model's class GPUs one machine holds"
        )
    record = scontrol("show", "job", job_id)
    hosts = scontrol("show", "hostnames", scontrol_field(record, "NodeList")).split()
    if len(hosts) != nodes:
        raise ValueError(f"job {job_id} asked for {nodes} nodes but SLURM gave it {len(hosts)}: {', '.join(hosts)}")
    batch_host = scontrol_field(record, "BatchHost")
    ordered = [batch_host, *(host for host in hosts if host != batch_host)]
    return SlurmJob(job_id, ordered, int(scontrol_field(record, "NumCPUs")) // nodes)


def node_address(node: str) -> str:
    """Where the other nodes reach `node` (its NodeAddr: a node's name need not resolve)."""
    return scontrol_field(scontrol("show", "node", node), "NodeAddr")


def srun_command(job: SlurmJob, command: list[str]) -> list[str]:
    """`command` once on every node of the job, in a step of its own: all of each node's CPUs, memory
    and GPUs (a step gets all of the job's GRES unless it asks otherwise), and one failing node stops
    the others rather than leaving them waiting on a collective until the time limit."""
    return [
        "srun",
        f"--jobid={job.job_id}",
        f"--nodes={len(job.nodes)}",
        f"--ntasks={len(job.nodes)}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={job.cpus_per_node}",
        "--mem=0",
        "--kill-on-bad-exit=1",
        "--export=ALL",
        *command,
    ]


def machine_rank(node_order: list[str]) -> int:
    """This node's place in the job's order (srun sets SLURMD_NODENAME in each task)."""
    name = os.environ.get("SLURMD_NODENAME")
    if name not in node_order:
        raise ValueError(f"this task's node {name!r} is not one of the job's nodes: {', '.join(node_order)}")
    return node_order.index(name)


def prepare_job(gpus: int, setting: str) -> None:
    """Before any rank starts: a GPU job that sees no (or too few) CUDA devices would otherwise run on
    the CPU (gloo, CPU optimizer) until its time limit, then again with each retry. `setting`: the
    config value that asked for the GPUs, named in the error."""
    problem = runtime.missing_gpus(gpus, setting)
    if problem:
        raise ValueError(problem)
    print(runtime.describe_caches(), file=sys.stderr)
    for lock in runtime.clear_stale_build_locks():
        print(f"removed {lock}: a build lock left by a job killed while building (older than 15 min)", file=sys.stderr)


def run_ranks(command: list[str]) -> None:
    """Run the launch command; the ranks import workflow_scripts from the repository, wherever the job runs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    ranks = subprocess.run(command, env=env)
    if ranks.returncode != 0:
        # The failing rank's traceback is above; this stays the log's last line.
        print(
            f"error: training failed: accelerate launch exited with status {ranks.returncode} "
            "(the first failing rank's traceback is above)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(ranks.returncode)
