"""GPU smoke test: the workflow's GPU code paths on any one CUDA machine, in minutes, offline.

What the CPU tests cannot run, on a tiny model and one GPU, through the workflow's own steps:
  1. fork     CUDA queried the way the evaluation step queries it (NVML-based, set before torch is
              imported), then fork, then CUDA used in the child: what vLLM's engine start does. A
              control run without the setting shows the failure it prevents (reported, not judged).
  2. train    `workflow_scripts.training launch --gpus 1`: accelerate + DeepSpeed ZeRO-3 over NCCL,
              bf16, Liger kernels, paged 8-bit AdamW: the study's settings from config/config.yaml
              (1 epoch, short sequences). Twice: a Llama-3-style model (untied head, like the 7B/8B/14B
              models) and a Qwen2-style one (tied embeddings, like Qwen2.5-1.5B/3B).
  3. convert  `workflow_scripts.conversion` of each ZeRO checkpoint to bf16 (it checks the probe logits).
  4. eval-hf  `workflow_scripts.evaluation --backend hf` on the GPU: an arc and a gsm8k cell.
  5. eval-vllm the same cells with `--backend vllm` and config's attention backend, where vLLM is
              installed (skipped otherwise), compared with the hf cells.
Each step runs as its own process with the workflow's job environment (caches under --out).
Prints one line per step (PASS / FAIL / SKIP, seconds, details) and writes summary.json; exits 1
if a step failed. `--dry-run` builds the inputs and prints the commands without running them (no GPU).

No network on the GPU machine: `make gpu-smoke-wheels` (here) fetches what it lacks into .gpu-wheels/,
`make gpu-smoke` (there) installs them into a private folder and runs this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workflow_scripts import evaluation, runtime  # noqa: E402  (no torch at import)

PACKAGES = (
    "torch",
    "transformers",
    "accelerate",
    "deepspeed",
    "trl",
    "lm_eval",
    "bitsandbytes",
    "liger_kernel",
    "vllm",
)
DATE = "26 Jul 2024"
STYLES = ("llama3", "qwen2")


def fork_check(device: str, nvml: bool) -> int:
    """Query CUDA as evaluation.model_spec does, fork, use the device in the child. Exit 0 if the child could."""
    if nvml:
        runtime.fork_safe_cuda_detection()
    import torch

    seen = {
        "is_available": torch.cuda.is_available(),
        "device_count": torch.cuda.device_count(),
        "nvml_check": os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK"),
    }
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            value = (torch.ones(4, device=device) * 2).sum().item()
            message = "ok" if value == 8.0 else f"wrong value {value}"
        except Exception as error:  # reported to the parent, whatever it is
            message = f"{type(error).__name__}: {error}"
        os.write(write_end, message.encode()[:4000])
        os._exit(0 if message == "ok" else 1)
    os.close(write_end)
    _, status = os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        seen["child"] = pipe.read()
    seen["child_exit"] = os.waitstatus_to_exitcode(status)
    print(json.dumps(seen))
    return 0 if seen["child"] == "ok" else 1


def study_settings() -> dict:
    """config/config.yaml's training defaults (the study's), cut to one epoch of short examples."""
    import yaml

    settings = dict(yaml.safe_load((REPO / "config/config.yaml").read_text())["training"])
    return {**settings, "epochs": 1, "max_length": 512, "chat_template_date": DATE}


def attention_backend() -> str | None:
    import yaml

    return yaml.safe_load((REPO / "config/config.yaml").read_text())["evaluation"].get("attention_backend")


def build_inputs(out: Path) -> dict:
    """Tiny models (head_dim 64, which vLLM's kernels accept) and 3-bin arc / gsm8k samples."""
    from workflow_scripts import binning, data, sample_data, tiny_model

    inputs = {"models": {}, "bins": {}}
    for style in STYLES:
        inputs["models"][style] = str(
            tiny_model.build(out / f"base-{style}", style=style, attention_heads=1, initializer_range=0.2)
        )
    for name in ("arc", "gsm8k"):
        folder = out / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        sample_data.GENERATORS[name](60).to_json(folder / f"{name}.jsonl", orient="records", lines=True)
        table = data.normalize(data.load_source({"path": str(folder / f"{name}.jsonl")}))
        for k, part in enumerate(binning.split_into_bins(table, 3, "1pl_quantile")):
            part.to_parquet(folder / f"bin-{k}.parquet")
        inputs["bins"][name] = str(folder / "bin-0.parquet")
    return inputs


def plan(out: Path, inputs: dict) -> list[dict]:
    """Every step: name, command, and what it leaves behind."""
    python = sys.executable
    steps = [
        {"name": "fork", "command": [python, __file__, "fork-check", "--device", "cuda"]},
        {
            "name": "fork-control",
            "command": [python, __file__, "fork-check", "--device", "cuda", "--without-nvml"],
            "control": True,
        },
    ]
    for style in STYLES:
        zero, hf = out / f"zero-{style}", out / f"hf-{style}"
        steps.append(
            {
                "name": f"train-{style}",
                "output": str(zero / "training.json"),
                "command": [
                    python,
                    "-m",
                    "workflow_scripts.training",
                    "launch",
                    "--model",
                    inputs["models"][style],
                    "--train-file",
                    inputs["bins"]["arc"],
                    "--prompt-format",
                    "arc",
                    "--output-dir",
                    str(zero),
                    "--work-dir",
                    str(out / f"work-{style}"),
                    "--settings",
                    json.dumps(study_settings(), sort_keys=True),
                    "--accelerate-config",
                    str(REPO / "config/accelerate/zero3_gpu.yaml"),
                    "--num-processes",
                    "1",
                    "--gpus",
                    "1",
                ],
            }
        )
        steps.append(
            {
                "name": f"convert-{style}",
                "output": str(hf / "config.json"),
                "command": [
                    python,
                    "-m",
                    "workflow_scripts.conversion",
                    "--zero-dir",
                    str(zero),
                    "--out-dir",
                    str(hf),
                    "--dtype",
                    "bfloat16",
                    "--max-shard-size",
                    "5GB",
                ],
            }
        )
    backend = attention_backend()
    for engine in ("hf", "vllm"):
        for task in ("arc", "gsm8k"):
            command = evaluation.cell_command(
                f"cross_difficulty_{task}",
                inputs["bins"][task],
                out / "hf-llama3",
                out / f"cell-{engine}-{task}.json",
                backend=engine,
                dtype="bfloat16",
                batch_size="auto",
                seed=42,
                python=python,
                max_gen_toks=32,
                chat_template_date=DATE,
                attention_backend=backend if engine == "vllm" else None,
            )
            steps.append(
                {
                    "name": f"eval-{engine}-{task}",
                    "output": str(out / f"cell-{engine}-{task}.json"),
                    "command": command,
                    "needs": "vllm" if engine == "vllm" else None,
                }
            )
    return steps


def installed() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            found[name] = None
    return found


def details(step: dict, result: subprocess.CompletedProcess) -> str:
    """What a passed step produced, in one line."""
    last_line = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if step["name"].startswith("fork"):
        return last_line
    if step["name"].startswith("convert"):  # its report is the last line it prints
        report = json.loads(last_line)
        return f"bf16 export; probe max |logit diff| vs the trained model {report.get('probe_max_abs_diff')}"
    output = json.loads(Path(step["output"]).read_text())
    if step["name"].startswith("train"):
        losses = [row["loss"] for row in output["loss_per_step"]]
        return (
            f"optimizer {output['optimizer']}, world size {output['world_size']}, {output['global_step']} steps, "
            f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, liger {output['settings']['use_liger_kernel']}"
        )
    return f"n {output['n']}, metrics {output['metrics']}, {output['eval_seconds']} s, attention {output.get('attention_backend')}"


def compare_engines(out: Path) -> dict:
    """vLLM against hf on the same bf16 model and bins: accuracy and log-likelihoods, greedy texts."""
    found = {}
    for task in ("arc", "gsm8k"):
        rows = {}
        for engine in ("hf", "vllm"):
            path = out / f"cell-{engine}-{task}.samples.jsonl"
            if not path.exists():
                return found
            rows[engine] = {r["item_id"]: r for r in map(json.loads, path.read_text().splitlines())}
        if task == "arc":
            diffs = [
                abs(a[0] - b[0])
                for item in rows["hf"]
                for a, b in zip(rows["hf"][item]["response,none"], rows["vllm"][item]["response,none"])
            ]
            found["arc_max_loglikelihood_diff"] = max(diffs)
        else:
            same = sum(rows["hf"][i]["raw_response"] == rows["vllm"][i]["raw_response"] for i in rows["hf"])
            found["gsm8k_identical_generations"] = f"{same}/{len(rows['hf'])}"
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    check = sub.add_parser("fork-check", help="one fork check (run by the smoke test in a fresh interpreter)")
    check.add_argument("--device", default="cuda")
    check.add_argument("--without-nvml", action="store_true", help="the control: plain cudaGetDeviceCount query")
    parser.add_argument("--out", type=Path, default=REPO / "results/gpu_smoke")
    parser.add_argument("--dry-run", action="store_true", help="build the inputs, print the commands, run nothing")
    parser.add_argument("--step-timeout", type=int, default=240, help="seconds per step")
    args = parser.parse_args(argv)
    if args.mode == "fork-check":
        return fork_check(args.device, nvml=not args.without_nvml)

    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    packages = installed()
    print(f"packages: {json.dumps(packages)}", flush=True)
    steps = plan(args.out, build_inputs(args.out))
    env = {
        **os.environ,
        **runtime.job_environment(str(args.out / "cache")),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    results = []
    for step in steps:
        if args.dry_run:
            print(json.dumps({"step": step["name"], "command": step["command"]}), flush=True)
            continue
        if step.get("needs") and not packages.get(step["needs"]):
            results.append(
                {"step": step["name"], "status": "SKIP", "seconds": 0, "details": f"{step['needs']} not installed"}
            )
        else:
            log = args.out / "logs" / f"{step['name']}.log"
            log.parent.mkdir(exist_ok=True)
            begun = time.time()
            try:
                result = subprocess.run(
                    step["command"], cwd=REPO, env=env, capture_output=True, text=True, timeout=args.step_timeout
                )
                log.write_text(result.stdout + result.stderr)
                passed = result.returncode == 0 and ("output" not in step or Path(step["output"]).exists())
                if step.get("control"):
                    status = "INFO"
                    what = "fork failed without the NVML check" if result.returncode else "fork worked even without it"
                    text = f"{what}: {result.stdout.strip()[-300:]}"
                else:
                    status = "PASS" if passed else "FAIL"
                    last = (result.stderr.strip().splitlines() or [""])[-1]
                    text = details(step, result) if passed else f"exit {result.returncode}: {last[-300:]} (log: {log})"
            except subprocess.TimeoutExpired:
                status, text = "FAIL", f"over {args.step_timeout} s (log: {log})"
            results.append(
                {"step": step["name"], "status": status, "seconds": round(time.time() - begun, 1), "details": text}
            )
        row = results[-1]
        print(f"{row['status']:5} {row['seconds']:6.1f} s  {row['step']:18} {row['details']}", flush=True)
    if args.dry_run:
        return 0
    summary = {
        "packages": packages,
        "steps": results,
        "engines": compare_engines(args.out),
        "total_seconds": round(time.time() - started, 1),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"engines: {json.dumps(summary['engines'])}")
    print(f"total {summary['total_seconds']} s; summary: {args.out / 'summary.json'}")
    return 1 if any(row["status"] == "FAIL" for row in results) else 0


if __name__ == "__main__":
    sys.exit(main())
