"""A file a step reads and cannot parse ends that step with one line, `error: ...`, that names the file
and the fix, with no traceback and no output written; a library's own error elsewhere keeps its
traceback. Each step's main() is called directly on a corrupt copy of one of its inputs.

Covered, per step (each kind of file it reads):
- data: the local source (parquet, jsonl);
- binning: the dataset table (parquet);
- heldout_split: the bins manifest (JSON: truncated, an array, no n_bins) and a bin file (parquet:
  empty, no item_id);
- irt: the response table (CSV: empty, malformed; parquet) and the dataset table (parquet);
- responses: an lm-eval samples file (JSON lines: a truncated line, an array, no doc_id, an empty file);
- generation: a test bin, the in-context pool (in_context.prepare_cell), the model folder (config.json,
  a truncated safetensors file), all before the model loads;
- scoring: a raw-output file (truncated JSON, an array, a request without its keys), a test bin, the
  in-context pool without item_id, the tokenizer folder;
- aggregation: a cell file (truncated, metrics of the wrong shape), its per-question file, a per-pair
  table (CSV: empty, other columns);
- seed_summary: the table of every cell (parquet);
- plots: a table (CSV), a model's training.json (truncated, an array, loss_per_step of the wrong shape);
- conversion: the ZeRO checkpoint's config.json, `latest`, a truncated shard, the probe.
cluster_check and fetch_model read no local file (the GPUs and the hub).
"""

from __future__ import annotations

import json

# Imported at collection, not inside the first test that reads a dataset: its log handler keeps the
# stderr it finds at import, and a test's captured stderr is closed after that test.
import datasets  # noqa: F401
import numpy as np
import pandas as pd
import pytest

from tests.support import synthetic_cells
from workflow_scripts.demo import sample_data
from workflow_scripts.lib import evaluation
from workflow_scripts.steps import (
    aggregation,
    binning,
    conversion,
    data,
    generation,
    heldout_split,
    irt,
    plots,
    responses,
    seed_summary,
)

# ---- small valid inputs, and ways to break them ------------------------------------------------------


def arc_bin(path, rows=6):
    """A test bin as the bin step writes it (arc rows with item_id)."""
    table = data.normalize(sample_data.arc_rows(rows))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path)
    return path


def truncated(path):
    """The first half of a valid file: a copy or a write cut off."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def written(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


GARBAGE = b"\x00\x01 these bytes are no file format \xff\n"


# ---- the cases: each returns (main, argv, the corrupt file, the outputs that must not appear) --------


def data_parquet(tmp):
    source = written(tmp / "arc.parquet", GARBAGE)
    out = tmp / "out.parquet"
    return data.main, ["--source", json.dumps({"path": str(source)}), "--out", str(out)], source, [out]


def data_jsonl(tmp):
    source = written(tmp / "arc.jsonl", '{"id": "a", "question": "Q?"}\n{"id": "b", "quest')
    out = tmp / "out.parquet"
    return data.main, ["--source", json.dumps({"path": str(source)}), "--out", str(out)], source, [out]


def binning_table(tmp):
    table = truncated(arc_bin(tmp / "arc.parquet", rows=30))
    out = tmp / "bins"
    argv = ["--data", str(table), "--n-bins", "3", "--quantile-key", "1pl_quantile", "--out-dir", str(out)]
    return binning.main, argv, table, [out]


def heldout(tmp, manifest=None, bin_1=None):
    """A bins folder of two bins; `manifest` or `bin_1` replaces that file's content."""
    bins = tmp / "bins"
    for k in range(2):
        arc_bin(bins / f"bin-{k}.parquet")
    written(bins / "manifest.json", json.dumps({"n_bins": 2}) if manifest is None else manifest)
    if bin_1 is not None:
        written(bins / "bin-1.parquet", bin_1)
    out = tmp / "heldout"
    argv = ["--bins-dir", str(bins), "--fraction", "0.3", "--seed", "1", "--out-dir", str(out)]
    bad = bins / ("manifest.json" if manifest is not None else "bin-1.parquet")
    return heldout_split.main, argv, bad, [out]


def heldout_bin_without_item_id(tmp):
    main, argv, bad, outputs = heldout(tmp)
    pd.read_parquet(bad).drop(columns="item_id").to_parquet(bad)
    return main, argv, bad, outputs


