"""Loading: local files of the real schema through datasets.load_dataset; the hub call at its seam."""

import json

import datasets
import pandas as pd
import pytest

from workflow_scripts.demo import sample_data
from workflow_scripts.steps import data


def test_local_jsonl_keeps_the_schema_and_adds_ids(tmp_path):
    path = tmp_path / "arc.jsonl"
    sample_data.arc_rows(12).to_json(path, orient="records", lines=True)
    table = data.normalize(data.load_source({"path": str(path)}))
    assert list(table.columns) == ["id", "question", "choices", "answerKey", "1pl_diff", "1pl_quantile", "item_id"]
    assert table["item_id"].tolist() == table["id"].tolist()
    assert list(table.loc[0, "choices"]["label"]) == ["A", "B", "C", "D"]
    assert table["1pl_quantile"].min() == 0.0 and table["1pl_quantile"].max() == 1.0


def test_rows_without_an_id_column_get_row_numbers(tmp_path):
    path = tmp_path / "gsm8k.parquet"
    sample_data.gsm8k_rows(5).to_parquet(path)
    table = data.normalize(data.load_source({"path": str(path)}))
    assert table["item_id"].tolist() == ["0", "1", "2", "3", "4"]


def test_duplicate_ids_are_rejected():
    with pytest.raises(ValueError, match="duplicate item ids"):
        data.normalize(pd.DataFrame({"doc_id": [1, 1], "1pl_quantile": [0.1, 0.2]}))


def test_hub_source_calls_load_dataset_with_name_split_and_token(monkeypatch, tmp_path):
    """The hub is unreachable here: replace only datasets.load_dataset, keep everything around it."""
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.Dataset.from_pandas(sample_data.arc_rows(3))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    out = tmp_path / "normalized.parquet"
    data.main(["--source", json.dumps({"hub": "BatsResearch/Cross-Difficulty", "name": "arc"}), "--out", str(out)])
    assert calls == [(("BatsResearch/Cross-Difficulty", "arc"), {"split": "train", "token": "hf_secret"})]
    assert len(pd.read_parquet(out)) == 3


def test_missing_local_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        data.load_source({"path": str(tmp_path / "nope.jsonl")})
