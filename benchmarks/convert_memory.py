"""Peak memory of the convert step per parameter: what resources.convert.mem_mb is sized on.

    .venv/bin/python benchmarks/convert_memory.py [--hidden 768 --layers 20 --ranks 4]

Trains a random Qwen2-style model of ~120M parameters for one step with real DeepSpeed ZeRO-3 on CPU
ranks (gloo), then converts its ZeRO checkpoint to bf16 with workflow_scripts.steps.conversion in a fresh
process, and a 2-layer model the same way for the fixed cost (interpreter, torch, transformers,
DeepSpeed). Prints the peak RSS of both and (big - small) / (parameters big - small): bytes per
parameter. Expected ~6 (the fp32 masters zero_to_fp32 holds, 4 B/param, while each tensor is cast to
bf16, 2 B/param). With 4 ranks, loading the last rank's optimizer file (fp32 master + two fp32 Adam
moments, 12 B x N/4) while the other ranks' masters (3 B/param) are held peaks at about the same.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONVERT = r"""
import json, resource, sys
from workflow_scripts.lib import config_files
from workflow_scripts.steps import conversion
settings = config_files.schema_defaults("conversion")  # the study's: bf16, the default shard size
report = conversion.convert(sys.argv[1], sys.argv[2], settings["dtype"], settings["max_shard_size"])
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def zero_checkpoint(folder: Path, hidden: int, layers: int, ranks: int) -> tuple[Path, int]:
    from workflow_scripts.demo import sample_data, tiny_model
    from workflow_scripts.steps import binning, data

    model = tiny_model.build(folder / "model", hidden_size=hidden, layers=layers)
    sample_data.arc_rows(8 * ranks).to_json(folder / "arc.jsonl", orient="records", lines=True)
    table = data.normalize(data.load_source({"path": str(folder / "arc.jsonl")}))
    binning.split_into_bins(table, 2, "1pl_quantile")[0].to_parquet(folder / "bin.parquet")
    settings = {
        "epochs": 1,
        "bf16": False,
        "optim": "adamw_torch",
        "learning_rate": 1e-4,
        "max_length": 256,
        "per_device_batch_size": 4,
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow_scripts.steps.training",
            "launch",
            "--model",
            str(model),
            "--train-file",
            str(folder / "bin.parquet"),
            "--prompt-format",
            "arc",
            "--output-dir",
            str(folder / "zero"),
            "--work-dir",
            str(folder / "work"),
            "--settings",
            json.dumps(settings),
            "--accelerate-config",
            str(REPO / "config/accelerate/zero3_cpu.yaml"),
            "--num-processes",
            str(ranks),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    record = json.loads((folder / "zero/training.json").read_text())
    return folder / "zero", record["parameters"]


def peak_of_conversion(zero: Path, out: Path) -> int:
    result = subprocess.run(
        [sys.executable, "-c", CONVERT, str(zero), str(out)], cwd=REPO, check=True, capture_output=True, text=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_rss_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--ranks", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small_zero, small_n = zero_checkpoint(Path(tmp) / "small", 64, 2, args.ranks)
        big_zero, big_n = zero_checkpoint(Path(tmp) / "big", args.hidden, args.layers, args.ranks)
        small = peak_of_conversion(small_zero, Path(tmp) / "small-hf")
        big = peak_of_conversion(big_zero, Path(tmp) / "big-hf")
        zero_bytes = sum(p.stat().st_size for p in big_zero.rglob("*") if p.is_file())
    per_param = (big - small) / (big_n - small_n)
    print(
        json.dumps(
            {
                "ranks": args.ranks,
                "parameters": big_n,
                "zero_state_bytes": zero_bytes,
                "peak_rss_small_gb": round(small / 1e9, 3),
                "peak_rss_big_gb": round(big / 1e9, 3),
                "bytes_per_parameter": round(per_param, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
