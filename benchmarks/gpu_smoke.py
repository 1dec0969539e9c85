"""GPU smoke test: the grid's GPU steps on any CUDA machine, as the grid's jobs run them, in minutes, offline.

What the CPU tests cannot run, on tiny models, through the workflow's own steps and with the arguments
the grid's jobs get (config/config.yaml's settings; only epochs, sequence and generation lengths cut):
  1. fork      CUDA queried the way the evaluation steps query it (NVML-based, set before torch is
               imported), then fork, then CUDA used in the child: what vLLM's engine start does. A
               control run without the setting shows the failure it prevents (reported, not judged).
  2. versions  what the steps import, in a fresh interpreter with their environment: the carried
               packages (make gpu-smoke-wheels: transformers, tokenizers, TRL, DeepSpeed, Liger,
               bitsandbytes, datasets, lm-eval) at the env files' pins, ahead of the machine's own
               (FAIL if one is shadowed); torch, triton, accelerate and vLLM as the machine has them;
               the C compiler Triton will build its launcher stubs with.
  3. train     `workflow_scripts.steps.training launch` as rule train runs it: accelerate + DeepSpeed ZeRO-3
               over NCCL, bf16, Liger kernels, paged 8-bit AdamW. Two ranks (`--gpus 2
               --num-processes 2`) when two or more CUDA devices are visible, else one: decided at run
               time and printed (`--gpus 1|2` fixes it). Twice: a Llama-3-style model (untied head, like
               the 7B/8B/14B models) and a Qwen2-style one (tied embeddings, like Qwen2.5-1.5B/3B).
  4. convert   `workflow_scripts.steps.conversion` of each ZeRO checkpoint to bf16 (it checks the probe
               logits), with no GPU visible, as on the grid's CPU nodes (resources.convert.gpu: 0).
  5. generate  `workflow_scripts.steps.generation` as rule generate runs it: the trained Llama-3-style model on
               every test bin of arc and of gsm8k, one run per dataset, the hf backend on the GPU
               (resources.generate.gpu devices visible). Its arguments come from
               workflow_scripts/lib/row_arguments.py, the function rules/common/arguments.smk builds them with.
  6. score     `workflow_scripts.steps.scoring` as rule score runs it, with no GPU visible: the raw responses
               through lm-eval's filters and metrics into cell files, the base model's tokenizer
               rendering the prompts again.
  7. vllm      5 and 6 with the vllm backend and config's attention backend, where vLLM is installed
               (SKIP otherwise), then compared with the hf cells (log-likelihoods, greedy texts).
  8. vllm-tp2  7 with the model sharded over two GPUs (`--gpus 2`: vLLM's tensor_parallel_size, as a
               70B model's generate job runs, with the same spawn-started workers and caches), where
               two GPUs are visible (SKIP otherwise), compared with 7's cells.
Each step runs as its own process with the workflow's job environment (caches under --out).
Prints one line per step (PASS / FAIL / SKIP / INFO, seconds, details), the versions imported, and
writes summary.json; exits 1 if a step failed. Expected: about 5 minutes without vLLM, 7-8 with it
(estimates: not yet run on a GPU; each step is stopped after --step-timeout s).
`--dry-run` builds the inputs and prints the commands without running them (no GPU; two ranks
planned only with `--gpus 2`).

No network on the GPU machine: `make gpu-smoke-wheels` (here) fetches what it lacks into .gpu-wheels/,
`make gpu-smoke` (there) installs them into a private folder, first on PYTHONPATH, and runs this script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import gpu_smoke_wheels  # noqa: E402  (beside this file: the carried pins)
from workflow_scripts.lib import cell_names, layout, row_arguments, runtime  # noqa: E402  (no torch at import)

# What the versions step imports and reports; the carried ones must be at their pins.
IMPORTS = {
    "torch": "torch",
    "triton": "triton",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "accelerate": "accelerate",
    "deepspeed": "deepspeed",
    "trl": "trl",
    "lm-eval": "lm_eval",
    "bitsandbytes": "bitsandbytes",
    "liger-kernel": "liger_kernel",
    "datasets": "datasets",
    "vllm": "vllm",
}
# Tiny model style -> the paper model whose settings (system prompt, overrides) it trains with.
STYLES = {"llama3": "llama-3.2-1b-instruct", "qwen2": "qwen2.5-1.5b-instruct"}
EVALUATED = "llama3"  # the trained model the generate and score steps run
DATASETS = ("arc", "gsm8k")
TRAIN_DATASET = "arc"
N_BINS = 3
ROWS_PER_DATASET = 60
MAX_GEN_TOKS = 32


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


def imported_versions() -> int:
    """Import each package as the steps would; print what was imported, from where, and the C compiler
    Triton would use (CC, else gcc, else clang on PATH). Exit 1 if a carried package is not at its pin."""
    import importlib
    from importlib.metadata import distributions

    site = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    found = {}
    for name, module_name in IMPORTS.items():
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # reported, whatever it is
            found[name] = {"version": None, "error": f"{type(error).__name__}: {str(error)[:200]}"}
            continue
        where = str(Path(module.__file__).resolve().parent.parent)
        origin = "private site" if any(p and Path(p).resolve() == Path(where) for p in site) else "machine"
        # The version installed where the module came from (liger_kernel has no __version__).
        installed_there = [
            d.version for d in distributions(path=[where]) if gpu_smoke_wheels.canonical(d.metadata["Name"]) == name
        ]
        version = (installed_there or [getattr(module, "__version__", None)])[0]
        found[name] = {"version": version, "from": origin, "path": where}
    pins = gpu_smoke_wheels.carried_pins()
    wrong = {n: (v, found[n]["version"]) for n, v in pins.items() if found[n]["version"] != v}
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("clang")
    print(json.dumps({"imported": found, "pinned_vs_imported": wrong, "c_compiler": compiler}))
    return 1 if wrong else 0


def load_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config/config.yaml").read_text())


def train_settings(config: dict, model: str, dataset: str, ranks: int) -> dict:
    """rules/common/settings.smk's train_settings for (model, dataset) on `ranks` ranks (the accumulation
    steps that keep the study's effective batch), cut to one epoch of short examples."""
    from workflow_scripts.lib import batch

    merged = {
        **config["training"],
        **config["datasets"][dataset].get("training", {}),
        **config["models"][model].get("training", {}),
    }
    settings = batch.job_settings(merged, ranks)
    settings.update(
        system_prompt=config["models"][model]["system_prompt"],
        chat_template_date=config["chat_template_date"],
        seed=layout.seeds_of(config)[0],
    )
    return {**settings, "epochs": 1, "max_length": 512}


