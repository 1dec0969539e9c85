"""Bad input fails before any training or evaluation job, with one line naming the field or file and
the fix, and leaves finished results alone. Each case here is a row of the bad-input table in
config/README.md ("Bad input, faults and secrets")."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tests.support import workflow as conftest
from tests.support.workflow import REPO, snakemake
from workflow_scripts.demo import sample_data
from workflow_scripts.steps import data

SENTINEL = "results/demo/cells/tiny-qwen2/arc/train-base/test-0.json"


def demo_config(tiny_model) -> dict:
    config = conftest.demo_config()
    config["models"]["tiny-qwen2"]["path"] = str(tiny_model)
    return config


def finished_result(workdir):
    """A result from an earlier run that a failing run must not touch."""
    path = workdir / SENTINEL
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"finished": true}')
    return path


def run(workdir, config: dict, dry_run: bool):
    path = workdir / "bad.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    args = ["-n"] if dry_run else ["--cores", "1", "--keep-going"]
    result = snakemake(*args, "--configfile", str(path), workdir=workdir, check=False, timeout=600)
    return result, result.stdout + result.stderr


def edit(config, dotted: str, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})  # a section the config leaves to the schema's defaults
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


DELETE = object()

CONFIG_CASES = [
    ("unknown top-level key", [("resuls_dir", "x")], "unknown key(s) ['resuls_dir']"),
    ("misspelled nested key", [("training.epochz", 1)], "training: unknown key(s) ['epochz']"),
    ("n_bins below 2", [("n_bins", 1)], "n_bins = 1"),
    ("n_bins not an integer", [("n_bins", 2.5)], "n_bins = 2.5"),
    ("epochs zero", [("training.epochs", 0)], "training.epochs = 0"),
    ("negative learning rate", [("training.learning_rate", -1e-5)], "training.learning_rate = -1e-05"),
    ("model entry not defined (null)", [("models.tiny-qwen2", None)], "models.tiny-qwen2 = None"),
    ("model name with a slash", [("models.org/tiny", {"path": "x"})], "name 'org/tiny' is not allowed"),
    ("dataset name with ..", [("datasets...", {"source": {"path": "x"}})], "name '..' is not allowed"),
    ("model name with a space", [("models.tiny qwen", {"path": "x"})], "name 'tiny qwen' is not allowed"),
    (
        "dataset name with a shell metacharacter",
        [("datasets.arc;rm", {"source": {"path": "x"}})],
        "name 'arc;rm' is not allowed",
    ),
    (
        "source with both hub and path",
        [("datasets.arc.source.hub", "BatsResearch/Cross-Difficulty")],
        "datasets.arc.source: give exactly one",
    ),
    ("malformed headline metric", [("datasets.arc.headline_metric", "acc")], "is not 'metric,filter'"),
    (
        "headline metric the task never reports",
        [("datasets.arc.headline_metric", "accuracy,none")],
        "datasets.arc.headline_metric = 'accuracy,none' is not a score tasks/cross_difficulty_arc.yaml declares",
    ),
    ("unknown prompt format", [("datasets.arc.prompt_format", "arcc")], "datasets.arc.prompt_format = 'arcc'"),
    ("vllm without a GPU", [("evaluation.backend", "vllm")], "fix: set evaluation.backend: hf"),
    (
        "missing accelerate config",
        [("launch.accelerate_config", "config/accelerate/nope.yaml")],
        "launch.accelerate_config",
    ),
    (
        "task without a task file",
        [("datasets.arc.task", "cross_difficulty_nope")],
        "no file tasks/cross_difficulty_nope.yaml",
    ),
    ("eval_split misspelled", [("eval_split", "held-out")], "eval_split = 'held-out'"),
    ("heldout_fraction of 1", [("heldout_fraction", 1)], "heldout_fraction = 1"),
    ("no seeds", [("seeds", [])], "seeds = []"),
    ("a seed listed twice", [("seeds", [42, 42])], "seeds = [42, 42]"),
    (
        "a model's own training seed",
        [("models.tiny-qwen2.training", {"seed": 7})],
        "models.tiny-qwen2.training.seed: a run's seed comes from",
    ),
    ("negative in-context k", [("in_context.k", -1)], "in_context.k = -1"),
    ("a fixed-size rule without runtime", [("resources.bin.runtime", DELETE)], "resources.bin: no runtime"),
    (
        "a sized job's model without a parameter count",
        [("resources.train.runtime", DELETE), ("models.tiny-qwen2.path", "not-built-yet")],
        "models.tiny-qwen2: no `parameters` and no not-built-yet/config.json",
    ),
    ("pilot naming an unknown model", [("pilot", [{"model": "nope"}])], "pilot[0].model: 'nope' is not in models"),
    (
        "pilot bin beyond the dataset's bins",
        [("pilot", [{"dataset": "arc", "train_bin": 7}])],
        "pilot[0].train_bin: 7 but arc has 3 bins",
    ),
    ("the old checkpoint setting", [("launch.save_steps", 250)], "launch: unknown key(s) ['save_steps']"),
    # Issue 23: values that name a file, folder, model, bin or count, or size a batch, a prompt or a job,
    # checked against what exists and what the step will need (config/README.md lists them).
    (
        "a local model path that does not exist",
        [("models.tiny-qwen2.path", "models/nowhere")],
        "models.tiny-qwen2.path: models/nowhere does not exist and none of the workflow's rules makes it",
    ),
    (
        "a local data source that does not exist",
        [("datasets.arc.source", {"path": "data/nowhere.jsonl"})],
        "datasets.arc.source.path: data/nowhere.jsonl does not exist and none of the workflow's rules makes it",
    ),
    (
        "max_length beyond the model's context",
        [("training.max_length", 100000)],
        "training.max_length = 100000 (tiny-qwen2 on arc) is more than tiny-qwen2's context (4096 tokens",
    ),
    (
        "a fixed runtime beyond the partition's limit",
        [("resources.bin.runtime", 5000)],
        "resources.bin.runtime = 5000 is more than cluster.max_runtime = 1440",
    ),
    (
        "fixed memory beyond the partition's limit",
        [("resources.convert.mem_mb", 900000)],
        "resources.convert.mem_mb = 900000 is more than cluster.max_mem_mb = 500000",
    ),
    (
        "more GPUs than a node has",
        [("resources.generate.gpu", 16)],
        "resources.generate: gpu 16 is more than cluster.gpus_per_node = 8",
    ),
    (
        "train GPUs that do not spread evenly over nodes",
        [("resources.train.gpu", 10), ("cluster.gpus_per_node", 4)],
        "resources.train: gpu 10: 10 GPUs do not spread evenly over 3 nodes of at most 4",
    ),
    (
        "a train job across nodes of one GPU each",
        [("resources.train.gpu", 2), ("cluster.gpus_per_node", 1)],
        "resources.train: gpu 2 over 2 nodes of one GPU each",
    ),
    (
        "a convert job no CPU node holds",
        [("resources.convert", {"gpu": 0, "threads": 1, "runtime": 30}), ("cluster.max_mem_mb", 1000)],
        "resources.convert: converting tiny-qwen2 (0.0B parameters) needs ~3 GB of host memory",
    ),
    ("a batch size lm-eval does not take", [("evaluation.batch_size", "large")], "evaluation.batch_size = 'large'"),
    (
        "the old single-row pilot",
        [("pilot", {"model": "tiny-qwen2", "dataset": "arc"})],
        "pilot is a list of entries now (one per GPU path to prove); fix: write it as pilot: [",
    ),
    (
        "a memory probe with a resume drill",
        [("pilot", [{"model": "tiny-qwen2", "dataset": "arc", "memory_probe": True, "resume_drill": True}])],
        "pilot[0]: a memory probe trains no row to resume",
    ),
    (
        "pilot naming an unknown dataset",
        [("pilot", [{"dataset": "nope"}])],
        "pilot[0].dataset: 'nope' is not in datasets",
    ),
]


@pytest.mark.parametrize("edits, message", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config(tiny_model, tmp_path, edits, message):
    config = demo_config(tiny_model)
    for dotted, value in edits:
        if dotted.startswith(("models.", "datasets.")) and dotted.count(".") == 1 or dotted == "datasets...":
            section, name = ("datasets", "..") if dotted == "datasets..." else dotted.split(".", 1)
            config[section][name] = value
        else:
            edit(config, dotted, value)
    sentinel = finished_result(tmp_path)
    result, output = run(tmp_path, config, dry_run=False)
    assert result.returncode != 0
    lines = [line for line in output.splitlines() if message in line]
    assert lines and "fix" in lines[0], output[-2000:]
    assert "invalid config, nothing was run" in output
    assert sentinel.read_text() == '{"finished": true}'
    assert not (tmp_path / "results/demo/logs").exists(), "a job ran"


def test_key_given_twice_in_a_config_file(tiny_model, tmp_path):
    """YAML keeps the last of two equal keys silently; the workflow names the key and both lines."""
    text = yaml.safe_dump(demo_config(tiny_model), sort_keys=False)
    first = text.splitlines().index("n_bins: 3") + 1
    path = tmp_path / "twice.yaml"
    path.write_text(text + "n_bins: 4\n")
    sentinel = finished_result(tmp_path)
    result = snakemake("--cores", "1", "--configfile", str(path), workdir=tmp_path, check=False, timeout=600)
    output = result.stdout + result.stderr
    lines = [line for line in output.splitlines() if "given twice" in line]
    last = len(text.splitlines()) + 1
    assert result.returncode != 0 and len(lines) == 1, output[-2000:]
    assert f"{path}: key 'n_bins' is given twice (lines {first} and {last}); fix: keep one of them" in lines[0]
    assert sentinel.read_text() == '{"finished": true}' and not (tmp_path / "results/demo/logs").exists()


def test_nested_keys_given_twice_are_named_with_their_path(tmp_path):
    from workflow_scripts.lib import config_files

    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: 1\n  seed: 1\n  epochs: 2\nmodels:\n  a: {path: x}\n  b: {path: y}\n")
    assert config_files.duplicate_keys(path) == [
        f"{path}: key 'training.epochs' is given twice (lines 2 and 4); fix: keep one of them"
    ]
    with pytest.raises(SystemExit, match="training.epochs"):
        config_files.load(path)


def test_tokenizer_without_chat_template(tiny_model, tmp_path):
    model = tmp_path / "no-template"
    shutil.copytree(tiny_model, model)
    (model / "chat_template.jinja").unlink()
    tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
    tokenizer_config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    config = demo_config(model)
    result, output = run(tmp_path, config, dry_run=True)
    assert result.returncode != 0
    assert "models.tiny-qwen2.path: the tokenizer in" in output and "fix: use an instruct model" in output


def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def arc_rows(n=30):
    return sample_data.arc_rows(n).to_dict("records")


def data_case(name):
    rows = arc_rows()
    if name == "quantile NaN":
        rows[3]["1pl_quantile"] = None
    elif name == "quantile above 1":
        rows[3]["1pl_quantile"] = 1.7
    elif name == "empty bin":
        for row in rows:
            row["1pl_quantile"] = min(row["1pl_quantile"], 0.6)
    elif name == "duplicate item ids":
        rows[4]["id"] = rows[3]["id"]
    elif name == "choices not label/text":
        for row in rows:
            row["choices"] = list(row["choices"]["text"])
    return rows


DATA_CASES = [
    ("quantile column missing", "bin", "quantile column 'difficulty_q' not in the data"),
    (
        "quantile NaN",
        "bin",
        "quantile values must lie in [0, 1]: 1 of 30 rows are NaN or outside (e.g. Synthetic_ARC_0003 (nan))",
    ),
    (
        "quantile above 1",
        "bin",
        "quantile values must lie in [0, 1]: 1 of 30 rows are NaN or outside (e.g. Synthetic_ARC_0003 (1.7))",
    ),
    # A local source on disk is binned at plan time: refused before any job (rule "config").
    ("empty bin", "config", "datasets.arc: difficulty bins [2] of 3 are empty; fix: lower n_bins or add data"),
    ("duplicate item ids", "download", "duplicate item ids"),
    ("choices not label/text", "download", "does not fit prompt_format 'arc'"),
    ("corrupt local file", "download", "could not be read as parquet"),
]


@pytest.mark.parametrize("case, rule, message", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data(tiny_model, tmp_path, case, rule, message):
    config = demo_config(tiny_model)
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    source = tmp_path / "data/arc.jsonl"
    if case == "corrupt local file":
        source = tmp_path / "data/arc.parquet"
        source.parent.mkdir(parents=True)
        source.write_bytes(b"PAR1 this is not parquet")
    elif case != "missing local file":
        write_rows(source, data_case(case))
    config["datasets"]["arc"]["source"] = {"path": str(source)}
    if case == "quantile column missing":
        config["quantile_key"] = "difficulty_q"
    sentinel = finished_result(tmp_path)
    result, output = run(tmp_path, config, dry_run=False)
    assert result.returncode != 0
    if rule == "config":
        assert message in output and "invalid config, nothing was run" in output, output[-2000:]
        assert sentinel.read_text() == '{"finished": true}' and not (tmp_path / "results/demo/logs").exists()
        return
    log = (tmp_path / f"results/demo/logs/{rule}/arc.log").read_text()
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in log, log[-2000:]
    assert sentinel.read_text() == '{"finished": true}'
    for stage in ("train", "generate", "score"):
        assert not (tmp_path / f"results/demo/logs/{stage}").exists(), f"a {stage} job ran"


# Data on disk sizes the training rows at plan time: 30 arc rows in 3 bins of 10 (the sample's spread).
DATA_SIZE_CASES = [
    (
        "too few items per training row",
        {"min_train_rows": 11},
        "datasets.arc: training rows with fewer than min_train_rows = 11 items (bin 0: 10, bin 1: 10, bin 2: 10)",
    ),
    (
        "a held-out fraction that leaves one question per training row",
        {"eval_split": "heldout", "heldout_fraction": 0.9},
        "datasets.arc: training rows with fewer than min_train_rows = 8 items (bin 0: 1, bin 1: 1, bin 2: 1) after holding out heldout_fraction = 0.9",
    ),
    (
        "an in-context k the pools cannot give",
        {"in_context": {"k": 10}},
        "in_context.k = 10 but arc's smallest source pool holds 10 item(s)",
    ),
]


@pytest.mark.parametrize("changes, message", [c[1:] for c in DATA_SIZE_CASES], ids=[c[0] for c in DATA_SIZE_CASES])
def test_data_too_small_for_the_config_is_refused_before_any_job(tiny_model, tmp_path, changes, message):
    config = demo_config(tiny_model)
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    source = tmp_path / "data/arc.jsonl"
    write_rows(source, arc_rows())
    config["datasets"]["arc"]["source"] = {"path": str(source)}
    config["pilot"] = [{"dataset": "arc"}]
    config.update(changes)
    sentinel = finished_result(tmp_path)
    for dry_run in (True, False):
        result, output = run(tmp_path, config, dry_run=dry_run)
        lines = [line for line in output.splitlines() if message in line]
        assert result.returncode != 0 and lines and "fix:" in lines[0], output[-3000:]
        assert "invalid config, nothing was run" in output
    assert sentinel.read_text() == '{"finished": true}' and not (tmp_path / "results/demo/logs").exists()


def test_the_steps_refuse_too_few_rows_when_the_data_comes_later(tmp_path, capsys):
    """A hub dataset is downloaded by the run itself: then bin and heldout_split refuse, before training."""
    from workflow_scripts.steps import binning, heldout_split

    table = tmp_path / "table.parquet"
    import pandas as pd

    pd.DataFrame(arc_rows()).assign(item_id=lambda t: t["id"]).to_parquet(table)
    args = [
        "--data",
        str(table),
        "--n-bins",
        "3",
        "--quantile-key",
        "1pl_quantile",
        "--out-dir",
        str(tmp_path / "bins"),
    ]
    with pytest.raises(SystemExit):
        binning.main([*args, "--min-rows", "11"])
    assert (
        "error: training rows with fewer than min_train_rows = 11 items (bin 0: 10, bin 1: 10, bin 2: 10); fix:"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "bins").exists()
    binning.main([*args, "--min-rows", "8"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        heldout_split.main(
            [
                "--bins-dir",
                str(tmp_path / "bins"),
                "--fraction",
                "0.9",
                "--seed",
                "42",
                "--min-train-rows",
                "8",
                "--out-dir",
                str(tmp_path / "split"),
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: training rows with fewer than min_train_rows = 8 items (bin 0: 1"
    )
    assert not (tmp_path / "split").exists()


def test_a_local_model_folder_without_config_json_is_refused(tiny_model, tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    config = demo_config(tiny_model)
    config["models"]["tiny-qwen2"]["path"] = str(folder)
    sentinel = finished_result(tmp_path)
    result, output = run(tmp_path, config, dry_run=True)
    assert result.returncode != 0
    assert f"models.tiny-qwen2.path: {folder} has no config.json: not a Hugging Face model folder; fix:" in output
    assert sentinel.read_text() == '{"finished": true}'


def test_musr_options_malformed_string(tmp_path):
    rows = sample_data.musr_rows(4)
    rows.loc[1, "options"] = "['Mara', 'Ivo'"  # cut off
    path = tmp_path / "musr.jsonl"
    rows.to_json(path, orient="records", lines=True)
    with pytest.raises(SystemExit):
        data.main(
            [
                "--source",
                json.dumps({"path": str(path)}),
                "--prompt-format",
                "musr",
                "--out",
                str(tmp_path / "o.parquet"),
            ]
        )
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    "bad_answers, message",
    [
        ({1: "It is 7.\n#### 7\nNo, 72.\n#### 72"}, "more than one '#### ' marker in 1 of 6 rows (item_id '1')"),
        ({2: "It is 7.", 4: "Seven."}, "no '#### N' line in 2 of 6 rows (item_id '2', '4')"),
    ],
    ids=["two markers", "no marker"],
)
def test_gsm8k_answer_needs_exactly_one_marker(tmp_path, capsys, bad_answers, message):
    rows = sample_data.gsm8k_rows(6)
    for row, answer in bad_answers.items():
        rows.loc[row, "answer"] = answer
    path = tmp_path / "gsm8k.jsonl"
    rows.to_json(path, orient="records", lines=True)
    out = tmp_path / "o.parquet"
    with pytest.raises(SystemExit):
        data.main(["--source", json.dumps({"path": str(path)}), "--prompt-format", "gsm8k", "--out", str(out)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "column 'answer' has " + message in errors[0], errors
    assert not out.exists()


def test_gated_hub_dataset_without_token(monkeypatch, tmp_path, capsys):
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    def gated(*args, **kwargs):
        raise DatasetNotFoundError("Dataset 'BatsResearch/Cross-Difficulty' is a gated dataset on the Hub.")

    monkeypatch.setattr(datasets, "load_dataset", gated)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        data.main(
            [
                "--source",
                json.dumps({"hub": "BatsResearch/Cross-Difficulty", "name": "arc"}),
                "--out",
                str(tmp_path / "o.parquet"),
            ]
        )
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "set HF_TOKEN" in message and "BatsResearch/Cross-Difficulty (arc)" in message


def test_gpu_count_and_process_count_cannot_disagree():
    # One value sets both: the accelerate configs carry no process count of their own.
    for name in ("zero3_gpu.yaml", "zero3_cpu.yaml"):
        assert "num_processes" not in yaml.safe_load((REPO / "config/accelerate" / name).read_text())


def test_second_run_on_the_same_results_is_refused(tiny_model, tmp_path):
    import os
    import socket

    config = demo_config(tiny_model)
    config["datasets"] = {"arc": config["datasets"]["arc"]}
    config["results_dir"] = str(tmp_path / "shared-results")
    (tmp_path / "shared-results").mkdir()
    lock = tmp_path / "shared-results/.run.lock"
    lock.write_text(f"{socket.gethostname()} {os.getpid()}\n")  # a live run, started from another directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result, output = run(elsewhere, config, dry_run=False)
    assert result.returncode != 0
    assert f"results_dir {tmp_path / 'shared-results'} is in use by another Snakemake run" in output
    assert not (tmp_path / "shared-results/logs").exists()
    # A lock left by a run that no longer exists is taken over, and released at the end.
    lock.write_text(f"{socket.gethostname()} 999999\n")
    path = elsewhere / "until.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake("--configfile", str(path), "--cores", "1", "--until", "download", workdir=elsewhere)
    assert (tmp_path / "shared-results/data/arc/normalized.parquet").exists()
    assert not lock.exists()
