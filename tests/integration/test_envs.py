"""The per-rule conda envs (envs/*.yaml) install on the cluster: a pin that cannot install fails here.

Approach. Each env's pip list is resolved against PyPI as the cluster will see it, with nothing
installed: `pip install --dry-run --ignore-installed --report` with `--only-binary=:all:`,
`--implementation cp`, `--python-version` from the env's `python=X.Y`, and one `--platform` per
manylinux tag a Linux x86_64 node with glibc >= GLIBC_FLOOR accepts (pip does not expand
`manylinux_2_31_x86_64` to the older tags itself). Then every pin must resolve to exactly its version.
- Source-only packages (no wheel on PyPI: deepspeed, langdetect, lm-eval's sqlitedict, rouge-score,
  word2number) cannot be resolved under `--platform`. They are pure Python, so their wheels are built
  first with `pip wheel --no-deps` (asserted `py3-none-any`, so valid on any node) and handed to the
  resolver with `--find-links`: the wheel pip builds on the cluster.
- This index has no PEP 658 metadata files, so plain pip downloads every wheel to read its metadata
  (~3 GB for the train env, each run: nothing is cached). `--use-feature=fast-deps` reads only the
  metadata through HTTP range requests (~35 MB).
- `PIP_CONFIG_FILE=/dev/null` and no `PIP_*` variables but TLS and timeout ones: a local pip config
  (a torch cap, find-links with a CPU torch wheel) must not change what the cluster would get.
- pip evaluates environment markers for the interpreter running it, so the test runs only where that
  is CPython X.Y on Linux x86_64 (the test venv, Python 3.11) and skips elsewhere, and when PyPI is
  unreachable (probed first), with the reason.
Measured on the shared 2-core dev machine (pip 26.3, load average ~8): one after another, data 7 s,
report 7 s, train 24 s (97 packages), eval 57 s (237 packages), 95 s in all; concurrently, as here,
70 s; the source-only wheels 1.5 s from pip's wheel cache (16 s for deepspeed without it). The whole
module: 26 tests in about 2 min. A site can check its own glibc: `CLUSTER_GLIBC=2.28 pytest
tests/integration/test_envs.py` (that one fails: vllm's llguidance ships manylinux_2_31 wheels only).
The conda part of each env (python, pip, the GPU envs' C compiler) is checked statically: exact pins,
and a C compiler in both GPU envs for Triton; conda-forge is not reachable from the dev machine.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import re
import ssl
import subprocess
import sys
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
INDEX_URL = os.environ.get("ENVS_INDEX_URL", "https://pypi.org/simple")
GLIBC_FLOOR = tuple(int(part) for part in os.environ.get("CLUSTER_GLIBC", "2.31").split("."))
# Packages PyPI ships as source only; an env that needs one pins it (see the module docstring).
SOURCE_ONLY = {"deepspeed", "langdetect", "sqlitedict", "rouge-score", "word2number"}
# Envs whose rules run on B200s: their torch must be a CUDA >= 12.8 build (first with sm_100 kernels).
GPU_ENVS = {"train", "eval"}
# What a rule needs without an `import` the AST can see: accelerate is started as `python -m
# accelerate.commands.launch`, DeepSpeed, Liger and bitsandbytes are switched on by names in the
# trainer's settings, and lm-eval imports vllm for `--model vllm`.
RUNTIME_ONLY = {"train": {"accelerate", "deepspeed", "liger-kernel", "bitsandbytes"}, "eval": {"vllm"}}
# Import names that differ from their distribution's name.
IMPORT_TO_DIST = {"yaml": "pyyaml", "lm_eval": "lm-eval", "math_verify": "math-verify", "sklearn": "scikit-learn"}
# tasks/utils.py is loaded by file (by lm-eval and by the evaluation step), not imported.
LOADED_BY_FILE = {"lib.evaluation": [REPO / "tasks" / "utils.py"]}
# pip's variables that carry TLS and network settings, not package choices; the rest are dropped.
PIP_VARIABLES_KEPT = {"PIP_CERT", "PIP_CLIENT_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES", "PIP_PROXY", "PIP_CACHE_DIR"}


@dataclass(frozen=True)
class CondaEnv:
    name: str  # envs/<name>.yaml
    python: str  # "3.11"
    pins: tuple[Requirement, ...]


def read_env(path: Path) -> CondaEnv:
    spec = yaml.safe_load(path.read_text())
    dependencies = spec["dependencies"]
    pythons = [d for d in dependencies if isinstance(d, str) and re.fullmatch(r"python=\d+\.\d+", d)]
    pip_lists = [d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d]
    assert len(pythons) == 1, f"{path.name}: needs exactly one `- python=X.Y` (found {pythons})"
    assert len(pip_lists) == 1, f"{path.name}: needs exactly one `- pip:` list"
    return CondaEnv(path.stem, pythons[0].split("=")[1], tuple(Requirement(line) for line in pip_lists[0]))


def pinned_version(requirement: Requirement) -> str:
    (specifier,) = requirement.specifier
    return specifier.version


def manylinux_platforms(glibc: tuple[int, int]) -> list[str]:
    """Every manylinux tag a glibc-`glibc` x86_64 node accepts, newest first, legacy aliases last."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014_x86_64", 12: "manylinux2010_x86_64", 5: "manylinux1_x86_64"}
    return tags + [alias for since, alias in legacy.items() if minor >= since]