def irt_case(tmp, responses_file=None, data_file=None):
    """An IRT fit where the given file is the broken one and the other is whole."""
    bad = responses_file or data_file
    good = pd.DataFrame({"subject": ["s1", "s2"] * 3, "item_id": [f"i{k}" for k in range(6)], "correct": [0, 1] * 3})
    if responses_file is None:
        responses_file = tmp / "responses.parquet"
        good.to_parquet(responses_file)
    if data_file is None:
        data_file = tmp / "data.parquet"
        pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "question": ["Q"] * 6}).to_parquet(data_file)
    outs = [tmp / "joined.parquet", tmp / "items.parquet", tmp / "report.json"]
    argv = ["--responses", str(responses_file), "--data", str(data_file), "--model", "1pl", "--min-responses", "1"]
    argv += ["--out", str(outs[0]), "--items-out", str(outs[1]), "--report", str(outs[2])]
    return irt.main, argv, bad, outs


def samples_case(tmp, content):
    logs = tmp / "logs"
    written(logs / "model-a" / "samples_arc_2024-01-01T00-00-00.jsonl", '{"doc_id": 0, "acc": 1.0, "filter": "none"}\n')
    bad = written(logs / "model-b" / "samples_arc_2024-01-01T00-00-00.jsonl", content)
    out = tmp / "responses.parquet"
    return responses.main, ["--logs", str(logs), "--metric", "acc,none", "--out", str(out)], bad, [out]


def generation_case(tmp, test_file=None, pool=None, model=None):
    test_file = test_file or arc_bin(tmp / "bins" / "bin-0.parquet")
    raw = tmp / "raw" / "test-0.json"
    argv = ["--task", "cross_difficulty_arc", "--bin", "0", str(test_file), str(raw)]
    argv += ["--model", str(model or tmp / "no-model-needed"), "--backend", "hf", "--dtype", "float32"]
    argv += ["--batch-size", "1", "--seed", "1"]
    if pool:
        argv += ["--in-context-k", "2", "--in-context-pool", str(pool), "--in-context-seed", "1"]
        argv += ["--prompt-format", "arc"]
    return generation.main, argv, pool or test_file, [raw]


def model_folder(tmp, config="{}"):
    folder = tmp / "model"
    written(folder / "config.json", config)
    written(folder / "tokenizer_config.json", "{}")
    return folder


def generation_safetensors(tmp):
    from safetensors.numpy import save_file

    folder = model_folder(tmp)
    save_file({"weight": np.zeros((64, 64), dtype=np.float32)}, str(folder / "model.safetensors"))
    main, argv, _, outputs = generation_case(tmp, model=folder)
    return main, argv, truncated(folder / "model.safetensors"), outputs


GENERATION = {
    "format": evaluation.RAW_FORMAT,
    "task": "cross_difficulty_arc",
    "model_path": "m",
    "backend": "hf",
    "dtype": "float32",
    "batch_size": "1",
    "max_gen_toks": None,
    "seed": 1,
    "versions": {},
    "row_seconds": 1.0,
}


def scoring_case(tmp, raw=None, test_file=None, pool=None, tokenizer=None):
    from workflow_scripts.steps import scoring

    test_file = test_file or arc_bin(tmp / "bins" / "bin-0.parquet")
    raw_file = tmp / "raw" / "test-0.json"
    written(raw_file, json.dumps({"generation": GENERATION, "requests": []}) if raw is None else raw)
    cell = tmp / "cells" / "test-0.json"
    argv = ["--task", "cross_difficulty_arc", "--cell", "0", str(test_file), str(raw_file), str(cell)]
    if tokenizer:
        argv += ["--tokenizer", str(tokenizer)]
    if pool:
        argv += ["--in-context-k", "2", "--in-context-pool", str(pool), "--in-context-seed", "1"]
        argv += ["--prompt-format", "arc"]
    if pool:
        bad = pool
    elif tokenizer:
        bad = tokenizer / "tokenizer_config.json"
    else:
        bad = raw_file if raw is not None else test_file
    return scoring.main, argv, bad, [cell, cell.with_suffix(".samples.jsonl")]


def scoring_pool_without_item_id(tmp):
    pool = arc_bin(tmp / "bins" / "bin-1.parquet")
    pd.read_parquet(pool).drop(columns="item_id").to_parquet(pool)
    return scoring_case(tmp, pool=pool)


def scoring_tokenizer(tmp):
    folder = model_folder(tmp)
    written(folder / "tokenizer_config.json", '{"model_max_length": 32768, "chat_te')
    return scoring_case(tmp, tokenizer=folder)


IDS = [f"q{k}" for k in range(4)]
BOOTSTRAP = ["--resamples", "10", "--seed", "0", "--confidence", "0.9"]


def aggregation_cells(tmp, cell=None, samples=None):
    path = tmp / "cells" / "m" / "d" / "train-base" / "test-0.json"
    synthetic_cells.write_cell(path, "m", "d", "base", 0, np.array([1, 0, 1, 1]), IDS)
    if cell is not None:
        written(path, cell)
    if samples is not None:
        written(path.with_suffix(".samples.jsonl"), samples)
    out = tmp / "table.csv"
    bad = path if samples is None else path.with_suffix(".samples.jsonl")
    return aggregation.main, ["--cells", str(path), *BOOTSTRAP, "--csv", str(out)], bad, [out]


