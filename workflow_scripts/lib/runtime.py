"""The process a GPU step runs in: fork-safe CUDA detection, the GPUs it asked for, the vLLM build, caches.

No torch at import: ``fork_safe_cuda_detection`` must run before anything imports torch.
"""

from __future__ import annotations

import os
import sys

# A test cluster hands out dummy GRES devices (tests/slurm/start_cluster.sh): with this variable set
# to 1, a job that asked for GPUs and sees no CUDA device runs on the CPU instead of stopping. Never
# set it on a real cluster: there, a GPU job without CUDA would crawl until its time limit.
DUMMY_GPUS_VARIABLE = "CROSS_DIFFICULTY_DUMMY_GPUS"


def fork_safe_cuda_detection() -> None:
    """Make torch answer `is_available()` through NVML instead of `cudaGetDeviceCount`.

    The CUDA runtime call initialises the driver (cuInit) in this process without torch counting
    CUDA as initialised; vLLM then starts its engine process with fork (it switches to spawn only
    when torch says CUDA is initialised) and the child fails with "Cannot re-initialize CUDA in
    forked subprocess". With NVML no CUDA context exists before the fork. Must run before torch is
    imported (torch reads the variable on each call, but a library may query CUDA at import)."""
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")


def dummy_gpus() -> bool:
    return os.environ.get(DUMMY_GPUS_VARIABLE) == "1"


def cuda_summary() -> str:
    """torch's build and what it sees, for error lines and logs."""
    import torch

    return (
        f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}) sees {torch.cuda.device_count()} "
        f"CUDA device(s), CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}"
    )


def missing_gpus(asked: int, setting: str) -> str | None:
    """Why a job that asked for `asked` GPUs cannot use them (None: it can).

    `setting` names the config value that asked, for the one line the job ends with."""
    import torch

    if asked <= 0:
        return None
    seen = torch.cuda.device_count()
    if seen >= asked:
        return None
    if dummy_gpus():
        print(
            f"warning: {setting} is {asked} but {cuda_summary()}; running on the CPU because "
            f"{DUMMY_GPUS_VARIABLE}=1 (a test cluster's dummy GPUs)",
            file=sys.stderr,
        )
        return None
    return (
        f"{setting} is {asked} but {cuda_summary()}; fix: a driver new enough for this torch "
        "(CUDA 13 wheels need >= 580: `nvidia-smi`), or the partition's GPU request "
        "(`snakemake --profile slurm-b200 cluster_check` shows what a job gets); nothing was run"
    )


def vllm_build() -> str | None:
    """The installed vLLM's version (a CPU build says `+cpu`), or None without vLLM."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm")
    except PackageNotFoundError:
        return None


def is_cpu_vllm(build: str | None) -> bool:
    return build is not None and "cpu" in build


def job_environment(cache_dir: str, nltk_data: str | None = None) -> dict[str, str]:
    """Variables every workflow job gets (rules/common/environment.smk puts them in the shell prefix).

    JIT and compile caches go to one configurable folder instead of $HOME (quota, and jobs on many
    nodes writing into one home folder); vLLM reports no usage statistics. Per-cell throwaway data
    (the datasets library's arrow copies of a bin) stays in the cell's own temporary folder instead
    (workflow_scripts/lib/evaluation.py). Not job params: moving the caches changes no result.

    vLLM starts its engine process with spawn, not fork: torch answers "is CUDA there?" through NVML
    (fork_safe_cuda_detection) only while NVML works; where it fails, torch falls back to a query that
    initialises CUDA, and a forked engine then fails ("Cannot re-initialize CUDA in forked
    subprocess"). Spawn does not depend on NVML. `nltk_data`: where fetch_nltk_data put the data that
    lm-eval's IFEval checkers load (NLTK_DATA), so no scoring job tries NLTK's data host."""
    variables = {
        "VLLM_CACHE_ROOT": os.path.join(cache_dir, "vllm"),  # torch.compile artefacts, keyed by model path
        "TRITON_CACHE_DIR": os.path.join(cache_dir, "triton"),  # Liger, vLLM's Triton kernels
        "FLASHINFER_WORKSPACE_BASE": os.path.join(cache_dir, "flashinfer"),  # its JIT-built kernels
        "CUDA_CACHE_PATH": os.path.join(cache_dir, "nv-compute-cache"),  # the driver's PTX JIT cache
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_DO_NOT_TRACK": "1",
        "VLLM_WORKER_MULTIPROC_METHOD": "spawn",
    }
    if nltk_data:
        variables["NLTK_DATA"] = nltk_data
    return variables


# A JIT build of a torch extension (DeepSpeed's ops) takes minutes; a lock older than this was left by a
# job killed mid-build (a time limit, a preemption), and torch would wait on it forever.
STALE_BUILD_LOCK_S = 15 * 60


def clear_stale_build_locks(now: float | None = None) -> list[str]:
    """Remove the build locks of torch extensions that no build holds any more; return their paths.

    torch serialises a JIT build with a `lock` file in the extension's folder and every other process
    waits until it is gone. A job killed while building leaves it behind, and every later job that
    loads the extension (each DeepSpeed rank on the CPU path loads its shared-memory op) then hangs
    until its own time limit: on a shared cache, the whole grid."""
    import glob
    import time

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.expanduser("~/.cache/torch_extensions")
    now = time.time() if now is None else now
    removed = []
    for lock in glob.glob(os.path.join(root, "*", "*", "lock")):
        try:
            if now - os.path.getmtime(lock) > STALE_BUILD_LOCK_S:
                os.remove(lock)
                removed.append(lock)
        except OSError:  # another job removed it first
            continue
    return removed


def describe_caches() -> str:
    names = ("VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE", "CUDA_CACHE_PATH")
    return "caches: " + ", ".join(f"{name}={os.environ.get(name, '(default)')}" for name in names)
