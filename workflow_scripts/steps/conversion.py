"""Turn a ZeRO-3 checkpoint into a Hugging Face model folder, with DeepSpeed's own zero_to_fp32.

zero_to_fp32 gathers the fp32 master weights from the optimizer shards. Its safetensors writer fails
on tied input/output embeddings ("Some tensors share memory"), so the state dict is assigned into a
model built on the meta device (no second copy of the weights) and written with ``save_pretrained``,
which handles tied weights. The export is checked against the probe logits the training job recorded.

`conversion.json` in the export records how it was made (this file's checksum, the settings, the
DeepSpeed version, the probe check): a later change to this code or to `conversion.*` re-plans no
finished model (re-making one would need its deleted ZeRO state), and `make plan` lists the models
made by other code or settings than the current ones.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from workflow_scripts.lib.io_utils import atomic_write_json, one_line_errors, package_versions, read_json, reading

PROVENANCE = "conversion.json"

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
)


def check_checkpoint(zero_dir: Path) -> None:
    """What the conversion reads, checked before it starts: the model config, `latest` (the tag of the
    checkpoint to convert), each file of that checkpoint and the probe. A torch file is a zip archive,
    and opening one reads only its directory at the end, so a truncated or foreign shard fails here,
    by name, in a second, not as an unpickling error inside DeepSpeed that names no file."""
    import zipfile

    fix = f"fix: delete {zero_dir} and run snakemake again to re-train that row (the training job wrote it)"
    read_json(zero_dir / "config.json", "model config", fix)
    with reading(zero_dir / "latest", "checkpoint tag file", "text", fix):
        tag = (zero_dir / "latest").read_text().strip()
    if not tag or not (zero_dir / tag).is_dir():
        raise ValueError(f"checkpoint tag file {zero_dir / 'latest'} names {tag!r}, no folder in {zero_dir}; {fix}")
    probe = [zero_dir / "probe.pt"] if (zero_dir / "probe.pt").exists() else []
    for path in sorted((zero_dir / tag).glob("*.pt")) + probe:
        with reading(path, "checkpoint file", "a torch file", fix, zipfile.BadZipFile):
            zipfile.ZipFile(path).close()


def convert(zero_dir, out_dir, dtype: str, max_shard_size: str) -> dict:
    import torch
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoConfig, AutoModelForCausalLM

    zero_dir, out_dir = Path(zero_dir), Path(out_dir)
    # Lazy mode keeps the fp32 partitions as they were loaded and hands out one tensor at a time;
    # each is cast at once, so fp32 weights are never held twice. Tied weights stay one tensor.
    lazy = get_fp32_state_dict_from_zero_checkpoint(str(zero_dir), lazy_mode=True)
    target = getattr(torch, dtype)
    state_dict, materialized = {}, {}
    for name, tensor in lazy.items():
        if id(tensor) not in materialized:
            materialized[id(tensor)] = tensor.contiguous().to(target)
        state_dict[name] = materialized[id(tensor)]
    del lazy, materialized
    config = AutoConfig.from_pretrained(zero_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    del state_dict
    model.tie_weights()
    still_meta = [name for name, p in model.named_parameters() if p.is_meta]
    if still_meta or unexpected:
        raise RuntimeError(f"checkpoint does not match the model: missing {still_meta}, unexpected {unexpected}")
    # Buffers such as rotary frequencies stay on the meta device; they are recomputed on load.
    model.config.dtype = dtype
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    for name in TOKENIZER_FILES:
        if (zero_dir / name).exists():
            shutil.copy2(zero_dir / name, out_dir / name)
    if (zero_dir / "training.json").exists():
        shutil.copy2(zero_dir / "training.json", out_dir / "training.json")
    del model
    report = check_probe(out_dir, zero_dir / "probe.pt")
    atomic_write_json(provenance(dtype, max_shard_size, report), out_dir / PROVENANCE)
    return report


def code_checksum() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def provenance(dtype: str, max_shard_size: str, probe_report: dict) -> dict:
    """How an export was made: compared with the current code and settings by `make plan`."""
    return {
        "code_sha256": code_checksum(),
        "dtype": dtype,
        "max_shard_size": max_shard_size,
        "versions": package_versions("deepspeed", "transformers", "torch"),
        "probe": probe_report,
    }


def check_probe(model_dir: Path, probe_path: Path, atol: float = 1e-4) -> dict:
    """Reload the export and compare its logits with the trained (ZeRO-sharded) model's on the probe."""
    import torch
    from transformers import AutoModelForCausalLM

    if not probe_path.exists():
        return {"probe": "absent"}
    probe = torch.load(probe_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").eval()
    with torch.no_grad():
        logits = model(input_ids=probe["input_ids"]).logits.float()
    max_diff = (logits - probe["logits"]).abs().max().item()
    report = {"probe_max_abs_diff": max_diff, "probe_atol": atol}
    exact = probe.get("dtype", "float32") == "float32" and model.dtype == torch.float32
    report["probe_checked"] = exact  # bf16 runs differ by rounding; the difference is reported only
    if exact and max_diff > atol:
        raise RuntimeError(f"converted model disagrees with the trained weights: max |logit diff| {max_diff:.3g}")
    return report


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zero-dir", required=True, help="training output with global_step*/ and latest")
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--dtype", required=True, choices=["float32", "bfloat16"])
    parser.add_argument("--max-shard-size", required=True)
    parser.add_argument(
        "--training-work-dir", help="the train job's checkpoints for resuming, removed once the model is converted"
    )
    args = parser.parse_args(argv)
    check_checkpoint(Path(args.zero_dir))
    report = convert(args.zero_dir, args.out_dir, args.dtype, args.max_shard_size)
    print(json.dumps(report))
    if args.training_work_dir:
        # Kept by the train job until now: a job killed after its final save but before it exited is
        # re-run by Snakemake, and resumes from its last checkpoint instead of step 0.
        shutil.rmtree(args.training_work_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
