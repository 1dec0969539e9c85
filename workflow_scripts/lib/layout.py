"""Where every result lives under results_dir: the one spelling of the path grammar.

    data/{dataset}/normalized.parquet               the downloaded table
    data/{dataset}/bins/bin-{k}.parquet             one difficulty bin (manifest.json beside)
    data/{dataset}/heldout/{train,heldout}-{k}.parquet   a bin's training and held-out parts
    data/{dataset}/irt/...                          our IRT fit (responses, difficulties, items, report)
    models/{model}/{dataset}/train-{row}/zero|hf    a trained row's ZeRO checkpoint, its HF model
    work/train/{model}/{dataset}/train-{row}        trainer checkpoints for resuming
    pilot/resume_drill/{model}/{dataset}/train-{row}/zero   the pilot's resume drill (work/pilot/... beside)
    pilot/memory_probe/{model}/{dataset}.json      the pilot's memory probe (peak memory at max_length)
    raw/{model}/{dataset}/train-{row}/test-{bin}.json     a row's prompts and responses on one bin (generate)
    cells/{model}/{dataset}/train-{row}/test-{bin}.json   one cell, its .samples.jsonl beside it (score)
    tables/{model}/{dataset}.csv, tables/{cells,seeds}.{csv,parquet}   per-pair and whole-run tables
    figures/{model}/{dataset}/{name}.{png,pdf}      a pair's figures; figures/{kind}/{name}.* the summaries
    logs/{rule}/..., benchmarks/{rule}/...          mirror the outputs they belong to
    .run.lock                                       the run that holds this results folder

`row` is a row name with its tags (cell_names.py: `base`, `3`, `3-heldout-seed43`, `icl4-bin3`).
Used by the rules (rules/common/paths.smk; their output patterns are these paths with wildcards in
place of the values), the steps that name files, grid_status, the benchmarks and the test fixtures.
Every function takes the results folder first; paths are joined, never normalised, so a relative
results_dir gives relative paths (what the rules declare).
"""

from __future__ import annotations

import os
import socket

from workflow_scripts.lib import cell_names

SAMPLES_SUFFIX = ".samples.jsonl"
LOCK_NAME = ".run.lock"
RESUME_DRILL = os.path.join("pilot", "resume_drill")  # under results_dir, logs/, benchmarks/ and work/
MEMORY_PROBE = os.path.join("pilot", "memory_probe")  # likewise


def _join(results, *parts) -> str:
    return os.path.join(str(results), *map(str, parts))


# ---- data ---------------------------------------------------------------------------------------


def normalized_table(results, dataset) -> str:
    return _join(results, "data", dataset, "normalized.parquet")


def bins_dir(results, dataset) -> str:
    return _join(results, "data", dataset, "bins")


def bin_file_name(k) -> str:
    return f"bin-{k}.parquet"


def bin_file(results, dataset, k) -> str:
    return os.path.join(bins_dir(results, dataset), bin_file_name(k))


def irt_file(results, dataset, name) -> str:
    """A file of our IRT fit (rules/irt.smk): responses.parquet, with_difficulty.parquet, items.parquet,
    report.json."""
    return _join(results, "data", dataset, "irt", name)


def heldout_dir(results, dataset) -> str:
    return _join(results, "data", dataset, "heldout")


def heldout_part_name(part: str, k) -> str:
    """`train` (what a row may learn from) or `heldout` (what its cells are scored on) of bin k."""
    if part not in ("train", "heldout"):
        raise ValueError(f"a bin's part is 'train' or 'heldout', not {part!r}")
    return f"{part}-{k}.parquet"


def test_file(results, dataset, test_bin, heldout: bool) -> str:
    """The items a cell is scored on: the whole test bin, or its held-out part."""
    if heldout:
        return os.path.join(heldout_dir(results, dataset), heldout_part_name("heldout", test_bin))
    return bin_file(results, dataset, test_bin)


def pool_file(results, dataset, source_bin, heldout: bool) -> str:
    """The items a bin's row may learn from: the whole bin, or its training part."""
    if heldout:
        return os.path.join(heldout_dir(results, dataset), heldout_part_name("train", source_bin))
    return bin_file(results, dataset, source_bin)


# ---- rows and models ----------------------------------------------------------------------------


def row_names(bins, eval_split: str, seeds, in_context_k: int = 0, every_seed: bool = True) -> list[str]:
    """The rows of a (model, dataset) table: the base model, one trained row per bin and seed, and
    with in_context_k one in-context row per source bin and seed (every_seed=False: the first seed's)."""
    runs = list(seeds) if every_seed else list(seeds)[:1]
    names = [cell_names.base_name(eval_split)]
    names += [cell_names.bin_name(b, eval_split, seed) for seed in runs for b in bins]
    if in_context_k and every_seed:
        names += [cell_names.in_context_name(in_context_k, b, eval_split, seed) for seed in runs for b in bins]
    return names


def bins_of(config: dict, dataset) -> list[str]:
    """A dataset's bin ids in a config (its own n_bins, else the global one)."""
    return [str(k) for k in range(config["datasets"][dataset].get("n_bins", config["n_bins"]))]


def seeds_of(config: dict) -> list[int]:
    """Training seeds; each trained (and in-context) row is repeated per seed. Default: training.seed."""
    return config.get("seeds") or [config["training"].get("seed", cell_names.STUDY_SEED)]


def rows_of(config: dict, dataset, every_seed: bool = True) -> list[str]:
    """The rows of a (model, dataset) table in a config (schema defaults filled in)."""
    return row_names(
        bins_of(config, dataset), config["eval_split"], seeds_of(config), config["in_context"]["k"], every_seed
    )


