"""Fetch, here (with PyPI), the wheels that benchmarks/gpu_smoke.py needs on a bare CUDA machine.

`make gpu-smoke-wheels` runs it; the wheels land in .gpu-wheels/ (git-ignored), one version per
package, for CPython 3.12 on manylinux x86_64. What the GPU machine already has is left out: it
ships torch (CUDA 13), triton, accelerate, numpy, pandas, pyarrow and more (DEVICE_HAS, as its image
lists them), but none of DeepSpeed, TRL, lm-eval, bitsandbytes, Liger, and an older transformers
(5.17) and tokenizers than the train env pins.

What is carried: the env files' own pins (CARRIED: transformers, tokenizers, TRL, DeepSpeed, Liger,
bitsandbytes, datasets from envs/train.yaml; lm-eval from envs/eval.yaml), so the smoke test's
steps import the versions the grid's jobs do (gpu_smoke.py's `versions` step checks it), and what
they need that the machine lacks. torch stays the machine's (2.11; the envs pin 2.13/2.14, far too
big to carry), and so does accelerate (1.15.0, the pin).

How: the packages are resolved for that platform, with the device's own versions of what it keeps
held fixed (so that nothing else it has is replaced), then what it lacks is downloaded without
dependencies. Source-only packages (deepspeed, lm-eval's sqlitedict, rouge-score, word2number) are
built here into pure-Python wheels first. bitsandbytes' wheel (41 MiB) carries native libraries for
CUDA 11.8 to 13.x, ROCm and XPU; only the device's CUDA major (13, what its torch is built on) and the
CPU one are kept (bitsandbytes picks the closest library of torch's CUDA major), which brings the set
under the device tool's limit. Prints the set and its weight beside the working tree's: the device
tool carries at most 64 MiB per call, the working tree included.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# What the smoke test's steps import at the grid's versions: env file -> packages, pinned there.
CARRIED = {
    "train": ["transformers", "tokenizers", "trl", "deepspeed", "liger-kernel", "bitsandbytes", "datasets"],
    "eval": ["lm-eval"],
}
SOURCE_ONLY = ["deepspeed==0.19.8", "sqlitedict==2.1.0", "rouge-score==0.1.2", "word2number==1.1"]
# The GPU machine's image, as listed for it (versions where known): held fixed in the resolution.
# Not torch: its 2.11.0 pins an NCCL wheel PyPI no longer serves. torch, triton and the CUDA
# libraries are on the device, so whatever the resolution picks for them is not fetched. Its
# transformers 5.17.0 and tokenizers 0.23.2 are not held: the carried pins replace them.
DEVICE_VERSIONS = {
    "accelerate": "1.15.0",
    "numpy": "2.5.2",
    "safetensors": "0.8.0",
    "huggingface-hub": "1.33.0",
}
# The CUDA major version the device's torch is built on: the bitsandbytes libraries kept.
DEVICE_CUDA_MAJOR = 13
# bitsandbytes ships one native library per CUDA / ROCm / XPU version (~34 of its 41 MiB are for
# other CUDA majors, ROCm and XPU); those of the device's CUDA major and the CPU one are kept.
NATIVE_LIBRARY = re.compile(r"bitsandbytes/libbitsandbytes_(cuda|rocm|xpu)(\d+)\.so")
DEVICE_TOOL_LIMIT_MIB = 64
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


def env_pins(env: str) -> dict[str, str]:
    """canonical name -> version of an env file's `==` pins (extras dropped: lm-eval[ifeval])."""
    dependencies = yaml.safe_load((REPO / "envs" / f"{env}.yaml").read_text())["dependencies"]
    (pip_list,) = [d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d]
    pins = {}
    for line in pip_list:
        name, version = line.split("==")
        pins[canonical(name.split("[")[0])] = version
    return pins


def carried_pins() -> dict[str, str]:
    """What the smoke test carries at the env files' versions (CARRIED)."""
    return {name: env_pins(env)[name] for env, names in CARRIED.items() for name in names}


def pip(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--quiet", "--disable-pip-version-check"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"pip {args[0]} failed:\n{done.stderr[-3000:]}")
    return done


def resolve(built: Path, work: Path) -> dict[str, str]:
    """name -> version of everything the carried packages need on the device's platform."""
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
        *[f"{name}=={version}" for name, version in carried_pins().items()],
    )
    return {
        canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]
    }


def dropped(member: str) -> bool:
    """A native library for another accelerator than the device's (NATIVE_LIBRARY)."""
    match = NATIVE_LIBRARY.fullmatch(member)
    return bool(match) and not (match[1] == "cuda" and match[2].startswith(str(DEVICE_CUDA_MAJOR)))


def slim(wheel: Path) -> int:
    """Rewrite a wheel without its dropped members, its RECORD without their lines; bytes saved."""
    before = wheel.stat().st_size
    slimmed = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(slimmed, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if dropped(info.filename):
                continue
            data = source.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not dropped(line.split(",", 1)[0])).encode()
            target.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    slimmed.replace(wheel)
    return before - wheel.stat().st_size


def working_tree_bytes() -> int:
    """What the device tool carries besides the wheels: the checkout's tracked files."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True)
    return sum((REPO / name).stat().st_size for name in listed.stdout.split("\0") if name and (REPO / name).is_file())


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
    saved = {wheel.name: slim(wheel) for wheel in args.out.glob("bitsandbytes-*.whl")}
    wheels = sorted(args.out.glob("*.whl"))
    (args.out / "resolved.txt").write_text("".join(f"{name}=={version}\n" for name, version in sorted(needed.items())))
    total = sum(w.stat().st_size for w in wheels)
    for wheel in wheels:
        note = (
            f"  (CUDA {DEVICE_CUDA_MAJOR} and CPU libraries only; {saved[wheel.name] / 2**20:.1f} MiB of others left out)"
            if saved.get(wheel.name)
            else ""
        )
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}{note}")
    tree = working_tree_bytes()
    print(
        f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in {args.out}; with the working tree "
        f"({tree / 2**20:.1f} MiB) {(total + tree) / 2**20:.1f} MiB of the {DEVICE_TOOL_LIMIT_MIB} MiB "
        "the device tool carries per call"
    )
    if total + tree > DEVICE_TOOL_LIMIT_MIB * 2**20:
        raise SystemExit(f"over the device tool's {DEVICE_TOOL_LIMIT_MIB} MiB: it would not carry .gpu-wheels")


if __name__ == "__main__":
    main()
