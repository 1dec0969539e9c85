"""Fetch, here (with PyPI), the wheels that benchmarks/gpu_smoke.py needs on a bare CUDA machine.

`make gpu-smoke-wheels` runs it; the wheels land in .gpu-wheels/ (git-ignored), one version per
package, for CPython 3.12 on manylinux x86_64. What the GPU machine already has is left out: it
ships torch (CUDA 13), transformers, accelerate, triton, numpy, pandas, pyarrow and more
(DEVICE_HAS, as its image lists them), but none of DeepSpeed, TRL, lm-eval, bitsandbytes, Liger.

How: the packages below are resolved for that platform, with the device's own versions of what it
has held fixed (so that nothing it has is replaced), then what it lacks is downloaded without
dependencies. Source-only packages (deepspeed, lm-eval's sqlitedict, rouge-score, word2number) are
built here into pure-Python wheels first. Prints the set and its weight (the device tool carries at
most 64 MiB per call, the working tree included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WANTED = [
    "deepspeed==0.19.8",
    "trl==1.16.0",
    "lm-eval==0.4.13",
    "bitsandbytes==0.50.2",
    "liger-kernel==0.8.5",
    "datasets==5.2.0",
]
SOURCE_ONLY = ["deepspeed==0.19.8", "sqlitedict==2.1.0", "rouge-score==0.1.2", "word2number==1.1"]
# The GPU machine's image, as listed for it (versions where known): held fixed in the resolution.
# Not torch: its 2.11.0 pins an NCCL wheel PyPI no longer serves. torch, triton and the CUDA
# libraries are on the device, so whatever the resolution picks for them is not fetched.
DEVICE_VERSIONS = {
    "transformers": "5.17.0",
    "accelerate": "1.15.0",
    "numpy": "2.5.2",
    "tokenizers": "0.23.2",
    "safetensors": "0.8.0",
    "huggingface-hub": "1.33.0",
}
DEVICE_HAS = set(DEVICE_VERSIONS) | {
    "torch",
    "triton",
    "aiohttp",
    "aiosignal",
    "aiohappyeyeballs",
    "anyio",
    "attrs",
    "certifi",
    "charset-normalizer",
    "click",
    "cloudpickle",
    "colorama",
    "cuda-bindings",
    "cuda-pathfinder",
    "cuda-toolkit",
    "einops",
    "filelock",
    "frozenlist",
    "fsspec",
    "h11",
    "hf-xet",
    "httpcore",
    "httpx",
    "idna",
    "jinja2",
    "joblib",
    "lxml",
    "markupsafe",
    "mpmath",
    "msgpack",
    "multidict",
    "networkx",
    "ninja",
    "nvidia-ml-py",
    "packaging",
    "pandas",
    "peft",
    "pillow",
    "portalocker",
    "propcache",
    "protobuf",
    "psutil",
    "py-cpuinfo",
    "pyarrow",
    "pybind11",
    "python-dateutil",
    "pytz",
    "pyyaml",
    "regex",
    "requests",
    "rich",
    "sacrebleu",
    "scikit-learn",
    "scipy",
    "sentencepiece",
    "setuptools",
    "six",
    "sympy",
    "tabulate",
    "threadpoolctl",
    "tqdm",
    "typer",
    "typing-extensions",
    "urllib3",
    "xxhash",
    "yarl",
    "zipp",
    "markdown-it-py",
    "mdurl",
    "pygments",
    "shellingham",
    "annotated-doc",
    "typing-inspect",
    "mypy-extensions",
    "wrapt",
    "absl-py",
}
PLATFORMS = [
    "manylinux_2_39_x86_64",
    "manylinux_2_35_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
TARGET = [
    "--only-binary=:all:",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    *[f"--platform={p}" for p in PLATFORMS],
]


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def pip(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"pip {args[0]} failed:\n{done.stderr[-3000:]}")
    return done


def resolve(built: Path, work: Path) -> dict[str, str]:
    """name -> version of everything the wanted packages need on the device's platform."""
    constraints = work / "device.txt"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in DEVICE_VERSIONS.items()))
    report = work / "report.json"
    pip(
        "install",
        "--dry-run",
        "--ignore-installed",
        "--report",
        str(report),
        "--use-feature=fast-deps",
        "--find-links",
        str(built),
        *TARGET,
        "--target",
        str(work / "target"),
        "-c",
        str(constraints),
        *WANTED,
    )
    return {
        canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / ".gpu-wheels")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(tmp) / "built"
        pip(
            "wheel",
            "--no-deps",
            "--no-binary",
            ",".join(p.split("==")[0] for p in SOURCE_ONLY),
            "--wheel-dir",
            str(built),
            *SOURCE_ONLY,
        )
        needed = {
            name: version
            for name, version in resolve(built, Path(tmp)).items()
            if name not in DEVICE_HAS and not name.startswith(("nvidia-", "cuda-"))
        }
        for old in args.out.glob("*.whl"):
            old.unlink()
        for wheel in built.glob("*.whl"):
            if canonical(wheel.name.split("-")[0]) in needed:
                wheel.rename(args.out / wheel.name)
        have = {canonical(w.name.split("-")[0]) for w in args.out.glob("*.whl")}
        missing = [f"{name}=={version}" for name, version in sorted(needed.items()) if name not in have]
        if missing:
            pip("download", "--no-deps", *TARGET, "-d", str(args.out), *missing)
    wheels = sorted(args.out.glob("*.whl"))
    (args.out / "resolved.txt").write_text("".join(f"{name}=={version}\n" for name, version in sorted(needed.items())))
    total = sum(w.stat().st_size for w in wheels)
    for wheel in wheels:
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {args.out} (the device tool carries <= 64 MiB per call)")


if __name__ == "__main__":
    main()