def rule_gpus(config: dict, rule: str) -> int:
    """The GPUs a small model's job of the rule gets on the grid (config resources, the smallest size
    class where the rule has them; score defaults to a CPU job)."""
    from workflow_scripts.lib import sizing

    entry = config["resources"].get(rule, {})
    return {**entry, **sizing.size_class(entry.get("by_model_size") or [], 1)}.get("gpu", 0)


def build_inputs(out: Path) -> dict:
    """Tiny models and arc / gsm8k bins where the grid keeps them. 2 heads of head_dim 64 (vLLM's kernels
    refuse smaller heads), so that tensor parallelism over two GPUs has a head for each."""
    from workflow_scripts.demo import sample_data, tiny_model
    from workflow_scripts.steps import binning, data

    inputs = {"models": {}, "bins": {}}
    for style in STYLES:
        inputs["models"][style] = str(
            tiny_model.build(
                out / f"base-{style}", style=style, hidden_size=128, attention_heads=2, initializer_range=0.2
            )
        )
    for name in DATASETS:
        source = out / "data" / name / f"{name}.jsonl"
        source.parent.mkdir(parents=True, exist_ok=True)
        sample_data.GENERATORS[name](ROWS_PER_DATASET).to_json(source, orient="records", lines=True)
        table = data.normalize(data.load_source({"path": str(source)}))
        Path(layout.bins_dir(out, name)).mkdir(parents=True, exist_ok=True)
        for k, part in enumerate(binning.split_into_bins(table, N_BINS, "1pl_quantile")):
            part.to_parquet(layout.bin_file(out, name, k))
        inputs["bins"][name] = [str(k) for k in range(N_BINS)]
    return inputs