def pip_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in PIP_VARIABLES_KEPT}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def is_pure_wheel(filename: str) -> bool:
    return filename.endswith(("-py3-none-any.whl", "-py2.py3-none-any.whl"))


# ---- offline: the env files themselves ------------------------------------------------------------


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.stem)
def test_env_file_is_a_pinned_conda_env(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["name"] == f"cross-difficulty-{path.stem}"
    # nodefaults: recent conda stops on the defaults channel until its terms of service are accepted.
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    assert "pip" in spec["dependencies"], f"{path.name}: conda must install pip before the pip list"
    env = read_env(path)
    names = [canonicalize_name(r.name) for r in env.pins]
    assert len(names) == len(set(names)), f"{path.name}: a package is listed twice"
    for requirement in env.pins:
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", (
            f"{path.name}: `{requirement}` must be an exact `==` pin, so the cluster builds what the test resolved"
        )
        assert not requirement.marker and not requirement.url, f"{path.name}: `{requirement}`: plain pins only"
    # Conda packages beside python and pip: exact `name=version` pins too (not resolvable here).
    for package in conda_packages(path):
        assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*=\d+(\.\d+)+", package), (
            f"{path.name}: conda package `{package}` must be an exact `name=X.Y.Z` pin"
        )


def conda_packages(path: Path) -> list[str]:
    """The env's conda (not pip) packages other than python and pip."""
    dependencies = yaml.safe_load(path.read_text())["dependencies"]
    return [d for d in dependencies if isinstance(d, str) and d != "pip" and not d.startswith("python=")]


@pytest.mark.parametrize("name", sorted(GPU_ENVS))
def test_gpu_envs_carry_a_c_compiler(name):
    """Triton compiles C launcher stubs with the host's compiler (CC, else gcc/clang on PATH) the first
    time a kernel runs; compute nodes may have none. conda-forge's c-compiler puts gcc on PATH and
    gcc_linux-64's activation script sets CC (Snakemake activates envs with `source activate`, which
    runs it). Checked statically: conda-forge is not reachable from here."""
    pins = dict(package.split("=") for package in conda_packages(REPO / "envs" / f"{name}.yaml"))
    assert {"c-compiler", "gcc_linux-64"} <= set(pins), f"envs/{name}.yaml: no C compiler for Triton"
    # One compiler for both GPU envs.
    others = [dict(p.split("=") for p in conda_packages(REPO / "envs" / f"{o}.yaml")) for o in sorted(GPU_ENVS)]
    assert all(
        (o.get("c-compiler"), o.get("gcc_linux-64")) == (pins["c-compiler"], pins["gcc_linux-64"]) for o in others
    )


