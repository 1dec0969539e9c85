"""The pilot's check: its rows and memory probes asserted step by step, the paths they proved, what they measured.

    python -m workflow_scripts.steps.pilot --spec JSON --out report.json

The spec (rules/common/arguments.smk pilot_spec) lists each trained row (its converted model with
training.json and conversion.json, its cell and the base model's cell on its bin, the bin, a resume
drill where it has one, what its outputs must show, the jobs' benchmark files), each memory probe (its
report, what it must show) and every path the grid's jobs take. Prints one line per check, the paths
proved and any path of the grid no entry proved, and the measured figures (tokens/s, checkpoint writes,
vLLM engine start, peak memory); writes them to `--out` and exits non-zero, naming each failed check,
when any fails. A path the pilot did not prove is reported, not failed: the config chose the entries.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
from pathlib import Path

from workflow_scripts.lib.io_utils import atomic_write_json

GB = 1e9
# A probe passes while its peak stays this far under the GPU's memory: the rest is for fragmentation
# and for rows a little different from the probe's.
PROBE_MEMORY_SHARE = 0.9


def read_json(path) -> dict:
    path = Path(path) if path else None
    if path is None or not path.is_file():
        return {}
    return json.loads(path.read_text())


def benchmark(path: str) -> dict:
    try:
        with open(path) as handle:
            return next(csv.DictReader(handle, delimiter="\t"))
    except (OSError, StopIteration, TypeError):
        return {}


def rows_of(path: str) -> int:
    import pyarrow.parquet

    return pyarrow.parquet.read_metadata(path).num_rows


def row_checks(row: dict) -> list:
    """(description, passed) for every output of one trained row (and its resume drill)."""
    model_dir, expect = Path(row["model_dir"]), row["expect"]
    trained = read_json(model_dir / "training.json")
    conversion = read_json(model_dir / "conversion.json")
    cell, base_cell = read_json(row["cell"]), read_json(row["base_cell"])
    questions = rows_of(row["test_file"])
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
            "the model was converted and checked against the probe",
            any(model_dir.glob("*.safetensors")) and "probe" in conversion,
        ),
    ]
    if row["drill"]:
        drill = read_json(Path(row["drill"]) / "training.json")
        checkpoints = drill.get("checkpoints", [])
        one_write = bool(checkpoints) and all(
            c["bytes_written"] is not None and c["bytes_written"] <= 1.5 * drill["final_save"]["bytes_written"]
            for c in checkpoints
        )
        result += [
            (
                "the resume drill resumed from its half-way checkpoint",
                drill.get("resumed_from_step") == math.ceil(trained.get("global_step", 0) / 2) > 0,
            ),
            ("the resumed run finished the same schedule", drill.get("global_step") == trained.get("global_step")),
            ("each checkpoint wrote the ZeRO state once (bytes written <= 1.5 x one save)", one_write),
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
    result.append(
        ("the trained cell's generation loaded the converted model", cell.get("model_path") == str(model_dir))
    )
    return result


def probe_checks(probe: dict) -> list:
    report, expect = read_json(probe["report"]), probe["expect"]
    result = [
        (f"{expect['steps']} optimizer steps", report.get("steps") == expect["steps"]),
        (f"on {expect['ranks']} ranks", report.get("world_size") == expect["ranks"]),
        (
            f"sequences of max_length {expect['max_length']} tokens",
            report.get("sequence_tokens") == expect["max_length"],
        ),
    ]
    if expect["gpu"]:
        peak, total = report.get("peak_gpu_memory_bytes") or 0, report.get("gpu_memory_bytes") or 0
        share = f"{PROBE_MEMORY_SHARE:.0%}"
        result.append((f"peak GPU memory under {share} of the GPU's", 0 < peak <= PROBE_MEMORY_SHARE * total))
        result.append(
            (
                f"the GPU has the memory cluster.gpu_memory_gb says ({probe['gpu_memory_gb']} GB)",
                total >= 0.95 * probe["gpu_memory_gb"] * GB,
            )
        )
    return result


def row_figures(row: dict) -> dict:
    """What a row measured, for the report and for sizing the grid (workflow_scripts/lib/sizing.py)."""
    model_dir = Path(row["model_dir"])
    trained = read_json(model_dir / "training.json")
    drill = read_json(Path(row["drill"]) / "training.json") if row["drill"] else {}
    cell, base_cell = read_json(row["cell"]), read_json(row["base_cell"])
    bench = {name: benchmark(path) for name, path in row["benchmarks"].items()}
    checkpoint = (drill.get("checkpoints") or [{}])[-1]
    figures = {
        "train_tokens_per_second": trained.get("tokens_per_second"),
        "train_tokens_per_second_per_gpu": trained.get("tokens_per_second_per_gpu"),
        "train_runtime_s": trained.get("train_runtime_s"),
        "train_job_s": _number(bench["train"].get("s")),
        "train_peak_gpu_memory_gb": _gb(trained.get("peak_gpu_memory_bytes")),
        "train_peak_rank_rss_gb": _gb(trained.get("peak_rank_rss_bytes")),
        "final_save_s": trained.get("final_save", {}).get("seconds"),
        "final_save_gb_written": _gb(trained.get("final_save", {}).get("bytes_written")),
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
    if row["drill"]:
        figures.update(
            checkpoint_s=checkpoint.get("seconds"),
            checkpoint_gb_written=_gb(checkpoint.get("bytes_written")),
            checkpoint_gb_on_disk=_gb(checkpoint.get("bytes_on_disk")),
            resume_drill_job_s=_number(bench["resume_drill"].get("s")),
        )
    return figures


def probe_figures(probe: dict) -> dict:
    report = read_json(probe["report"])
    return {
        "peak_gpu_memory_gb": _gb(report.get("peak_gpu_memory_bytes")),
        "gpu_memory_gb": _gb(report.get("gpu_memory_bytes")),
        "peak_rank_rss_gb": _gb(report.get("peak_rank_rss_bytes")),
        "seconds_per_step": report.get("seconds_per_step"),
        "sequence_tokens": report.get("sequence_tokens"),
        "job_s": _number(benchmark(probe["benchmark"]).get("s")),
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
    parser.add_argument("--spec", required=True, help="JSON: rows, probes, grid_paths (rules/common/arguments.smk)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    entries, failed, proved = [], [], set()
    for kind, items, checks, figures in (
        ("row", spec["rows"], row_checks, row_figures),
        ("probe", spec["probes"], probe_checks, probe_figures),
    ):
        for item in items:
            results = checks(item)
            print(f"{item['name']}:")
            for name, passed in results:
                print(f"  {'ok  ' if passed else 'FAIL'} {name}")
            failed += [f"{item['name']}: {name}" for name, passed in results if not passed]
            if all(passed for _, passed in results):
                proved.update(item["paths"])
            measured = figures(item)
            print("  measured: " + ", ".join(f"{name} {value}" for name, value in measured.items()))
            entries.append(
                {
                    "kind": kind,
                    "name": item["name"],
                    "checks": [n for n, _ in results],
                    "paths": item["paths"],
                    "measured": measured,
                }
            )
    not_proved = sorted(set(spec["grid_paths"]) - proved)
    print("paths proved: " + "; ".join(sorted(proved)))
    if not_proved:
        print(
            "paths of the grid no entry of this pilot proved (add entries to config `pilot`): " + "; ".join(not_proved)
        )
    if failed:
        print(f"error: the pilot failed {len(failed)} check(s): {'; '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    atomic_write_json({"entries": entries, "proved": sorted(proved), "not_proved": not_proved}, args.out)
    for row in spec["rows"]:  # the drills' checkpoints, kept by their jobs for a retry, are done with
        if row.get("drill_work_dir"):
            shutil.rmtree(row["drill_work_dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
