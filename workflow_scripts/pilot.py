"""The pilot's check: one trained row of the grid, asserted step by step, and what it measured.

    python -m workflow_scripts.pilot --model-dir M --drill-dir D --cell C --base-cell B --test-file T \
        --expect JSON --benchmarks JSON --out report.json

Reads the converted model (its training.json and conversion.json), the resume drill's training.json,
the trained and the base model's cells and the jobs' benchmark files. Prints one line per check and the
measured figures (tokens/s, checkpoint writes, vLLM engine start, peak memory), writes them to `--out`
and exits non-zero, naming each failed check, when any fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from workflow_scripts.io_utils import atomic_write_json

GB = 1e9


def read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def benchmark(path: str) -> dict:
    try:
        with open(path) as handle:
            return next(csv.DictReader(handle, delimiter="\t"))
    except (OSError, StopIteration):
        return {}


def rows_of(path: str) -> int:
    import pyarrow.parquet

    return pyarrow.parquet.read_metadata(path).num_rows


def checks(model_dir: Path, drill_dir: Path, cell: dict, base_cell: dict, questions: int, expect: dict) -> list:
    """(description, passed) for every output of the pilot."""
    trained = read_json(model_dir / "training.json")
    drill = read_json(drill_dir / "training.json")
    conversion = read_json(model_dir / "conversion.json")
    drill_checkpoints = drill.get("checkpoints", [])
    one_write = bool(drill_checkpoints) and all(
        c["bytes_written"] is not None and c["bytes_written"] <= 1.5 * drill["final_save"]["bytes_written"]
        for c in drill_checkpoints
    )
    result = [
        (f"training ran {expect['ranks']} ranks", trained.get("world_size") == expect["ranks"]),
        (f"over {expect['backend']}", trained.get("backend") == expect["backend"]),
        (f"mixed precision {expect['mixed_precision']}", trained.get("mixed_precision") == expect["mixed_precision"]),
        (f"optimizer {expect['optimizer']}", trained.get("optimizer") == expect["optimizer"]),
        (
            f"use_liger_kernel {expect['use_liger_kernel']}",
            trained.get("settings", {}).get("use_liger_kernel") == expect["use_liger_kernel"],
        ),
        (
            "training took steps and its loss is finite",
            trained.get("global_step", 0) > 0 and math.isfinite(trained.get("final_loss") or math.nan),
        ),
        (
            "the resume drill resumed from its half-way checkpoint",
            drill.get("resumed_from_step") == math.ceil(trained.get("global_step", 0) / 2) > 0,
        ),
        ("the resumed run finished the same schedule", drill.get("global_step") == trained.get("global_step")),
        ("each checkpoint wrote the ZeRO state once (bytes written <= 1.5 x one save)", one_write),
        (
            "the model was converted and checked against the probe",
            any(model_dir.glob("*.safetensors")) and "probe" in conversion,
        ),
    ]
    for name, record in (("trained", cell), ("base", base_cell)):
        metrics = record.get("metrics", {})
        result += [
            (f"{name} cell answered all {questions} questions of its bin", record.get("n") == questions),
            (
                f"{name} cell ran on {expect['evaluation_backend']}",
                record.get("backend") == expect["evaluation_backend"],
            ),
            (f"{name} cell has metrics in [0, 1]", bool(metrics) and all(0 <= v <= 1 for v in metrics.values())),
        ]
    result.append(("the trained cell evaluated the converted model", cell.get("model_path") == str(model_dir)))
    return result


def figures(model_dir: Path, drill_dir: Path, cell: dict, base_cell: dict, benchmarks: dict) -> dict:
    """What the pilot measured, for the report and for sizing the grid (workflow_scripts/sizing.py)."""
    trained = read_json(model_dir / "training.json")
    drill = read_json(drill_dir / "training.json")
    bench = {name: benchmark(path) for name, path in benchmarks.items()}
    checkpoint = (drill.get("checkpoints") or [{}])[-1]
    seconds = checkpoint.get("seconds")
    return {
        "train_tokens_per_second": trained.get("tokens_per_second"),
        "train_tokens_per_second_per_gpu": trained.get("tokens_per_second_per_gpu"),
        "train_runtime_s": trained.get("train_runtime_s"),
        "train_job_s": _number(bench["train"].get("s")),
        "train_peak_gpu_memory_gb": _gb(trained.get("peak_gpu_memory_bytes")),
        "train_peak_rank_rss_gb": _gb(trained.get("peak_rank_rss_bytes")),
        "final_save_s": trained.get("final_save", {}).get("seconds"),
        "final_save_gb_written": _gb(trained.get("final_save", {}).get("bytes_written")),
        "checkpoint_s": seconds,
        "checkpoint_gb_written": _gb(checkpoint.get("bytes_written")),
        "checkpoint_gb_on_disk": _gb(checkpoint.get("bytes_on_disk")),
        "resume_drill_job_s": _number(bench["resume_drill"].get("s")),
        "convert_job_s": _number(bench["convert"].get("s")),
        "convert_max_rss_gb": _gb(_number(bench["convert"].get("max_rss")), scale=1e6),
        # A row's generate job: its engine start (once), its generation (every bin), the whole job.
        "engine_start_s": cell.get("model_load_seconds"),
        "base_engine_start_s": base_cell.get("model_load_seconds"),
        "row_generation_s": cell.get("generation_seconds"),
        "base_row_generation_s": base_cell.get("generation_seconds"),
        "generate_job_s": _number(bench["generate"].get("s")),
        "base_generate_job_s": _number(bench["generate_base"].get("s")),
        "cell_score_s": cell.get("eval_seconds"),
        "eval_gpu_memory_in_use_gb": _gb(cell.get("gpu_memory_in_use_bytes")),
    }


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _gb(value, scale=1.0):
    return round(value * scale / GB, 3) if value is not None else None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, type=Path, help="the converted model (its hf folder)")
    parser.add_argument("--drill-dir", required=True, type=Path, help="the resume drill's output")
    parser.add_argument("--cell", required=True, type=Path, help="the trained model's cell on its own bin")
    parser.add_argument("--base-cell", required=True, type=Path, help="the base model's cell on that bin")
    parser.add_argument("--test-file", required=True, help="the bin both cells answered")
    parser.add_argument("--expect", required=True, help="JSON: ranks, backend, mixed_precision, optimizer, ...")
    parser.add_argument("--benchmarks", default="{}", help="JSON: benchmark file of each pilot job")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    expect, cell, base_cell = json.loads(args.expect), read_json(args.cell), read_json(args.base_cell)
    results = checks(args.model_dir, args.drill_dir, cell, base_cell, rows_of(args.test_file), expect)
    measured = figures(
        args.model_dir,
        args.drill_dir,
        cell,
        base_cell,
        {
            "train": "",
            "resume_drill": "",
            "convert": "",
            "generate": "",
            "generate_base": "",
            **json.loads(args.benchmarks),
        },
    )
    for name, passed in results:
        print(f"{'ok  ' if passed else 'FAIL'} {name}")
    print("measured:")
    for name, value in measured.items():
        print(f"  {name}: {value}")
    failed = [name for name, passed in results if not passed]
    if failed:
        print(f"error: the pilot failed {len(failed)} check(s): {'; '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    atomic_write_json({"checks": [name for name, _ in results], "measured": measured, "expected": expect}, args.out)


if __name__ == "__main__":
    main()