def rule_bodies(smk: Path) -> list[tuple[str, str]]:
    """(name, body) of every rule of a .smk file, those declared in a loop (`rule:` with `name:`) too."""
    found = []
    for indent, name, body in re.findall(r"^( *)rule(?: (\w+))?:\n((?:\1[ \t]+.*\n|\n)*)", smk.read_text(), re.M):
        if not name:
            named = re.search(r"^\s+name:\s*\n\s+(.+)$", body, re.M)
            name = named.group(1).strip() if named else "(unnamed)"
        found.append((name, body))
    return found


def test_every_env_file_is_used_by_a_rule_and_every_rule_has_one():
    used = set()
    for smk in (REPO / "rules").glob("*.smk"):
        for rule, body in rule_bodies(smk):
            if not re.search(r"^\s+(shell|script|run|notebook|wrapper):", body, re.M):
                continue  # a target that only collects inputs (e.g. cluster_check) runs nothing
            envs = re.findall(r'conda:\s*\n\s*"\.\./envs/(\w+)\.yaml"', body)
            if not envs and re.search(r"conda:\s*\n\s*conda_env$", body, re.M):
                continue  # cluster_check_*: the env of the rule it checks (rules/cluster.smk)
            assert len(envs) == 1, f"{smk.name}: rule {rule} needs one `conda:` env from envs/"
            used.add(envs[0])
    assert used == {path.stem for path in ENV_FILES}


def _rule_envs_and_steps() -> list[tuple[str, str, str]]:
    """(rule, env, workflow_scripts module) for every rule that runs a step."""
    found = []
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for rule, body in rule_bodies(smk):
            env = re.search(r'conda:\s*\n\s*"\.\./envs/(\w+)\.yaml"', body)
            step = re.search(r"python -m workflow_scripts\.(\w+\.\w+)", body)
            if env and step:
                found.append((rule, env.group(1), step.group(1)))
    return found


def _third_party_imports(module: str) -> set[str]:
    """Top-level third-party names imported by a workflow step and the workflow modules it imports,
    function-level imports included (the heavy ones live there)."""
    seen, pending, names = (
        set(),
        [REPO / "workflow_scripts" / f"{module.replace('.', '/')}.py", *LOADED_BY_FILE.get(module, [])],
        set(),
    )
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for full in modules:
                top, _, rest = full.partition(".")
                if top == "workflow_scripts":
                    candidate = REPO / "workflow_scripts" / f"{rest.replace('.', '/')}.py"
                    if rest and candidate.exists():
                        pending.append(candidate)
                elif top not in sys.stdlib_module_names:
                    names.add(top)
    return names


@pytest.mark.parametrize("rule,env_name,module", _rule_envs_and_steps(), ids=lambda v: str(v))
def test_each_rule_env_pins_what_its_step_imports(rule, env_name, module):
    env = read_env(REPO / "envs" / f"{env_name}.yaml")
    pinned = {canonicalize_name(r.name) for r in env.pins}
    needed = {canonicalize_name(IMPORT_TO_DIST.get(name, name)) for name in _third_party_imports(module)}
    needed |= RUNTIME_ONLY.get(env_name, set())
    assert needed <= pinned, (
        f"rule {rule} runs workflow_scripts.{module}: envs/{env_name}.yaml lacks pins for {sorted(needed - pinned)}"
    )


def test_the_import_scan_sees_function_level_imports():
    """The scan above would pass vacuously if it missed the lazy imports where torch & co. live."""
    assert {"torch", "transformers", "trl", "datasets", "pandas"} <= _third_party_imports("steps.training")
    assert {"lm_eval", "math_verify", "torch", "yaml", "datasets"} <= _third_party_imports("lib.evaluation")
    assert {"deepspeed", "torch", "transformers"} <= _third_party_imports("steps.conversion")