def aggregation_metrics_list(tmp):
    main, argv, path, outputs = aggregation_cells(tmp)
    cell = json.loads(path.read_text())
    written(path, json.dumps({**cell, "metrics": [["acc,none", 0.5]]}))
    return main, argv, path, outputs


def aggregation_tables(tmp, content):
    table = written(tmp / "pair.csv", content)
    out = tmp / "all.csv"
    return aggregation.main, ["--tables", str(table), "--csv", str(out)], table, [out]


def seed_table(tmp):
    table = tmp / "cells.parquet"
    pd.DataFrame({"model": ["m"], "value": [0.5]}).to_parquet(table)
    outs = [tmp / "seeds.csv", tmp / "seeds.parquet"]
    argv = ["--table", str(truncated(table)), "--csv", str(outs[0]), "--parquet", str(outs[1])]
    return seed_summary.main, argv, table, outs


def plots_pair(tmp):
    table = written(tmp / "pair.csv", 'model,dataset,row_label\n"m,d,base\n')
    pngs = [tmp / "change.png", tmp / "accuracy.png"]
    argv = ["--dpi", "40", "pair", "--table", str(table), "--model", "m", "--dataset", "d"]
    argv += ["--change-png", str(pngs[0]), "--accuracy-png", str(pngs[1])]
    return plots.main, argv, table, pngs + [p.with_suffix(".pdf") for p in pngs]


def plots_loss(tmp, record):
    models = [tmp / "models" / f"train-{k}" for k in range(2)]
    written(models[0] / "training.json", json.dumps({"loss_per_step": [{"step": 1, "loss": 2.0}]}))
    bad = written(models[1] / "training.json", record)
    png = tmp / "loss.png"
    argv = ["--dpi", "40", "loss", "--model-dir", "0", str(models[0]), "--model-dir", "1", str(models[1])]
    argv += ["--model", "m", "--dataset", "d", "--png", str(png), "--eval-split", "all"]
    return plots.main, argv, bad, [png, png.with_suffix(".pdf")]


def checkpoint(zero):
    """A ZeRO checkpoint folder as training leaves it: config, `latest`, the tag's shards, the probe."""
    import torch

    written(zero / "config.json", '{"model_type": "qwen2"}')
    written(zero / "latest", "global_step2")
    (zero / "global_step2").mkdir()
    for kind in ("model", "optim"):
        torch.save({"weights": torch.zeros(256)}, zero / "global_step2" / f"zero_pp_rank_0_mp_rank_00_{kind}_states.pt")
    torch.save({"input_ids": torch.zeros(1, 4, dtype=torch.long)}, zero / "probe.pt")
    return zero


def conversion_case(tmp, break_one):
    """The conversion of a whole checkpoint but for the file break_one(checkpoint folder) breaks."""
    zero = checkpoint(tmp / "zero")
    bad = break_one(zero)
    out = tmp / "model"
    argv = ["--zero-dir", str(zero), "--out-dir", str(out), "--dtype", "float32", "--max-shard-size", "1GB"]
    return conversion.main, argv, bad, [out]


def generation_model_config(tmp):
    folder = model_folder(tmp, config='{"model_type": "qwen2", "hidden_si')
    main, argv, _, outputs = generation_case(tmp, model=folder)
    return main, argv, folder / "config.json", outputs


