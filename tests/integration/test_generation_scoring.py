"""Generation of a whole row in one lm-eval run, then scoring by replay, against per-cell evaluation.

The reference is today's evaluation.run_lm_eval, run at test time (so task edits change both sides
alike): on the sample data with the tiny model (HF backend, fp32, CPU), every dataset's cells and
per-question rows must come out exactly equal, for plain, held-out and in-context rows. A replay that
is asked a request other than the generated one must stop with one line naming the cell.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.support.workflow import REPO
from workflow_scripts.demo import sample_data
from workflow_scripts.lib import evaluation, in_context, task_files, task_parts
from workflow_scripts.steps import generation, heldout_split

DATASETS = ["arc", "gsm8k", "mmlu_pro", "gpqa_extended", "bbh", "musr", "math", "ifeval"]
# Keys whose values a scored cell shares with the per-cell one (the rest: timings and versions).
SAME_KEYS = ("task", "n", "metrics", "stderr", "subtasks", "model_path", "backend", "dtype")
ADDED_KEYS = {"scoring_versions", "generation_seconds"}
BATCH, MAX_GEN_TOKS = "4", 8


def write_bins(dataset: str, rows: int, folder) -> dict[int, str]:
    """The dataset's sample rows cut into 3 bins as the workflow cuts them: {bin: parquet}."""
    from workflow_scripts.steps import binning, data

    sample_data.GENERATORS[dataset](rows).to_json(folder / "rows.jsonl", orient="records", lines=True)
    table = data.normalize(data.load_source({"path": str(folder / "rows.jsonl")}))
    files = {}
    for k, part in enumerate(binning.split_into_bins(table, 3, "1pl_quantile")):
        part.to_parquet(folder / f"bin-{k}.parquet")
        files[k] = str(folder / f"bin-{k}.parquet")
    return files


def as_json(value) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class CountingCalls:
    """Counts the calls lm-eval makes into a model, per request type."""

    def __init__(self, lm):
        self.calls = []
        for name in ("loglikelihood", "generate_until"):
            method = getattr(lm, name)
            setattr(lm, name, self._counted(name, method))

    def _counted(self, name, method):
        def call(requests, *args, **kwargs):
            self.calls.append((name, len(requests)))
            return method(requests, *args, **kwargs)

        return call


# ---- exact equality with per-cell evaluation, every dataset ----------------------------------------


@pytest.mark.parametrize("dataset, in_context_k", [(d, 0) for d in DATASETS] + [("bbh", 2)])
def test_generate_then_score_equals_per_cell_evaluation(dataset, in_context_k, tiny_model, tmp_path):
    from workflow_scripts.steps import scoring

    task = f"cross_difficulty_{dataset}"
    files, overrides = write_bins(dataset, 15, tmp_path), {}
    if in_context_k:  # the base model with 2 examples of bin 0 in every prompt
        for k, test_file in list(files.items()):
            (tmp_path / f"icl-{k}").mkdir()
            files[k], overrides[k] = in_context.prepare_cell(
                task, test_file, files[0], in_context_k, 42, dataset, tmp_path / f"icl-{k}"
            )
    # One model load for the whole test: the per-cell runs and the row's run share it.
    lm, model_args = generation.load_model("hf", str(tiny_model), "float32", BATCH, False, 42)
    reference = {
        k: evaluation.run_lm_eval(
            task, f, str(tiny_model), "hf", "float32", BATCH, MAX_GEN_TOKS, 42, spec_overrides=overrides.get(k), lm=lm
        )
        for k, f in files.items()
    }

    counting = CountingCalls(lm)
    records, seconds = generation.generate_row(task, files, lm, BATCH, MAX_GEN_TOKS, 42, overrides, per_bin=True)
    # One lm-eval run; the HF model is called bin by bin inside it, with each bin's requests only.
    assert [count for _, count in counting.calls] == [len(records[k]) for k in files]

    for k, test_file in files.items():
        raw = generation.raw_record(
            records[k],
            task=task,
            test_bin=k,
            model_path=str(tiny_model),
            backend="hf",
            dtype="float32",
            batch_size=BATCH,
            max_gen_toks=MAX_GEN_TOKS,
            seed=42,
            lm=lm,
            model_args=model_args,
            seconds=seconds,
            row_bins=sorted(files),
        )
        raw = json.loads(json.dumps(raw))  # as scoring reads it from its file
        cell, rows = scoring.score_cell(task, test_file, raw, f"cell {k}", overrides.get(k))
        reference_cell, reference_rows = reference[k]
        assert {key: cell[key] for key in SAME_KEYS} == {key: reference_cell[key] for key in SAME_KEYS}
        assert set(cell) == set(reference_cell) | ADDED_KEYS
        assert as_json(rows) == as_json(reference_rows)
        assert cell["n"] == len(pd.read_parquet(test_file)) > 0
        if in_context_k:
            assert all(len(row["in_context_ids"]) == in_context_k for row in rows)
    if dataset == "bbh":  # a bin without some answer formats: its cell runs only the sub-tasks it has
        assert any(len(evaluation.cell_task_spec(task, f)["task"]) < 5 for f in files.values())


