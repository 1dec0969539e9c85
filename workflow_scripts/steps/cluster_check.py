"""What a SLURM job of one rule's shape sees: its GPUs, CPUs and node, before hours are spent.

`snakemake --profile slurm-b200 cluster_check` submits one job per GPU rule (train, generate) with that
rule's resources. Each writes this report (driver version and compute capability included); the job
fails when the GPUs SLURM handed it (CUDA_VISIBLE_DEVICES) are not the number the rule asked for, or
when torch in the rule's env cannot use that many (a driver too old for its CUDA build, a CPU torch).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

from workflow_scripts.lib import runtime
from workflow_scripts.lib.io_utils import atomic_write_text, one_line_errors


def nvidia_smi_lines() -> list[str]:
    """One line per GPU the job can see: index, name, driver version, compute capability, memory."""
    if shutil.which("nvidia-smi") is None:
        return ["nvidia-smi not found on this node"]
    query = "--query-gpu=index,name,driver_version,compute_cap,memory.total"
    result = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=60)
    return (result.stdout + result.stderr).strip().splitlines()


def torch_view() -> dict:
    try:
        import torch
    except ImportError as error:
        return {"torch": f"not importable ({error})"}
    view = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_device_count": torch.cuda.device_count(),
    }
    if torch.version.cuda:  # the CUDA version the driver supports (e.g. 13000), 0 without a driver
        view["cuda_driver_api"] = torch._C._cuda_getDriverVersion()
    if torch.cuda.is_available():
        view["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        view["capability"] = [
            ".".join(map(str, torch.cuda.get_device_capability(i))) for i in range(torch.cuda.device_count())
        ]
    return view


def visible_gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    return len([d for d in visible.split(",") if d.strip()]) if visible else 0


def report(rule: str, expected_gpus: int) -> dict:
    return {
        "rule": rule,
        "expected_gpus": expected_gpus,
        "visible_gpus": visible_gpu_count(),
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "host": socket.gethostname(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_partition": os.environ.get("SLURM_JOB_PARTITION"),
        "slurm_cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK"),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "nvidia_smi": nvidia_smi_lines(),
        **torch_view(),
    }


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rule", required=True)
    parser.add_argument("--expected-gpus", type=int, required=True)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    seen = report(args.rule, args.expected_gpus)
    text = json.dumps(seen, indent=2)
    print(text)
    if seen["visible_gpus"] != args.expected_gpus:
        raise ValueError(
            f"rule {args.rule} asked for {args.expected_gpus} GPU(s) but the job sees "
            f"{seen['visible_gpus']} (CUDA_VISIBLE_DEVICES={seen['CUDA_VISIBLE_DEVICES']!r}); "
            "fix the partition's GRES setup or cluster/resources in config/config.yaml"
        )
    torch_count = seen.get("torch_device_count")
    if torch_count != args.expected_gpus:
        what = (
            f"torch {seen.get('torch')} (CUDA {seen.get('torch_cuda')}) sees {torch_count} CUDA device(s), "
            f"not {args.expected_gpus}; GPUs: {'; '.join(seen['nvidia_smi'])}"
        )
        if not runtime.dummy_gpus():
            raise ValueError(
                f"rule {args.rule}: {what}; fix: a driver new enough for this torch (CUDA 13 wheels "
                "need >= 580), or the rule's conda env (envs/) with a CUDA build of torch"
            )
        print(f"warning: {what} (accepted: {runtime.DUMMY_GPUS_VARIABLE}=1, a test cluster's dummy GPUs)")
    atomic_write_text(text + "\n", args.out)


if __name__ == "__main__":
    main()