def row_steps(out: Path, inputs: dict, config: dict, engine: str, python: str, tensor_parallel: int = 0) -> list[dict]:
    """generate + score of the trained model's row on every bin of each dataset, as rules/generate.smk and
    rules/score.smk run them: on the GPUs a small model's generate job gets, or on `tensor_parallel` GPUs
    (vLLM's tensor_parallel_size, as a large model's generate job runs)."""
    from workflow_scripts.lib import task_parts

    gpus = tensor_parallel or rule_gpus(config, "generate")
    label = f"{engine}-tp{tensor_parallel}" if tensor_parallel else engine
    results = out / label  # each engine's raw and cell files apart
    model = f"tiny-{EVALUATED}"
    row = cell_names.bin_name(0, "all", layout.seeds_of(config)[0])
    labels = cell_names.labels(row)
    steps = []
    for dataset in DATASETS:
        task = config["datasets"][dataset]["task"]
        settings = {
            **config["evaluation"],
            **config["datasets"][dataset].get("evaluation", {}),
            "backend": engine,
            "max_gen_toks": MAX_GEN_TOKS,
        }
        bins = inputs["bins"][dataset]
        tests = {b: layout.test_file(out, dataset, b, False) for b in bins}
        raws = {b: layout.raw_file(results, model, dataset, row, b) for b in bins}
        cells = {b: layout.cell(results, model, dataset, row, b) for b in bins}
        generate = row_arguments.generation(
            task,
            task_parts.generation_fingerprint(task),
            [(b, tests[b], raws[b]) for b in bins],
            out / f"hf-{EVALUATED}",
            settings,
            chat_template_date=config["chat_template_date"],
        )
        score = row_arguments.scoring(
            task,
            {"model": model, "dataset": dataset, **labels},
            inputs["models"][EVALUATED],
            [(b, tests[b], raws[b], cells[b]) for b in bins],
        )
        needs = "vllm" if engine == "vllm" else None
        steps.append(
            {
                "name": f"generate-{label}-{dataset}",
                "command": [python, "-m", "workflow_scripts.steps.generation", *generate, "--gpus", str(gpus)],
                "outputs": list(raws.values()),
                "gpus": gpus,
                "needs": needs,
            }
        )
        steps.append(
            {
                "name": f"score-{label}-{dataset}",
                "command": [python, "-m", "workflow_scripts.steps.scoring", *score],
                "outputs": list(cells.values()),
                "gpus": rule_gpus(config, "score"),
                "needs": needs,
            }
        )
    return steps


