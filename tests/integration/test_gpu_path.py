"""The GPU code path's guards, as far as a CPU can run them (the GPU run itself: benchmarks/gpu_smoke.py).

- evaluation: CUDA is queried through NVML, set before torch is imported (vLLM's engine forks);
- a train job that asks for GPUs and sees none stops at once, with one line, before any rank starts;
- a library's error inside a step keeps its traceback in the job log, with the one line last;
- cluster_check fails when torch cannot use the GPUs the rule asked for;
- the chat template date and vLLM's seed / attention backend reach lm-eval's model arguments.
- the GPU smoke script plans the grid's own steps (train on one or two ranks, convert, generate, score)
  with the study's settings, and reports a carried package that is not the one imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
import yaml

from tests.support import one_cell
from tests.support.workflow import REPO, snakemake
from workflow_scripts.lib import evaluation, runtime
from workflow_scripts.steps import cluster_check

DATE = "26 Jul 2024"

# Runs a step as `python -m` does and reports the environment at the moment torch is first imported.
TORCH_IMPORT_SPY = """
import importlib.abc, json, os, runpy, sys

class FirstTorchImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("AT_TORCH_IMPORT " + json.dumps({k: os.environ.get(k) for k in
                  ("PYTORCH_NVML_BASED_CUDA_CHECK", "VLLM_WORKER_MULTIPROC_METHOD")}), flush=True)
            os._exit(0)
        return None