def test_a_row_in_one_model_call_scores_too(tiny_model, tmp_path):
    """vLLM's way: every bin's requests in one call (no exact per-cell equality is claimed there)."""
    from workflow_scripts.steps import scoring

    task, files = "cross_difficulty_gsm8k", write_bins("gsm8k", 15, tmp_path)
    lm, model_args = generation.load_model("hf", str(tiny_model), "float32", BATCH, False, 42)
    counting = CountingCalls(lm)
    records, seconds = generation.generate_row(task, files, lm, BATCH, MAX_GEN_TOKS, 42, per_bin=False)
    assert counting.calls == [("generate_until", 15)]
    for k, test_file in files.items():
        raw = generation.raw_record(
            records[k],
            task=task,
            test_bin=k,
            model_path=str(tiny_model),
            backend="hf",
            dtype="float32",
            batch_size=BATCH,
            max_gen_toks=MAX_GEN_TOKS,
            seed=42,
            lm=lm,
            model_args=model_args,
            seconds=seconds,
            row_bins=sorted(files),
        )
        cell, rows = scoring.score_cell(task, test_file, json.loads(json.dumps(raw)), f"cell {k}")
        assert [row["item_id"] for row in rows] == list(pd.read_parquet(test_file)["item_id"].astype(str))
        assert [row["raw_response"] for row in rows] == [r["resps"][0] for r in records[k]]


# ---- the command-line steps, held-out files, an in-context row ------------------------------------


