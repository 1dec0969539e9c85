"""Every dataset's task end to end in lm-eval: one cell of the sample data on the tiny model."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.support import one_cell
from tests.support.workflow import REPO
from tests.unit.test_tasks import DATASETS
from workflow_scripts.demo import sample_data

# ---- every task end to end -------------------------------------------------------------------


# gpqa_extended twice: the dataset's answers may be bare letters or in parentheses (its form is not
# known offline); either form scores, and the evaluation log says which one the bin had.
CELLS = [*DATASETS, "gpqa_extended-(B)"]


@pytest.mark.parametrize("cell_name", CELLS)
def test_every_task_runs_in_lm_eval(cell_name, tiny_model, tmp_path):
    from workflow_scripts.steps import binning, data

    dataset, _, answer_form = cell_name.partition("-")
    if answer_form:
        rows = sample_data.gpqa_extended_rows(30, answer_form=answer_form)
    else:
        rows = sample_data.GENERATORS[dataset](30)
    rows.to_json(tmp_path / "rows.jsonl", orient="records", lines=True)
    table = data.normalize(data.load_source({"path": str(tmp_path / "rows.jsonl")}))
    binning.split_into_bins(table, 3, "1pl_quantile")[1].to_parquet(tmp_path / "bin-1.parquet")
    out = tmp_path / "cell.json"
    run = subprocess.run(
        one_cell.cell_command(
            f"cross_difficulty_{dataset}",
            tmp_path / "bin-1.parquet",
            tiny_model,
            out,
            backend="hf",
            dtype="float32",
            batch_size=16,
            seed=42,
            max_gen_toks=8,
        ),
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    if dataset == "gpqa_extended":
        form = "(X)" if answer_form else "X"
        assert f"answer forms in this bin (letter as X): {{'{form}': 10}}" in run.stdout + run.stderr
    cell = json.loads(out.read_text())
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    assert config["datasets"][dataset]["headline_metric"] in cell["metrics"]
    assert cell["n"] == 10 and all(0.0 <= v <= 1.0 for v in cell["metrics"].values())