def plan(out: Path, inputs: dict, ranks: int) -> list[dict]:
    """Every step: name, command, what it leaves behind, how many GPUs it sees (None: all)."""
    python = sys.executable
    config = load_config()
    steps = [
        {"name": "fork", "command": [python, __file__, "fork-check", "--device", "cuda"]},
        {
            "name": "fork-control",
            "command": [python, __file__, "fork-check", "--device", "cuda", "--without-nvml"],
            "control": True,
            "unset": ["PYTORCH_NVML_BASED_CUDA_CHECK"],
        },
        {"name": "versions", "command": [python, __file__, "versions"]},
    ]
    for style, paper_model in STYLES.items():
        zero, hf = out / f"zero-{style}", out / f"hf-{style}"
        # rules/train.smk's command, option by option (options it does not pass keep their defaults).
        steps.append(
            {
                "name": f"train-{style}",
                "outputs": [str(zero / "training.json")],
                "gpus": ranks,
                "command": [
                    python,
                    "-m",
                    "workflow_scripts.steps.training",
                    "launch",
                    "--model",
                    inputs["models"][style],
                    "--train-file",
                    layout.bin_file(out, TRAIN_DATASET, 0),
                    "--prompt-format",
                    config["datasets"][TRAIN_DATASET]["prompt_format"],
                    "--output-dir",
                    str(zero),
                    "--work-dir",
                    str(out / f"work-{style}"),
                    "--checkpoint-minutes",
                    str(config["launch"]["checkpoint_minutes"]),
                    "--stop-halfway",
                    "0",
                    "--settings",
                    json.dumps(train_settings(config, paper_model, TRAIN_DATASET, ranks), sort_keys=True),
                    "--accelerate-config",
                    str(REPO / config["launch"]["accelerate_config"]),
                    "--num-processes",
                    str(ranks),
                    "--gpus",
                    str(ranks),
                ],
            }
        )
        steps.append(
            {
                "name": f"convert-{style}",
                "outputs": [str(hf / "config.json")],
                "gpus": rule_gpus(config, "convert"),
                "command": [
                    python,
                    "-m",
                    "workflow_scripts.steps.conversion",
                    "--zero-dir",
                    str(zero),
                    "--out-dir",
                    str(hf),
                    "--dtype",
                    config["conversion"]["dtype"],
                    "--max-shard-size",
                    config["conversion"]["max_shard_size"],
                ],
            }
        )
    for engine in ("hf", "vllm"):
        steps += row_steps(out, inputs, config, engine, python)
    # A large model's generate job: the same row with the model sharded over two GPUs (SKIP on one).
    steps += row_steps(out, inputs, config, "vllm", python, tensor_parallel=2)
    return steps