CASES = {
    "data: local parquet not parquet": data_parquet,
    "data: local jsonl cut off": data_jsonl,
    "binning: dataset table truncated": binning_table,
    "heldout_split: manifest truncated": lambda tmp: heldout(tmp, manifest='{"n_bins": '),
    "heldout_split: manifest an array": lambda tmp: heldout(tmp, manifest="[2]"),
    "heldout_split: manifest without n_bins": lambda tmp: heldout(tmp, manifest='{"counts": {}}'),
    "heldout_split: bin file empty": lambda tmp: heldout(tmp, bin_1=b""),
    "heldout_split: bin file without item_id": heldout_bin_without_item_id,
    "irt: response csv empty": lambda tmp: irt_case(tmp, responses_file=written(tmp / "r.csv", "")),
    "irt: response csv malformed": lambda tmp: irt_case(
        tmp, responses_file=written(tmp / "r.csv", 'subject,item_id,correct\n"s1,i0,1\n')
    ),
    "irt: response parquet not parquet": lambda tmp: irt_case(tmp, responses_file=written(tmp / "r.parquet", GARBAGE)),
    "irt: dataset table truncated": lambda tmp: irt_case(
        tmp, data_file=truncated(arc_bin(tmp / "arc.parquet", rows=30))
    ),
    "responses: samples line cut off": lambda tmp: samples_case(tmp, '{"doc_id": 0, "acc": 1.0, "filt'),
    "responses: samples line an array": lambda tmp: samples_case(tmp, "[0, 1.0]\n"),
    "responses: samples line without doc_id": lambda tmp: samples_case(tmp, '{"acc": 1.0, "filter": "none"}\n'),
    "responses: samples file empty": lambda tmp: samples_case(tmp, ""),
    "generation: test bin truncated": lambda tmp: generation_case(
        tmp, test_file=truncated(arc_bin(tmp / "bins" / "bin-0.parquet"))
    ),
    "generation: in-context pool not parquet": lambda tmp: generation_case(
        tmp, pool=written(tmp / "bins" / "bin-1.parquet", GARBAGE)
    ),
    "generation: model config.json truncated": generation_model_config,
    "generation: model safetensors truncated": generation_safetensors,
    "scoring: raw file truncated": lambda tmp: scoring_case(tmp, raw='{"generation": {"format": 1, "ta'),
    "scoring: raw file an array": lambda tmp: scoring_case(tmp, raw="[]"),
    "scoring: raw request without its keys": lambda tmp: scoring_case(
        tmp, raw=json.dumps({"generation": GENERATION, "requests": [{"task": "t", "doc_id": 0}]})
    ),
    "scoring: test bin not parquet": lambda tmp: scoring_case(
        tmp, test_file=written(tmp / "bins" / "bin-0.parquet", GARBAGE)
    ),
    "scoring: in-context pool without item_id": scoring_pool_without_item_id,
    "scoring: tokenizer file truncated": scoring_tokenizer,
    "aggregation: cell file truncated": lambda tmp: aggregation_cells(tmp, cell='{"model": "m", "datas'),
    "aggregation: cell metrics an array": aggregation_metrics_list,
    "aggregation: per-question file not JSON": lambda tmp: aggregation_cells(tmp, samples=GARBAGE),
    "aggregation: table empty": lambda tmp: aggregation_tables(tmp, ""),
    "aggregation: table of other columns": lambda tmp: aggregation_tables(tmp, "a,b\n1,2\n"),
    "seed_summary: table truncated": seed_table,
    "plots: table malformed": plots_pair,
    "plots: training.json truncated": lambda tmp: plots_loss(tmp, '{"loss_per_step": [{"step": 1, "lo'),
    "plots: training.json an array": lambda tmp: plots_loss(tmp, "[]"),
    "plots: training.json loss_per_step not objects": lambda tmp: plots_loss(tmp, '{"loss_per_step": [[1, 2.0]]}'),
    "conversion: config.json truncated": lambda tmp: conversion_case(
        tmp, lambda zero: written(zero / "config.json", '{"model_type": "qw')
    ),
    "conversion: latest empty": lambda tmp: conversion_case(tmp, lambda zero: written(zero / "latest", "")),
    "conversion: shard truncated": lambda tmp: conversion_case(
        tmp, lambda zero: truncated(zero / "global_step2" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    ),
    "conversion: probe not a torch file": lambda tmp: conversion_case(
        tmp, lambda zero: written(zero / "probe.pt", GARBAGE)
    ),
}


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_an_unparsable_file_is_named_in_one_line(build, tmp_path, capfd):
    main, argv, bad, outputs = build(tmp_path)
    capfd.readouterr()  # what building the case printed
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert stopped.value.code == 2 and len(errors) == 1, err[-3000:]
    assert err.strip().splitlines()[-1] == errors[0], err[-3000:]  # the log's last line
    assert str(bad) in errors[0] and "fix" in errors[0], errors[0]
    assert "Traceback" not in err, err[-3000:]
    assert not [path for path in outputs if path.exists()], errors[0]


def test_a_library_error_after_the_files_are_read_keeps_its_traceback(tmp_path, capfd, monkeypatch):
    """The named reads catch parse errors only: a library failing on good data still shows where."""
    main, argv, _, outputs = binning_table(tmp_path)
    arc_bin(tmp_path / "arc.parquet", rows=30)  # the same file, whole
    to_parquet = pd.DataFrame.to_parquet
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, path, **_: to_parquet(self, path, engine="none"))
    capfd.readouterr()
    with pytest.raises(SystemExit):
        main(argv)
    err = capfd.readouterr().err
    assert "Traceback" in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: ValueError in pandas (traceback above)"), err[-3000:]
    assert not [path for folder in outputs for path in folder.rglob("*")]  # the write failed before any file