def row_dir(results, kind: str, model, dataset, row) -> str:
    return _join(results, kind, model, dataset, f"train-{row}")


def zero_checkpoint_dir(results, model, dataset, row) -> str:
    return os.path.join(row_dir(results, "models", model, dataset, row), "zero")


def trained_model_dir(results, model, dataset, row) -> str:
    return os.path.join(row_dir(results, "models", model, dataset, row), "hf")


def training_work_dir(results, model, dataset, row) -> str:
    """Trainer checkpoints for resuming a killed job; not an output, so a failed job keeps them."""
    return row_dir(results, os.path.join("work", "train"), model, dataset, row)


def resume_drill_dir(results, model, dataset, row) -> str:
    """The pilot's second training of its row (rules/pilot.smk); temporary, like a ZeRO checkpoint."""
    return os.path.join(row_dir(results, RESUME_DRILL, model, dataset, row), "zero")


def resume_drill_work_dir(results, model, dataset, row) -> str:
    return row_dir(results, os.path.join("work", RESUME_DRILL), model, dataset, row)


def memory_probe(results, model, dataset) -> str:
    """The pilot's memory probe of a model with a dataset's training settings (rules/pilot.smk)."""
    return _join(results, MEMORY_PROBE, model, f"{dataset}.json")


def memory_probe_part(results, kind: str, model, dataset) -> str:
    """The probe's log (kind "logs"), benchmark ("benchmarks") or work folder ("work")."""
    suffix = {"logs": ".log", "benchmarks": ".tsv", "work": ""}[kind]
    return _join(results, kind, MEMORY_PROBE, model, f"{dataset}{suffix}")


# ---- cells --------------------------------------------------------------------------------------


def cell(results, model, dataset, row, test_bin) -> str:
    return os.path.join(row_dir(results, "cells", model, dataset, row), f"test-{test_bin}.json")


def samples(cell_path):
    """The per-question file beside a cell (same type as given: str or Path)."""
    return type(cell_path)(str(cell_path).removesuffix(".json") + SAMPLES_SUFFIX)


def raw_file(results, model, dataset, row, test_bin) -> str:
    """A row's generation on one test bin: each request's arguments and the model's responses."""
    return os.path.join(row_dir(results, "raw", model, dataset, row), f"test-{test_bin}.json")


def row_log(results, rule: str, model, dataset, row) -> str:
    """The log of a per-row job (generate, score, train, convert)."""
    return row_dir(results, os.path.join("logs", rule), model, dataset, row) + ".log"


def row_benchmark(results, rule: str, model, dataset, row) -> str:
    """The benchmark file of a per-row job (train, convert, generate, the pilot's resume drill)."""
    return row_dir(results, os.path.join("benchmarks", rule), model, dataset, row) + ".tsv"


def job_log(results, rule: str, *names) -> str:
    """The log of a job that is not per row: logs/<rule>/<names...>.log, or logs/<rule>.log without names."""
    return (
        _join(results, "logs", rule, *names[:-1], f"{names[-1]}.log")
        if names
        else _join(results, "logs", f"{rule}.log")
    )


def job_benchmark(results, rule: str, *names) -> str:
    """The benchmark file of a job that is not per row (irt): benchmarks/<rule>/<names...>.tsv."""
    return _join(results, "benchmarks", rule, *names[:-1], f"{names[-1]}.tsv")


def cluster_check_report(results, rule: str) -> str:
    """What a cluster_check job of a GPU rule found (node, GPUs, CPUs)."""
    return _join(results, "cluster_check", f"{rule}.json")


def pilot_report(results) -> str:
    return _join(results, "pilot", "report.json")


# Where each NLTK package lands inside an NLTK data folder (NLTK's own layout): the fetch_nltk_data
# step writes there, the score jobs of a task that needs it wait for it.
NLTK_CATEGORY = {"punkt_tab": "tokenizers"}


def nltk_package_dir(nltk_data, package: str) -> str:
    return os.path.join(str(nltk_data), NLTK_CATEGORY[package], package)


# ---- tables and figures -------------------------------------------------------------------------


def pair_table(results, model, dataset) -> str:
    """The tidy table of one (model, dataset): its cells with their intervals (rule aggregate)."""
    return _join(results, "tables", model, f"{dataset}.csv")


def run_table(results, name: str, ext: str) -> str:
    """A table of the whole run: `cells` (every pair's rows) or `seeds` (the summary over seeds)."""
    return _join(results, "tables", f"{name}.{ext}")


def pair_figure(results, model, dataset, name: str, ext: str) -> str:
    return _join(results, "figures", model, dataset, f"{name}.{ext}")


def summary_figure(results, kind: str, name, ext: str) -> str:
    """`change_by_distance/<dataset>` or `change_grid/<model>`."""
    return _join(results, "figures", kind, f"{name}.{ext}")


# ---- the run lock -------------------------------------------------------------------------------


def run_lock(results) -> str:
    return _join(results, LOCK_NAME)


def lock_holder(results) -> tuple[str, int] | None:
    """(host, pid) of the run that holds the results folder, or None when no lock is there."""
    try:
        host, pid = open(run_lock(results)).read().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_is_live(results) -> bool:
    """Whether a run holds the lock: its process lives here, or it runs on another machine (trusted)."""
    holder = lock_holder(results)
    if holder is None:
        return False
    host, pid = holder
    return host != socket.gethostname() or process_alive(pid)
