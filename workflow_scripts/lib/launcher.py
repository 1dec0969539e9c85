"""Start the ranks of a training step with `accelerate launch`, from inside the job SLURM started.

The job's own process checks that it sees the GPUs it asked for, then runs `accelerate launch` (the
DeepSpeed ZeRO-3 config and one rank per GPU, or `launch.cpu_processes` ranks on a CPU-only run) on a
free port, and each rank runs the step's module again in its rank mode. A failing rank's traceback
stays in the job log, and one line after it says the launch failed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from workflow_scripts.lib import runtime

REPO = str(Path(__file__).resolve().parents[2])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(accelerate_config: str, num_processes: int, module: str, arguments: list[str]) -> list[str]:
    """`accelerate launch` of `python -m module arguments...` on `num_processes` ranks (one config value)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        accelerate_config,
        "--num_processes",
        str(num_processes),
        "--main_process_port",
        str(free_port()),
        "-m",
        module,
        *arguments,
    ]


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