@pytest.fixture(scope="module")
def heldout_icl_row(tiny_model, tmp_path_factory):
    """An in-context row (2 examples of bin 1's training part) on the held-out parts of 3 arc bins,
    evaluated cell by cell with evaluation.py, and generated then scored with the new steps."""
    folder = tmp_path_factory.mktemp("row")
    bins = write_bins("arc", 36, folder)
    for k, path in bins.items():
        train, heldout = heldout_split.split_bin(pd.read_parquet(path), 0.5, 42)
        train.to_parquet(folder / f"train-{k}.parquet")
        heldout.to_parquet(folder / f"heldout-{k}.parquet")
    task, label = "cross_difficulty_arc", {"model": "tiny", "dataset": "arc", "row_label": "icl2-bin1"}
    icl = [
        "--in-context-k",
        "2",
        "--in-context-pool",
        str(folder / "train-1.parquet"),
        "--in-context-seed",
        "42",
        "--prompt-format",
        "arc",
    ]
    common = [
        "--model",
        str(tiny_model),
        "--backend",
        "hf",
        "--dtype",
        "float32",
        "--seed",
        "42",
        "--batch-size",
        BATCH,
        *icl,
    ]

    def run(module, *args, check=True):
        return subprocess.run(
            [sys.executable, "-m", module, "--task", task, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=check,
        )

    for k in bins:
        run(
            "tests.support.one_cell",
            "--bin-file",
            str(folder / f"heldout-{k}.parquet"),
            "--out",
            str(folder / f"old-{k}.json"),
            "--label",
            json.dumps({**label, "test_bin": k}),
            *common,
        )
    run(
        "workflow_scripts.steps.generation",
        *[
            a
            for k in bins
            for a in ("--bin", str(k), str(folder / f"heldout-{k}.parquet"), str(folder / f"raw-{k}.json"))
        ],
        *common,
    )

    def score(*extra, out="new", check=True):
        cells = [
            a
            for k in bins
            for a in (
                "--cell",
                str(k),
                str(folder / f"heldout-{k}.parquet"),
                str(folder / f"raw-{k}.json"),
                str(folder / f"{out}-{k}.json"),
            )
        ]
        return run(
            "workflow_scripts.steps.scoring",
            *cells,
            "--label",
            json.dumps(label),
            "--tokenizer",
            str(tiny_model),
            *(extra or icl),
            check=check,
        )

    score()
    return folder, bins, score


def test_scored_cell_files_equal_the_per_cell_files(heldout_icl_row):
    folder, bins, _ = heldout_icl_row
    for k in bins:
        old, new = (json.loads((folder / f"{name}-{k}.json").read_text()) for name in ("old", "new"))
        assert set(new) == set(old) | ADDED_KEYS
        timings = {"eval_seconds", "model_load_seconds", "versions"}
        assert {key: value for key, value in new.items() if key not in timings | ADDED_KEYS} == {
            key: value for key, value in old.items() if key not in timings
        }
        assert new["model_load_seconds"] > 0  # the row's model load, from its raw files
        assert new["test_bin"] == k and new["n"] == len(pd.read_parquet(folder / f"heldout-{k}.parquet"))
        # The per-question logs are the same bytes.
        assert (folder / f"new-{k}.samples.jsonl").read_bytes() == (folder / f"old-{k}.samples.jsonl").read_bytes()
        raw = json.loads((folder / f"raw-{k}.json").read_text())
        assert {r["task"] for r in raw["requests"]} == {"cross_difficulty_arc"}
        assert len(raw["requests"]) == 4 * new["n"]  # four answer labels per question
        assert raw["generation"]["row_bins"] == sorted(bins) and raw["generation"]["max_gen_toks"] is None


def test_a_changed_prompt_stops_scoring_with_one_line_naming_the_cell(heldout_icl_row):
    folder, bins, score = heldout_icl_row
    # Another draw of examples: the prompts lm-eval builds now differ from the generated ones.
    result = score(
        "--in-context-k",
        "2",
        "--in-context-pool",
        str(folder / "train-1.parquet"),
        "--in-context-seed",
        "7",
        "--prompt-format",
        "arc",
        out="stale",
        check=False,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {folder / 'stale-0.json'}: the request for cross_difficulty_arc doc 0 request 0")
    assert "re-run the generation of this row" in last and "prompt first differs at character" in last
    assert not list(folder.glob("stale-*"))  # no cell of the row is written


# ---- the replay's checks, without a model ---------------------------------------------------------


def raw_file(tiny_model, requests) -> dict:
    generation_info = {
        "format": evaluation.RAW_FORMAT,
        "task": "t",
        "model_path": str(tiny_model),
        "chat_template_args": {},
    }
    return {"generation": generation_info, "requests": requests}


def request(request_type, arguments, doc_id=0, idx=0, task="t"):
    from lm_eval.api.instance import Instance

    return Instance(request_type=request_type, doc={}, arguments=arguments, idx=idx, metadata=(task, doc_id, 1))


LOGGED = [
    {
        "task": "t",
        "doc_id": 0,
        "idx": 0,
        "request_type": "loglikelihood",
        "arguments": ["Q?", " A"],
        "resps": [[-1.5, False]],
    },
    {
        "task": "t",
        "doc_id": 0,
        "idx": 1,
        "request_type": "loglikelihood",
        "arguments": ["Q?", " B"],
        "resps": [[-0.5, True]],
    },
    {
        "task": "t",
        "doc_id": 1,
        "idx": 0,
        "request_type": "generate_until",
        "arguments": ["Say 7", {"until": ["Q:"], "max_gen_toks": 8}],
        "resps": ["7"],
    },
]


def test_replay_answers_the_generated_requests(tiny_model):
    from workflow_scripts.steps.scoring import ReplayLM

    raw = raw_file(tiny_model, LOGGED)
    raw["generation"]["model_path"] = "/deleted/trained/model"  # the base model's tokenizer renders alike
    replay = ReplayLM(raw, "cell X", tokenizer=str(tiny_model))
    assert replay.loglikelihood(
        [request("loglikelihood", ("Q?", " A")), request("loglikelihood", ("Q?", " B"), idx=1)]
    ) == [(-1.5, False), (-0.5, True)]
    assert replay.generate_until([request("generate_until", ("Say 7", {"until": ["Q:"], "max_gen_toks": 8}), 1)]) == [
        "7"
    ]
    replay.check_every_request_asked()


@pytest.mark.parametrize(
    "asked, message",
    [
        (
            request("loglikelihood", ("Q!", " A")),
            "the request for t doc 0 request 0 is not the one generated in "
            "<raw record> (its prompt first differs at character 1)",
        ),
        (request("loglikelihood", ("Q?", " C"), idx=1), "(its continuation first differs at character 1)"),
        (
            request("generate_until", ("Say 7", {"until": ["Q:", "\n"], "max_gen_toks": 8}), 1),
            'its generation settings are {"until": ["Q:", "\\n"], "max_gen_toks": 8}, generated with',
        ),
        (request("generate_until", ("Say 7", {"until": ["Q:"], "max_gen_toks": 16}), 1), '"max_gen_toks": 16}'),
        (
            request("loglikelihood", ("Q?", " A"), doc_id=2),
            "lm-eval asks loglikelihood for t doc 2 request 0, which <raw record> never generated",
        ),
    ],
)
def test_replay_refuses_a_request_other_than_the_generated_one(tiny_model, asked, message):
    from workflow_scripts.steps.scoring import ReplayLM, StaleGeneration

    replay = ReplayLM(raw_file(tiny_model, LOGGED), "cells/m/d/train-3/test-1.json")
    method = replay.generate_until if asked.request_type == "generate_until" else replay.loglikelihood
    with pytest.raises(StaleGeneration) as error:
        method([asked])
    text = str(error.value)
    assert text.startswith("cells/m/d/train-3/test-1.json: ") and message in text and "\n" not in text
    assert text.endswith("re-run the generation of this row")


def test_replay_refuses_generated_requests_left_unasked(tiny_model):
    from workflow_scripts.steps.scoring import ReplayLM, StaleGeneration

    replay = ReplayLM(raw_file(tiny_model, LOGGED), "cell X")
    replay.loglikelihood([request("loglikelihood", ("Q?", " A"))])
    with pytest.raises(
        StaleGeneration,
        match=r"^cell X: 2 request\(s\) generated in <raw record> are no longer asked "
        r"\(first: t doc 0 request 1\)",
    ):
        replay.check_every_request_asked()


def test_replay_refuses_another_raw_format(tiny_model):
    from workflow_scripts.steps.scoring import ReplayLM

    raw = raw_file(tiny_model, LOGGED)
    raw["generation"]["format"] = evaluation.RAW_FORMAT + 1
    with pytest.raises(ValueError, match="re-run its generation"):
        ReplayLM(raw, "cell X")


# ---- which task edits a generation depends on -----------------------------------------------------


def test_every_lm_eval_task_key_is_classified():
    parts = [task_parts.GENERATION_KEYS, task_parts.SCORING_KEYS, task_parts.NAME_KEYS]
    assert task_parts.lm_eval_task_keys() <= set().union(*parts)
    assert sum(map(len, parts)) == len(set().union(*parts))  # no key in two parts


ALL_TASKS = [f"cross_difficulty_{d}" for d in DATASETS]
# Each edit anchors on a structure that other task edits keep (a key, a function's name), not on values.
EDITS = [
    # (file in tasks/, pattern, replacement, the datasets whose generation changes)
    ("cross_difficulty_gsm8k.yaml", r"regex_pattern: \"", 'regex_pattern: "(?:edited)?', []),  # a filter regex
    ("cross_difficulty_gsm8k.yaml", r"ignore_case: true", "ignore_case: false", []),  # a metric setting
    ("cross_difficulty_gsm8k.yaml", r'doc_to_text: "', 'doc_to_text: "Edited ', ["gsm8k"]),
    ("cross_difficulty_mmlu_pro.yaml", r"  until:\n", '  until:\n    - "STOP"\n', ["mmlu_pro"]),  # a stop sequence
    ("cross_difficulty_math.yaml", r"max_gen_toks: \d+", "max_gen_toks: 7", ["math"]),
    (
        "cross_difficulty_bbh_yesno.yaml",
        r"filter_list:\n",
        "filter_list:\n  - name: edited\n    filter:\n      - function: take_first\n",
        [],
    ),  # a bbh filter
    ("cross_difficulty_bbh.yaml", r"weight_by_size: true", "weight_by_size: false", []),  # the group's aggregate
    ("_cross_difficulty_bbh_template_yaml", r'doc_to_text: "', 'doc_to_text: "Edited ', ["bbh"]),
    ("utils.py", r"COMMITTED_PATTERNS = \[\n", 'COMMITTED_PATTERNS = [\n    r"edited",\n', []),  # mmlu_pro's filter
    ("utils.py", r"def gpqa_doc_to_target\(doc\)[^\n]*:\n", r"\g<0>    doc = dict(doc)  # edited\n", []),  # 0-shot
    (
        "utils.py",
        r"def lettered_doc_to_text\(doc\)[^\n]*:\n",
        r"\g<0>    doc = dict(doc)  # edited\n",
        ["mmlu_pro", "gpqa_extended"],
    ),
    ("utils.py", r"def bbh_subtask\(doc_id[^\n]*:\n", r"\g<0>    doc_id = str(doc_id)  # edited\n", ["bbh"]),
    ("_cross_difficulty_template_yaml", r"num_fewshot: 0", "num_fewshot: 1", DATASETS),
]


@pytest.mark.parametrize("file, pattern, replacement, changed", EDITS)
def test_generation_fingerprint_changes_only_with_what_shapes_requests(tmp_path, file, pattern, replacement, changed):
    import re

    tasks = tmp_path / "tasks"
    shutil.copytree(task_files.TASKS_DIR, tasks)
    before = {task: task_parts.generation_fingerprint(task, tasks) for task in ALL_TASKS}
    edited, count = re.subn(pattern, replacement, (tasks / file).read_text(), count=1)
    assert count == 1, f"{file} no longer has {pattern!r}: pick another anchor for this edit"
    (tasks / file).write_text(edited)
    task_parts._source_closure.cache_clear()
    after = {task: task_parts.generation_fingerprint(task, tasks) for task in ALL_TASKS}
    assert {task for task in ALL_TASKS if before[task] != after[task]} == {f"cross_difficulty_{d}" for d in changed}


def test_a_prompt_helper_module_is_part_of_the_generation():
    hooks = task_parts.generation_part("cross_difficulty_arc")["hooks"]
    assert "return prompts.arc(doc)[0]" in hooks["utils.arc_doc_to_text"]
    assert "workflow_scripts.lib.prompts" in hooks["utils.arc_doc_to_text"]  # with the hash of prompts.py
