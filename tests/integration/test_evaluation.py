"""Cell evaluation with lm-eval: bin restriction, metric bookkeeping, and a real run per task."""

import json
import subprocess

import pandas as pd
import pytest
import yaml

from tests.support import one_cell
from tests.support.workflow import REPO
from workflow_scripts.lib import evaluation


def test_cell_yaml_includes_the_task_and_points_at_the_bin(tmp_path):
    spec = yaml.safe_load(evaluation.cell_task_yaml("cross_difficulty_arc", "some/bin-2.parquet"))
    assert spec["include"] == str(REPO / "tasks/cross_difficulty_arc.yaml")
    assert spec["dataset_kwargs"]["data_files"]["test"].endswith("some/bin-2.parquet")
    with pytest.raises(FileNotFoundError, match="cross_difficulty_nope"):
        evaluation.cell_task_yaml("cross_difficulty_nope", "x.parquet")


def test_metrics_and_stderrs_are_split():
    values, stderrs = evaluation.split_metrics(
        {"alias": "x", "exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": 0.1}
    )
    assert values == {"exact_match,strict-match": 0.5}
    assert stderrs == {"exact_match,strict-match": 0.1}


def test_per_question_rows_merge_filters():
    samples = [
        {
            "doc_id": 0,
            "doc": {"item_id": "q0"},
            "target": "7",
            "filter": "strict-match",
            "resps": [["So the answer is 7."]],
            "filtered_resps": ["7"],
            "exact_match": 1.0,
        },
        {
            "doc_id": 0,
            "doc": {"item_id": "q0"},
            "target": "7",
            "filter": "flexible-extract",
            "resps": [["So the answer is 7."]],
            "filtered_resps": ["7"],
            "exact_match": 1.0,
        },
    ]
    rows = evaluation.per_question_rows(samples, ["exact_match"])
    assert rows == [
        {
            "item_id": "q0",
            "target": "7",
            "raw_response": "So the answer is 7.",
            "response,strict-match": ["7"],
            "exact_match,strict-match": 1.0,
            "response,flexible-extract": ["7"],
            "exact_match,flexible-extract": 1.0,
        }
    ]


def test_real_cell_counts_only_the_bin(tiny_model, arc_bins, tmp_path):
    out = tmp_path / "cell.json"
    subprocess.run(
        one_cell.cell_command(
            "cross_difficulty_arc",
            arc_bins / "bin-2.parquet",
            tiny_model,
            out,
            backend="hf",
            dtype="float32",
            batch_size=8,
            seed=42,
            label=json.dumps({"row_label": "base", "test_bin": 2}),
        ),
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    cell = json.loads(out.read_text())
    bin_ids = set(pd.read_parquet(arc_bins / "bin-2.parquet")["item_id"])
    logged = [json.loads(line) for line in out.with_suffix(".samples.jsonl").read_text().splitlines()]
    assert cell["n"] == len(bin_ids) == 20 and cell["row_label"] == "base" and cell["test_bin"] == 2
    assert {row["item_id"] for row in logged} == bin_ids
    # The cell's accuracy is the mean of the per-question scores it logged.
    assert cell["metrics"]["acc,none"] == pytest.approx(sum(r["acc,none"] for r in logged) / len(logged))
