"""Held-out split, row names and the in-context prompt, on synthetic bins and with lm-eval's own task
objects (no model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.workflow import REPO
from workflow_scripts.lib import cell_names, evaluation, in_context, prompts, task_files
from workflow_scripts.steps import heldout_split

IDS = [f"q{i:02d}" for i in range(20)]


# ---- row names -------------------------------------------------------------------------------


def test_the_study_rows_keep_their_plain_names():
    assert cell_names.base_name("all") == "base" and cell_names.bin_name(3, "all", 42) == "3"
    assert cell_names.labels("3") == {
        "row_label": "3",
        "train_kind": "bin",
        "train_bin": 3,
        "in_context_k": None,
        "seed": 42,
        "eval_split": "all",
    }
    assert cell_names.labels("base") == {
        "row_label": "base",
        "train_kind": "base",
        "train_bin": None,
        "in_context_k": None,
        "seed": None,
        "eval_split": "all",
    }


@pytest.mark.parametrize(
    "name, labels",
    [
        (
            cell_names.bin_name(3, "heldout", 43),
            {
                "row_label": "3",
                "train_kind": "bin",
                "train_bin": 3,
                "seed": 43,
                "eval_split": "heldout",
                "in_context_k": None,
            },
        ),
        (
            cell_names.in_context_name(4, 2, "all", 42),
            {
                "row_label": "icl4-bin2",
                "train_kind": "in_context",
                "train_bin": 2,
                "in_context_k": 4,
                "seed": 42,
                "eval_split": "all",
            },
        ),
        (
            cell_names.base_name("heldout"),
            {
                "row_label": "base",
                "train_kind": "base",
                "train_bin": None,
                "seed": None,
                "in_context_k": None,
                "eval_split": "heldout",
            },
        ),
    ],
)
def test_tags_say_where_a_row_came_from(name, labels):
    assert cell_names.labels(name) == labels
    assert name in {"3-heldout-seed43", "icl4-bin2", "base-heldout"}


def test_a_foreign_name_is_refused():
    for name in ("base-seed43", "3-seed", "icl-bin2", "x"):
        with pytest.raises(ValueError, match="not a row name"):
            cell_names.labels(name)


# ---- held-out split --------------------------------------------------------------------------


def test_an_in_context_row_names_what_it_lacks(tmp_path):
    """The examples' seed has no default of its own (it is the row's seed): without it, one line."""
    with pytest.raises(ValueError, match=r"^--in-context-k 2 needs --in-context-seed \(the rule passes the row's\)$"):
        in_context.prepare_cell("cross_difficulty_arc", "test.parquet", "pool.parquet", 2, None, "arc", tmp_path)


def test_heldout_and_training_parts_are_disjoint_and_cover_the_bin():
    table = pd.DataFrame({"item_id": IDS, "question": [f"question {i}" for i in IDS]})
    train, heldout = heldout_split.split_bin(table, 0.25, 42)
    assert len(heldout) == 5 and len(train) == 15
    assert set(train.item_id).isdisjoint(heldout.item_id)
    assert set(train.item_id) | set(heldout.item_id) == set(IDS)
    # Each part keeps the bin's row order and its columns.
    assert list(train.item_id) == [i for i in IDS if i in set(train.item_id)]
    assert list(train.columns) == ["item_id", "question"]


def test_split_is_fixed_by_item_ids_and_seed_alone():
    table = pd.DataFrame({"item_id": IDS})
    # Golden sets: a change here means every held-out result on disk was split differently.
    assert sorted(heldout_split.split_bin(table, 0.25, 42)[1].item_id) == ["q04", "q07", "q08", "q10", "q14"]
    assert sorted(heldout_split.split_bin(table, 0.25, 7)[1].item_id) == ["q00", "q03", "q09", "q14", "q16"]
    # Row order does not matter, only ids.
    shuffled = table.sample(frac=1.0, random_state=1)
    assert sorted(heldout_split.split_bin(shuffled, 0.25, 42)[1].item_id) == ["q04", "q07", "q08", "q10", "q14"]


def test_split_is_the_same_in_another_process_with_another_hash_salt():
    code = (
        "import pandas as pd; from workflow_scripts.steps import heldout_split as h; "
        f"print(sorted(h.split_bin(pd.DataFrame({{'item_id': {IDS!r}}}), 0.25, 42)[1].item_id))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": salt},
        ).stdout
        for salt in ("1", "2", "random")
    }
    assert outputs == {"['q04', 'q07', 'q08', 'q10', 'q14']\n"}


@pytest.mark.parametrize("size, fraction, held", [(2, 0.2, 1), (10, 0.2, 2), (3, 0.9, 2), (7, 0.5, 4)])
def test_every_part_keeps_at_least_one_item(size, fraction, held):
    assert heldout_split.heldout_count(size, fraction) == held


def test_split_step_writes_both_parts_and_refuses_a_bin_of_one(arc_bins, tmp_path):
    (tmp_path / "bins").mkdir()
    for k in range(3):
        pd.read_parquet(arc_bins / f"bin-{k}.parquet").to_parquet(tmp_path / "bins" / f"bin-{k}.parquet")
    (tmp_path / "bins/manifest.json").write_text(json.dumps({"n_bins": 3}))
    heldout_split.main(
        ["--bins-dir", str(tmp_path / "bins"), "--fraction", "0.25", "--seed", "42", "--out-dir", str(tmp_path / "out")]
    )
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    for k in range(3):
        heldout = pd.read_parquet(tmp_path / f"out/heldout-{k}.parquet")
        train = pd.read_parquet(tmp_path / f"out/train-{k}.parquet")
        assert (len(train), len(heldout)) == (15, 5)
        assert manifest["bins"][str(k)]["heldout_ids"] == sorted(heldout.item_id)
    pd.read_parquet(arc_bins / "bin-1.parquet").head(1).to_parquet(tmp_path / "bins/bin-1.parquet")
    with pytest.raises(SystemExit):
        heldout_split.main(
            [
                "--bins-dir",
                str(tmp_path / "bins"),
                "--fraction",
                "0.25",
                "--seed",
                "42",
                "--out-dir",
                str(tmp_path / "out2"),
            ]
        )


# ---- the in-context prompt -------------------------------------------------------------------


def bins(arc_bins) -> list[list[dict]]:
    import datasets

    return [
        list(datasets.load_dataset("parquet", data_files={"test": str(arc_bins / f"bin-{k}.parquet")}, split="test"))
        for k in range(3)
    ]


@pytest.mark.parametrize("source_bin, test_bin", [(0, 0), (0, 2), (2, 1)])
def test_prompt_has_exactly_k_examples_of_the_named_bin_and_never_the_test_item(arc_bins, source_bin, test_bin):
    docs, k = bins(arc_bins), 3
    texts, ids = in_context.with_examples(docs[test_bin], docs[source_bin], k, 42, "arc", "cross_difficulty_arc")
    source_blocks = {in_context.example_text(row, "arc"): str(row["item_id"]) for row in docs[source_bin]}
    other_blocks = {in_context.example_text(row, "arc") for b in range(3) if b != source_bin for row in docs[b]}
    for doc, text, chosen in zip(docs[test_bin], texts, ids):
        *examples, question = text.split(in_context.EXAMPLE_SEPARATOR)
        assert len(examples) == k == len(chosen)
        assert [source_blocks[block] for block in examples] == chosen  # each one a row of the source bin
        assert not other_blocks & set(examples)
        assert str(doc["item_id"]) not in chosen
        assert in_context.example_text(doc, "arc") not in examples
        assert question == prompts.arc(doc)[0]  # the task's own prompt for the test item
    if source_bin != test_bin:
        assert all(chosen == ids[0] for chosen in ids)  # one fixed draw for a whole other bin
    else:
        # The diagonal: items outside the first k of the draw see those k; each of the k sees the other
        # k - 1 and the next item of the draw instead of itself.
        assert len({tuple(chosen) for chosen in ids}) == k + 1


def test_the_draw_depends_on_the_seed_only(arc_bins):
    docs = bins(arc_bins)
    pool_ids = [row["item_id"] for row in docs[1]]
    assert in_context.draw_order(pool_ids, 42) == in_context.draw_order(list(reversed(pool_ids)), 42)
    assert in_context.draw_order(pool_ids, 42) != in_context.draw_order(pool_ids, 43)
    assert in_context.draw_order(["q00", "q01", "q02", "q03", "q04", "q05"], 42)[:3] == ["q02", "q04", "q00"]


def test_k_beyond_the_pool_is_one_clear_error():
    with pytest.raises(ValueError, match="in_context.k = 3 but the source pool has only 2 other item"):
        in_context.example_ids("a", ["a", "b", "c"], 3)


def test_example_is_written_as_fine_tuning_sees_it():
    row = {"question": "Add 2 and 3.", "answer": "2 + 3 = <<2+3=5>>5.\n#### 5"}
    assert in_context.example_text(row, "gsm8k") == "Q: Add 2 and 3.\nA:\n2 + 3 = 5. So the answer is 5"
    assert in_context.example_text({"question": "1+1?", "answer": "2"}, "math") == "Problem:\n1+1?\n\nAnswer: 2"


def lm_eval_contexts(task: str, test_file: str, pool_file: str, k: int, prompt_format: str) -> dict[str, str]:
    """The prompt lm-eval itself builds for each item of an in-context cell (no chat template, no model)."""
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        data, overrides = in_context.prepare_cell(task, test_file, pool_file, k, 42, prompt_format, tmp)
        spec = {**evaluation.cell_task_spec(task, data), **overrides}
        (Path(tmp) / "cell.yaml").write_text(yaml.safe_dump(spec))
        folders = [tmp, str(task_files.TASKS_DIR)] if "group" in spec else [str(task_files.TASKS_DIR)]
        loaded = TaskManager(include_path=folders, include_defaults=False).load(
            [spec["group"] if "group" in spec else str(Path(tmp) / "cell.yaml")]
        )
        contexts = {}
        for task_object in loaded["tasks"].values():
            task_object.build_all_requests(rank=0, world_size=1)
            for instance in task_object.instances:
                contexts[str(instance.doc["item_id"])] = (instance.arguments[0], instance.doc)
    return contexts


@pytest.mark.parametrize("dataset", ["arc", "gsm8k", "bbh"])
def test_lm_eval_puts_the_examples_before_the_task_prompt(dataset, tmp_path):
    from workflow_scripts.demo import sample_data
    from workflow_scripts.steps import binning, data

    sample_data.GENERATORS[dataset](60).to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    table = data.normalize(data.load_source({"path": str(tmp_path / "rows.jsonl")}))
    for k, part in enumerate(binning.split_into_bins(table, 3, "1pl_quantile")):
        part.to_parquet(tmp_path / f"bin-{k}.parquet")
    pool = pd.read_parquet(tmp_path / "bin-0.parquet")
    contexts = lm_eval_contexts(
        f"cross_difficulty_{dataset}", str(tmp_path / "bin-0.parquet"), str(tmp_path / "bin-0.parquet"), 2, dataset
    )
    assert set(contexts) == set(pool.item_id)  # every item of the test bin, each once
    for item_id, (context, doc) in contexts.items():
        blocks = context.split(in_context.EXAMPLE_SEPARATOR)
        assert len(blocks) == 3 and len(doc["in_context_ids"]) == 2 and item_id not in doc["in_context_ids"]
        shown = pool[pool.item_id.isin(doc["in_context_ids"])].to_dict("records")
        assert sorted(blocks[:2]) == sorted(in_context.example_text(row, dataset) for row in shown)
        # The last block is the task's own zero-shot prompt for this item.
        assert blocks[2] == in_context.question_renderer(f"cross_difficulty_{dataset}")(doc)
    if dataset == "gsm8k":
        assert next(iter(contexts.values()))[0].split(in_context.EXAMPLE_SEPARATOR)[2].startswith("Q: ")