# ---- online: resolution against PyPI for the cluster -----------------------------------------------


@dataclass
class Resolution:
    returncode: int
    output: str
    report: dict | None
    seconds: float

    def versions(self) -> dict[str, str]:
        return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in self.report["install"]}


def _resolve(requirements: list[str], python: str, wheelhouse: Path, workdir: Path) -> Resolution:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "requirements.txt").write_text("\n".join(requirements) + "\n")
    report = workdir / "report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--report",
        str(report),
        "--use-feature=fast-deps",
        "--index-url",
        INDEX_URL,
        "--find-links",
        str(wheelhouse),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        *[f"--platform={tag}" for tag in manylinux_platforms(GLIBC_FLOOR)],
        "--target",
        str(workdir / "target"),
        "-r",
        str(workdir / "requirements.txt"),
    ]
    start = time.monotonic()
    result = subprocess.run(command, env=pip_environment(), capture_output=True, text=True, timeout=600)
    seconds = time.monotonic() - start
    loaded = json.loads(report.read_text()) if result.returncode == 0 else None
    return Resolution(result.returncode, result.stdout + result.stderr, loaded, seconds)


@pytest.fixture(scope="module")
def pypi():
    if sys.platform != "linux" or platform.machine() != "x86_64" or sys.implementation.name != "cpython":
        pytest.skip("pip evaluates markers for the interpreter running it: resolve on Linux x86_64 CPython")
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT"))
    try:
        urllib.request.urlopen(f"{INDEX_URL}/pip/", timeout=15, context=context).read(1)
    except OSError as error:
        pytest.skip(f"{INDEX_URL} is unreachable ({error}): cannot resolve the cluster envs here")
    return INDEX_URL