sys.meta_path.insert(0, FirstTorchImport())
module = sys.argv[1]
sys.argv = [module, *sys.argv[2:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def test_evaluation_makes_cuda_detection_fork_safe_before_torch_is_imported(tiny_model, arc_bins, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTORCH_NVML_BASED_CUDA_CHECK", "VLLM_WORKER_MULTIPROC_METHOD")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            TORCH_IMPORT_SPY,
            "tests.support.one_cell",
            *one_cell.cell_arguments(
                "cross_difficulty_arc",
                arc_bins / "bin-0.parquet",
                tiny_model,
                tmp_path / "c.json",
                backend="vllm",
                dtype="float32",
                batch_size=1,
                seed=42,
            ),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = [line for line in result.stdout.splitlines() if line.startswith("AT_TORCH_IMPORT ")]
    assert seen, f"torch was never imported:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    environment = json.loads(seen[0].split(" ", 1)[1])
    # Either makes vLLM's fork of its engine process safe; NVML keeps the faster fork.
    assert environment["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1" or environment["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"


# ---- what a failing job leaves in its log ---------------------------------------------------------


@pytest.fixture(scope="module")
def failing_jobs(tiny_model, tmp_path_factory):
    """One demo run with a train job that asks for 2 GPUs on this GPU-less machine, and a base-model
    cell whose model config names an activation transformers does not have."""
    workdir = tmp_path_factory.mktemp("failing")
    broken = workdir / "broken-model"
    shutil.copytree(tiny_model, broken)
    model_config = json.loads((broken / "config.json").read_text())
    model_config["hidden_act"] = "no_such_activation"
    (broken / "config.json").write_text(json.dumps(model_config))
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["models"]["tiny-qwen2"]["path"] = str(broken)
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    config["resources"]["train"]["gpu"] = 2
    (workdir / "failing.yaml").write_text(yaml.safe_dump(config))
    targets = [
        "results/demo/models/tiny-qwen2/arc/train-0/zero",
        "results/demo/cells/tiny-qwen2/arc/train-base/test-0.json",
    ]
    result = snakemake(
        "--configfile",
        str(workdir / "failing.yaml"),
        "--cores",
        "2",
        "--keep-going",
        *targets,
        workdir=workdir,
        check=False,
        timeout=900,
        env_extra={"CUDA_VISIBLE_DEVICES": "0,1"},
    )
    assert result.returncode != 0
    return workdir


def test_train_job_asking_for_gpus_on_a_machine_without_stops_at_once(failing_jobs):
    log = (failing_jobs / "results/demo/logs/train/tiny-qwen2/arc/train-0.log").read_text()
    lines = log.strip().splitlines()
    assert lines[-1].startswith("error: resources.train.gpu is 2 but torch ") and "sees 0 CUDA device(s)" in lines[-1]
    assert "CUDA_VISIBLE_DEVICES='0,1'" in lines[-1] and "fix: " in lines[-1]
    # Before any rank: accelerate never started, nothing was written, no traceback.
    assert "Traceback" not in log and "accelerate" not in log.lower()
    assert not (failing_jobs / "results/demo/work").exists()


def test_library_error_keeps_its_traceback_above_one_last_line(failing_jobs):
    log = (failing_jobs / "results/demo/logs/generate/tiny-qwen2/arc/train-base.log").read_text()
    lines = log.strip().splitlines()
    assert "Traceback (most recent call last):" in log
    assert "transformers/activations.py" in log  # where it was raised, not only what
    assert lines[-1] == "error: KeyError in transformers (traceback above): no_such_activation"
    # The job's JIT and compile caches: under results_dir/cache (config cache_dir), not $HOME.
    cache = failing_jobs / "results/demo/cache"
    assert lines[0] == (
        f"caches: VLLM_CACHE_ROOT={cache}/vllm, TRITON_CACHE_DIR={cache}/triton, "
        f"FLASHINFER_WORKSPACE_BASE={cache}/flashinfer, CUDA_CACHE_PATH={cache}/nv-compute-cache"
    )
    assert not (failing_jobs / "results/demo/cells/tiny-qwen2/arc/train-base/test-0.json").exists()


def test_own_input_errors_stay_one_line(tmp_path, capsys, arc_bins):
    """Our own checks' messages name the field and the fix: no traceback above them."""
    with pytest.raises(SystemExit):
        one_cell.main(
            one_cell.cell_arguments(
                "cross_difficulty_nope",
                str(arc_bins / "bin-0.parquet"),
                "m",
                tmp_path / "c.json",
                backend="hf",
                dtype="float32",
                batch_size=1,
                seed=42,
            )
        )
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: task 'cross_difficulty_nope'")


# ---- cluster_check and lm-eval's model arguments ---------------------------------------------------


def test_cluster_check_fails_when_torch_cannot_use_the_gpus(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv(runtime.DUMMY_GPUS_VARIABLE, raising=False)
    out = tmp_path / "train.json"
    with pytest.raises(SystemExit):
        cluster_check.main(["--rule", "train", "--expected-gpus", "2", "--out", str(out)])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: rule train: torch ") and "sees 0 CUDA device(s), not 2" in last and "fix: " in last
    assert not out.exists()
    # On a test cluster with dummy GRES devices the report is written, with a warning.
    monkeypatch.setenv(runtime.DUMMY_GPUS_VARIABLE, "1")
    cluster_check.main(["--rule", "train", "--expected-gpus", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["visible_gpus"] == 2 and report["torch_device_count"] == 0 and report["nvidia_smi"]


def test_vllm_arguments_on_gpus(monkeypatch):
    # No GPU here: the device count is the one thing replaced.
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    name, args = evaluation.model_spec(
        "vllm", "m", "bfloat16", False, seed=42, chat_template_date=DATE, attention_backend="TRITON_ATTN"
    )
    assert name == "vllm"
    assert args == {
        "pretrained": "m",
        "dtype": "bfloat16",
        "trust_remote_code": False,
        "seed": 42,
        "chat_template_args": {"date_string": DATE},
        "tensor_parallel_size": 1,
        "attention_backend": "TRITON_ATTN",
    }


def test_vllm_without_gpu_or_cpu_build_is_one_line(monkeypatch):
    monkeypatch.setattr(runtime, "vllm_build", lambda: None)
    with pytest.raises(ValueError, match="no CUDA device is visible and the installed vLLM .none. is not a CPU build"):
        evaluation.model_spec("vllm", "m", "bfloat16", False, 42)


def test_chat_template_date_reaches_lm_eval_prompts(tiny_llama):
    import lm_eval.models  # noqa: F401  (registers the backends)
    from lm_eval.api.registry import get_model

    name, args = evaluation.model_spec("hf", str(tiny_llama), "float32", False, 42, chat_template_date=DATE)
    model = get_model(name)(**args)
    prompt = model.apply_chat_template([{"role": "user", "content": "Q"}], add_generation_prompt=True)
    assert f"Today Date: {DATE}\n" in prompt
    # Without it, the template prints the day it runs (what the setting prevents).
    today = time.strftime("%d %b %Y")
    unpinned = get_model(name)(**{k: v for k, v in args.items() if k != "chat_template_args"})
    assert f"Today Date: {today}\n" in unpinned.apply_chat_template(
        [{"role": "user", "content": "Q"}], add_generation_prompt=True
    )


# ---- the GPU smoke script's plumbing --------------------------------------------------------------


SMOKE_STEPS = [
    "fork",
    "fork-control",
    "versions",
    "train-llama3",
    "convert-llama3",
    "train-qwen2",
    "convert-qwen2",
    *[
        f"{kind}-{engine}-{dataset}"
        for engine in ("hf", "vllm", "vllm-tp2")  # vllm-tp2: a large model's generate job, on two GPUs
        for dataset in ("arc", "gsm8k")
        for kind in ("generate", "score")
    ],
]


def smoke_dry_run(out, *options) -> tuple[str, dict[str, dict]]:
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_smoke.py", "--dry-run", "--out", str(out), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    steps = {s["step"]: s for s in map(json.loads, (l for l in result.stdout.splitlines() if l.startswith("{")))}
    return result.stdout, steps


def option(command: list[str], name: str, count: int = 1):
    """The value(s) after the first `name` in a command."""
    at = command.index(name)
    return command[at + 1] if count == 1 else command[at + 1 : at + 1 + count]


def every(command: list[str], name: str, count: int) -> list[list[str]]:
    return [command[i + 1 : i + 1 + count] for i, word in enumerate(command) if word == name]


# The dry-run on this GPU-less machine plans one rank; `--gpus 2` plans what a two-GPU machine runs.
@pytest.mark.parametrize("gpus, ranks", [(None, 1), ("2", 2)], ids=["auto-here", "two-gpus"])
def test_gpu_smoke_plans_the_grid_steps_with_the_study_settings(tmp_path, monkeypatch, gpus, ranks):
    from workflow_scripts.lib import task_parts
    from workflow_scripts.steps import training

    stdout, steps = smoke_dry_run(tmp_path, *(["--gpus", gpus] if gpus else []))
    assert f"training ranks: {ranks} (" in stdout
    assert list(steps) == SMOKE_STEPS
    # The grid's steps only: no per-cell evaluation.
    assert not any("one_cell" in s["command"] for s in steps.values())
    train_options = set(re.findall(r"--[a-z-]+", (REPO / "rules/train.smk").read_text().split("rule convert")[0]))
    for style in ("llama3", "qwen2"):
        step = steps[f"train-{style}"]
        train = step["command"]
        assert step["gpus"] == ranks and option(train, "--gpus") == option(train, "--num-processes") == str(ranks)
        assert option(train, "--accelerate-config").endswith("config/accelerate/zero3_gpu.yaml")
        settings = json.loads(option(train, "--settings"))
        assert (settings["optim"], settings["use_liger_kernel"], settings["bf16"]) == ("paged_adamw_8bit", True, True)
        assert (settings["learning_rate"], settings["max_grad_norm"], settings["seed"]) == (5e-6, 0.1, 42)
        assert settings["chat_template_date"] == DATE
        assert settings["system_prompt"] == (
            "" if style == "llama3" else "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
        )
        # Only options rule train passes too, and the training step's own parser takes them (an
        # option added there later with a default changes neither).
        assert set(w for w in train if w.startswith("--")) <= train_options
        seen = []
        monkeypatch.setattr(training, "launch", seen.append)
        training.main(train[train.index("launch") :])
        assert seen[0].num_processes == ranks
        assert steps[f"convert-{style}"]["gpus"] == 0  # a CPU job on the grid
    for name, engine, gpus in (("hf", "hf", 1), ("vllm", "vllm", 1), ("vllm-tp2", "vllm", 2)):
        for dataset in ("arc", "gsm8k"):
            generate = steps[f"generate-{name}-{dataset}"]
            score = steps[f"score-{name}-{dataset}"]
            command = generate["command"]
            assert command[1:3] == ["-m", "workflow_scripts.steps.generation"] and generate["gpus"] == gpus
            # As rule generate passes it: vLLM's tensor_parallel_size, the GPUs the job sees.
            assert option(command, "--gpus") == str(gpus)
            assert option(command, "--task") == f"cross_difficulty_{dataset}"
            assert option(command, "--task-fingerprint") == task_parts.generation_fingerprint(
                f"cross_difficulty_{dataset}"
            )
            bins = every(command, "--bin", 3)
            assert [b[0] for b in bins] == ["0", "1", "2"]  # every test bin in one run, as a row's job
            assert option(command, "--model") == str(tmp_path / "hf-llama3")
            assert (option(command, "--backend"), option(command, "--dtype")) == (engine, "bfloat16")
            assert (option(command, "--batch-size"), option(command, "--seed")) == ("auto", "42")
            assert option(command, "--chat-template-date") == DATE
            assert ("--attention-backend" in command) == (engine == "vllm")
            if engine == "vllm":
                assert option(command, "--attention-backend") == "TRITON_ATTN"
            command = score["command"]
            assert command[1:3] == ["-m", "workflow_scripts.steps.scoring"] and score["gpus"] == 0
            cells = every(command, "--cell", 4)
            # Scores exactly what generate wrote, bin by bin, with the base model's tokenizer.
            assert [c[:3] for c in cells] == bins
            assert option(command, "--tokenizer") == str(tmp_path / "base-llama3")
            label = json.loads(option(command, "--label"))
            assert (label["model"], label["dataset"], label["train_bin"], label["seed"]) == (
                "tiny-llama3",
                dataset,
                0,
                42,
            )
    # The inputs it built: head_dim 64 models (vLLM's CPU and GPU kernels take it), one untied, with a
    # head for each of two tensor-parallel GPUs.
    llama = json.loads((tmp_path / "base-llama3/config.json").read_text())
    assert llama["hidden_size"] // llama["num_attention_heads"] == 64 and not llama["tie_word_embeddings"]
    assert llama["num_attention_heads"] == 2


def test_gpu_smoke_versions_reports_what_the_private_site_shadows(tmp_path):
    """A package on PYTHONPATH wins over the interpreter's own; one not at its env-file pin fails the step."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_smoke_wheels
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    pins = gpu_smoke_wheels.carried_pins()
    assert pins["transformers"] == "5.23.0" and pins["tokenizers"] == "0.23.3" and pins["lm-eval"] == "0.4.13"
    site = tmp_path / "site"
    for package, dist, version in (("trl", "trl", pins["trl"]), ("bitsandbytes", "bitsandbytes", "0.0.1")):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text(f"__version__ = {version!r}\n")
        (site / f"{dist}-{version}.dist-info").mkdir()
        (site / f"{dist}-{version}.dist-info" / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        )
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_smoke.py", "versions"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])},
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 1
    assert report["imported"]["trl"] == {"version": pins["trl"], "from": "private site", "path": str(site)}
    assert report["imported"]["transformers"]["from"] == "machine"
    assert report["pinned_vs_imported"]["bitsandbytes"] == [pins["bitsandbytes"], "0.0.1"]
    assert "trl" not in report["pinned_vs_imported"] and "transformers" not in report["pinned_vs_imported"]


def test_gpu_smoke_wheels_keep_only_the_devices_cuda_libraries(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_smoke_wheels
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    names = [
        f"bitsandbytes/libbitsandbytes_{kind}.so"
        for kind in ("cpu", "cuda118", "cuda128", "cuda130", "cuda132", "rocm72", "xpu2026")
    ]
    names += ["bitsandbytes/__init__.py"]
    wheel = tmp_path / "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    record = "".join(f"{name},sha256=x,1\n" for name in names) + "bitsandbytes-0.50.2.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in names:
            archive.writestr(name, b"x" * 1000)
        archive.writestr("bitsandbytes-0.50.2.dist-info/RECORD", record)
    assert gpu_smoke_wheels.slim(wheel) > 0
    kept = [
        "bitsandbytes/libbitsandbytes_cpu.so",
        "bitsandbytes/libbitsandbytes_cuda130.so",
        "bitsandbytes/libbitsandbytes_cuda132.so",
        "bitsandbytes/__init__.py",
    ]
    with zipfile.ZipFile(wheel) as archive:
        assert archive.namelist() == kept + ["bitsandbytes-0.50.2.dist-info/RECORD"]
        listed = [
            line.split(",")[0] for line in archive.read("bitsandbytes-0.50.2.dist-info/RECORD").decode().splitlines()
        ]
    assert listed == kept + ["bitsandbytes-0.50.2.dist-info/RECORD"]


@pytest.mark.parametrize("device, works", [("cpu", True), ("meta-nonsense", False)])
def test_gpu_smoke_fork_check_reports_what_the_child_saw(device, works):
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_smoke.py", "fork-check", "--device", device],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["nvml_check"] == "1" and (result.returncode == 0) == works
    assert (seen["child"] == "ok") == works and (works or "RuntimeError" in seen["child"])
