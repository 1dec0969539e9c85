"""Fetch a base model from the Hugging Face hub into the model cache (a localrule: login node).

Compute nodes are often offline; every job after this one reads the model from this folder. Only what
from_pretrained needs is fetched (no .bin/.pth duplicates of the safetensors, no original/ folders).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from workflow_scripts.lib.io_utils import one_line_errors

WANTED = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]


def fetch(repo: str, revision: str, out_dir: Path) -> Path:
    from huggingface_hub import snapshot_download

    partial = out_dir.with_name(out_dir.name + ".partial")  # a killed fetch never looks finished
    snapshot_download(
        repo_id=repo, revision=revision, local_dir=partial, allow_patterns=WANTED, token=os.environ.get("HF_TOKEN")
    )
    shutil.rmtree(partial / ".cache", ignore_errors=True)
    if not any(partial.glob("*.safetensors")):
        raise RuntimeError(f"{repo}@{revision} has no safetensors weights; fetch it by hand into {out_dir}")
    partial.rename(out_dir)
    return out_dir


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", required=True, help="hub model name, e.g. Qwen/Qwen2.5-1.5B-Instruct")
    parser.add_argument("--revision", default="main", help="branch, tag or commit to pin")
    parser.add_argument("--out-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    print(f"{args.repo}@{args.revision} -> {fetch(args.repo, args.revision, args.out_dir)}")


if __name__ == "__main__":
    main()