@pytest.fixture(scope="module")
def wheelhouse(pypi, tmp_path_factory) -> Path:
    """Wheels of the source-only pins, built once (pip's wheel cache makes reruns ~1 s)."""
    house = tmp_path_factory.mktemp("wheelhouse")
    pins = sorted(
        {str(r) for path in ENV_FILES for r in read_env(path).pins if canonicalize_name(r.name) in SOURCE_ONLY}
    )
    names = ",".join(sorted({Requirement(pin).name for pin in pins}))
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-binary",
        names,
        "--index-url",
        INDEX_URL,
        "--wheel-dir",
        str(house),
        *pins,
    ]
    result = subprocess.run(command, env=pip_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"building the source-only pins {pins} failed:\n{result.stderr[-4000:]}"
    built = sorted(p.name for p in house.glob("*.whl"))
    assert len(built) == len(pins), f"expected one wheel per source-only pin {pins}, got {built}"
    impure = [name for name in built if not is_pure_wheel(name)]
    assert not impure, f"{impure} built as platform wheels: the host's build says nothing about the cluster's"
    return house


@pytest.fixture(scope="module")
def resolutions(wheelhouse, tmp_path_factory) -> dict[str, Resolution]:
    """Every env resolved, concurrently (the time is spent waiting on the network), plus one env made
    to conflict on purpose: vllm 0.33.0 with the train env's torch, which vllm's `torch==2.14.0` rules out."""
    root = tmp_path_factory.mktemp("resolve")
    jobs = {env.name: ([str(r) for r in env.pins], env.python) for env in map(read_env, ENV_FILES)}
    jobs["conflict"] = (["vllm==0.33.0", "torch==2.13.0"], "3.11")
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {
            name: pool.submit(_resolve, reqs, python, wheelhouse, root / name) for name, (reqs, python) in jobs.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.stem)
def test_env_resolves_for_the_cluster_to_exactly_its_pins(path, resolutions):
    env = read_env(path)
    if sys.version_info[:2] != tuple(int(p) for p in env.python.split(".")):
        pytest.skip(
            f"envs/{path.name} is Python {env.python}; pip evaluates markers for this Python "
            f"{sys.version_info[0]}.{sys.version_info[1]}: run this test under {env.python}"
        )
    resolution = resolutions[env.name]
    assert resolution.returncode == 0, (
        f"envs/{path.name} does not install on Linux x86_64 / CPython {env.python} / glibc >= "
        f"{'.'.join(map(str, GLIBC_FLOOR))} (a package with no such wheel that is source only belongs "
        f"pinned in the env and in SOURCE_ONLY):\n{resolution.output[-6000:]}"
    )
    versions = resolution.versions()
    wrong = {
        r.name: (pinned_version(r), versions.get(canonicalize_name(r.name)))
        for r in env.pins
        if Version(versions.get(canonicalize_name(r.name), "0")) != Version(pinned_version(r))
    }
    assert not wrong, f"envs/{path.name}: pinned vs resolved {wrong}"
    for item in resolution.report["install"]:
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        assert filename.endswith(".whl"), f"{filename}: the cluster would build this from source"
        platforms = filename[:-4].split("-")[-1].split(".")
        assert platforms == ["any"] or set(platforms) & set(manylinux_platforms(GLIBC_FLOOR)), filename


def _cuda_runtime(versions: dict[str, str]) -> Version | None:
    """The CUDA runtime torch pulls in: nvidia-cuda-runtime (CUDA 13) or nvidia-cuda-runtime-cu12."""
    found = [Version(v) for name, v in versions.items() if re.fullmatch(r"nvidia-cuda-runtime(-cu\d+)?", name)]
    return max(found) if found else None


@pytest.mark.parametrize("name", sorted(GPU_ENVS))
def test_gpu_envs_get_a_torch_built_for_blackwell(name, resolutions):
    resolution = resolutions[name]
    if resolution.report is None:
        pytest.skip(f"envs/{name}.yaml did not resolve: test_env_resolves_for_the_cluster_to_exactly_its_pins says why")
    runtime = _cuda_runtime(resolution.versions())
    assert runtime is not None, f"envs/{name}.yaml: torch pulls in no CUDA runtime, a CPU build?"
    assert runtime >= Version("12.8"), (
        f"envs/{name}.yaml: torch is built on CUDA {runtime}; B200 (sm_100) needs >= 12.8"
    )


@pytest.mark.parametrize("name", ["data", "report"])
def test_cpu_envs_stay_without_torch(name, resolutions):
    resolution = resolutions[name]
    if resolution.report is None:
        pytest.skip(f"envs/{name}.yaml did not resolve: test_env_resolves_for_the_cluster_to_exactly_its_pins says why")
    heavy = {n for n in resolution.versions() if n == "torch" or n.startswith("nvidia-")}
    assert not heavy, f"envs/{name}.yaml pulls in {sorted(heavy)}: GBs on every CPU node for nothing"


def test_the_resolution_catches_pins_that_cannot_install_together(resolutions):
    """The check is not vacuous: vllm 0.33.0 requires torch==2.14.0, so adding torch 2.13.0 must fail."""
    conflict = resolutions["conflict"]
    assert conflict.returncode != 0
    assert "ResolutionImpossible" in conflict.output and "torch" in conflict.output


def test_the_built_wheels_carry_the_requirements_the_cluster_will_see(wheelhouse):
    """DeepSpeed built from source declares torch (so the resolver had to reconcile it with the pin)."""
    (deepspeed,) = wheelhouse.glob("deepspeed-*.whl")
    with zipfile.ZipFile(deepspeed) as wheel:
        metadata = next(wheel.read(n).decode() for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    requires = [
        Requirement(line.split(":", 1)[1]) for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    assert any(r.name == "torch" and not r.marker for r in requires)