def installed(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return bool(version(name))
    except PackageNotFoundError:
        return False


def cuda_devices() -> list[str]:
    """The CUDA devices this process may hand to its steps (CUDA_VISIBLE_DEVICES entries, or indices),
    counted through NVML as the evaluation steps count them. The setting is not left behind: each
    step sets what it sets itself (and the fork control must run without it)."""
    already = "PYTORCH_NVML_BASED_CUDA_CHECK" in os.environ
    runtime.fork_safe_cuda_detection()
    import torch

    count = torch.cuda.device_count()
    if not already:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is not None:
        return [d.strip() for d in given.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def choose_ranks(asked: str, devices: int) -> tuple[int, str]:
    """Training ranks: two where two GPUs are (what ZeRO-3 shards over, as the grid's 4 do), else one."""
    if asked != "auto":
        return int(asked), f"{asked} (--gpus {asked}; {devices} CUDA device(s) visible)"
    ranks = 2 if devices >= 2 else 1
    return ranks, f"{ranks} ({devices} CUDA device(s) visible; two ranks where two or more are)"


def step_environment(env: dict, step: dict, devices: list[str]) -> dict:
    """The job's GPUs: the first `gpus` devices, none for a CPU job, all where the step names none."""
    env = {name: value for name, value in env.items() if name not in step.get("unset", ())}
    if step.get("gpus") is None:
        return env
    return {**env, "CUDA_VISIBLE_DEVICES": ",".join(devices[: step["gpus"]])}


def details(step: dict, result: subprocess.CompletedProcess) -> str:
    """What a passed step produced, in one line."""
    lines = result.stdout.strip().splitlines()
    last_line = lines[-1] if lines else ""
    name = step["name"]
    if name.startswith("fork"):
        return last_line
    if name == "versions":
        report = json.loads(last_line)
        shown = ", ".join(f"{n} {v['version']}" for n, v in report["imported"].items() if v["version"])
        return f"{shown}; C compiler {report['c_compiler']}"
    if name.startswith("convert"):  # its report is the last line it prints
        report = json.loads(last_line)
        return f"bf16 export; probe max |logit diff| vs the trained model {report.get('probe_max_abs_diff')}"
    if name.startswith("train"):
        output = json.loads(Path(step["outputs"][0]).read_text())
        losses = [row["loss"] for row in output["loss_per_step"]]
        return (
            f"optimizer {output['optimizer']}, world size {output['world_size']}, {output['global_step']} steps, "
            f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, liger {output['settings']['use_liger_kernel']}"
        )
    if name.startswith("generate"):
        report = json.loads(last_line)
        generation = json.loads(Path(step["outputs"][0]).read_text())["generation"]
        attention = (generation.get("model_args") or {}).get("attention_backend")
        return (
            f"bins {report['bins']}, {report['requests']} requests in {report['seconds']} s, "
            f"model load {generation.get('model_load_seconds')} s, attention {attention}"
        )
    cells = [json.loads(line) for line in lines if line.startswith('{"cell"')]
    return "; ".join(f"{Path(c['cell']).stem} n {c['n']} {c['metrics']}" for c in cells)


def compare_engines(steps: list[dict]) -> dict:
    """vLLM against hf on the same bf16 model and bins, and vLLM on two GPUs against one:
    log-likelihoods (arc), greedy texts (gsm8k)."""
    return {
        **compare_rows(steps, "hf", "vllm", ""),
        **compare_rows(steps, "vllm", "vllm-tp2", "tensor_parallel_2_vs_1_"),
    }


def compare_rows(steps: list[dict], first: str, second: str, prefix: str) -> dict:
    cells = {s["name"]: s["outputs"] for s in steps if s["name"].startswith("score-")}
    found = {}
    for dataset in DATASETS:
        rows = {}
        for engine in (first, second):
            paths = [Path(layout.samples(cell)) for cell in cells.get(f"score-{engine}-{dataset}", [])]
            if not paths or not all(path.exists() for path in paths):
                return found
            rows[engine] = {
                (path.name, r["item_id"]): r for path in paths for r in map(json.loads, path.read_text().splitlines())
            }
        if dataset == "arc":
            diffs = [
                abs(a[0] - b[0])
                for item in rows[first]
                for a, b in zip(rows[first][item]["response,none"], rows[second][item]["response,none"])
            ]
            found[f"{prefix}arc_max_loglikelihood_diff"] = max(diffs)
        else:
            same = sum(rows[first][i]["raw_response"] == rows[second][i]["raw_response"] for i in rows[first])
            found[f"{prefix}gsm8k_identical_generations"] = f"{same}/{len(rows[first])}"
    return found


def versions_report(stdout: str) -> dict | None:
    """The versions step's JSON (its last line), or None if it printed none."""
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None


def run_step(step: dict, env: dict, out: Path, timeout: int) -> dict:
    log = out / "logs" / f"{step['name']}.log"
    log.parent.mkdir(exist_ok=True)
    begun = time.time()
    row = {"step": step["name"]}
    try:
        result = subprocess.run(step["command"], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**row, "status": "FAIL", "seconds": round(time.time() - begun, 1), "details": f"over {timeout} s"}
    log.write_text(result.stdout + result.stderr)
    row["seconds"] = round(time.time() - begun, 1)
    report = versions_report(result.stdout) if step["name"] == "versions" else None
    if report:
        row["report"] = report  # for the summary
    passed = result.returncode == 0 and all(Path(o).exists() for o in step.get("outputs", []))
    if step.get("control"):
        what = "fork failed without the NVML check" if result.returncode else "fork worked even without it"
        return {**row, "status": "INFO", "details": f"{what}: {result.stdout.strip()[-300:]}"}
    if passed:
        return {**row, "status": "PASS", "details": details(step, result)}
    last = (result.stderr.strip().splitlines() or [""])[-1][-300:]
    if report and report["pinned_vs_imported"]:
        last = "not imported at the env files' pins (make gpu-smoke installs them): " + ", ".join(
            f"{name} {pin} (imported: {got or 'none'})" for name, (pin, got) in report["pinned_vs_imported"].items()
        )
    return {**row, "status": "FAIL", "details": f"exit {result.returncode}: {last} (log: {log})"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode")
    check = sub.add_parser("fork-check", help="one fork check (run by the smoke test in a fresh interpreter)")
    check.add_argument("--device", default="cuda")
    check.add_argument("--without-nvml", action="store_true", help="the control: plain cudaGetDeviceCount query")
    sub.add_parser("versions", help="what the steps import (run by the smoke test in a fresh interpreter)")
    parser.add_argument("--out", type=Path, default=REPO / "results/gpu_smoke")
    parser.add_argument("--dry-run", action="store_true", help="build the inputs, print the commands, run nothing")
    parser.add_argument(
        "--gpus",
        choices=["auto", "1", "2"],
        default="auto",
        help="training ranks (one per GPU): auto = 2 where two or more CUDA devices are visible, else 1",
    )
    parser.add_argument("--step-timeout", type=int, default=240, help="seconds per step")
    args = parser.parse_args(argv)
    if args.mode == "fork-check":
        return fork_check(args.device, nvml=not args.without_nvml)
    if args.mode == "versions":
        return imported_versions()

    started = time.time()
    args.out.mkdir(parents=True, exist_ok=True)
    devices = cuda_devices()
    ranks, why = choose_ranks(args.gpus, len(devices))
    print(f"training ranks: {why}", flush=True)
    if not args.dry_run and len(devices) < ranks:
        print(
            f"error: {ranks} training rank(s) need as many GPUs; {len(devices)} CUDA device(s) visible", file=sys.stderr
        )
        return 1
    steps = plan(args.out, build_inputs(args.out), ranks)
    env = {
        **os.environ,
        **runtime.job_environment(str(args.out / "cache")),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    # The repository first, then what PYTHONPATH had (make gpu-smoke: the private site of carried
    # wheels), then the interpreter's own site-packages: the carried versions win.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if args.dry_run:
        for step in steps:
            print(json.dumps({"step": step["name"], "gpus": step.get("gpus"), "command": step["command"]}), flush=True)
        return 0
    results, versions = [], None
    for step in steps:
        if step.get("needs") and not installed(step["needs"]):
            row = {"step": step["name"], "status": "SKIP", "seconds": 0, "details": f"{step['needs']} not installed"}
        elif (step.get("gpus") or 0) > len(devices):
            row = {
                "step": step["name"],
                "status": "SKIP",
                "seconds": 0,
                "details": f"needs {step['gpus']} GPUs, {len(devices)} visible",
            }
        else:
            row = run_step(step, step_environment(env, step, devices), args.out, args.step_timeout)
        versions = row.pop("report", versions)
        results.append(row)
        print(f"{row['status']:5} {row['seconds']:6.1f} s  {row['step']:20} {row['details']}", flush=True)
    summary = {
        "training_ranks": ranks,
        "cuda_devices": len(devices),
        "versions": versions,
        "steps": results,
        "engines": compare_engines(steps),
        "total_seconds": round(time.time() - started, 1),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if versions:
        imported = versions["imported"]
        print(
            "imported: "
            + ", ".join(f"{n} {v['version']} ({v['from']})" for n, v in imported.items() if v["version"])
            + f"; not importable: {', '.join(n for n, v in imported.items() if not v['version']) or 'none'}"
        )
    print(f"engines: {json.dumps(summary['engines'])}")
    print(f"total {summary['total_seconds']} s; summary: {args.out / 'summary.json'}")
    return 1 if any(row["status"] == "FAIL" for row in results) else 0


if __name__ == "__main__":
    sys.exit(main())
