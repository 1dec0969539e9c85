"""IRT difficulty from responses: recovery, invariance, missing data, degenerate items, bad tables,
lm-eval log conversion, and the demo DAG up to the bins with config/demo_irt.yaml."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from tests.support.workflow import REPO, job_counts, snakemake
from workflow_scripts.steps import irt, responses


def spearman(a, b) -> float:
    return float(pd.Series(np.asarray(a)).corr(pd.Series(np.asarray(b)), method="spearman"))


@pytest.mark.parametrize("model", ["1pl", "2pl"])
def test_recovers_known_difficulties(model):
    correct, observed, truth = irt.simulate(300, 200, model, missing=0.2, seed=3)
    fit = irt.fit_irt(correct, observed, model=model)
    assert fit.converged
    assert spearman(fit.difficulty, truth["difficulty"]) >= 0.95
    # The SE says how far off an estimate is: about 95% of the truths lie within 1.96 SE.
    error = np.abs(fit.difficulty - truth["difficulty"])
    assert 0.88 <= (error < 1.96 * fit.difficulty_se).mean() <= 0.99
    if model == "2pl":
        assert spearman(fit.discrimination, truth["discrimination"]) >= 0.6
    else:
        assert (fit.discrimination == 1).all()


def test_row_and_column_order_do_not_matter():
    correct, observed, _ = irt.simulate(120, 80, "2pl", missing=0.1, seed=4)
    table = irt.to_long(correct, observed)
    first, _ = irt.fit_items(table, "2pl", min_responses=5)
    shuffled = table.sample(frac=1.0, random_state=7).reset_index(drop=True)
    renamed = {f"s{i}": f"z{119 - i:03d}" for i in range(120)}  # subjects sort in the reverse order
    shuffled["subject"] = shuffled["subject"].map(renamed)
    second, _ = irt.fit_items(shuffled, "2pl", min_responses=5)
    merged = first.merge(second, on="item_id")
    assert len(merged) == 80
    np.testing.assert_allclose(merged["difficulty_x"], merged["difficulty_y"], atol=1e-4)
    np.testing.assert_allclose(merged["quantile_x"], merged["quantile_y"], atol=1e-9)


def test_missing_responses_are_left_out_not_counted_wrong():
    correct, observed, truth = irt.simulate(400, 60, "1pl", missing=0.0, seed=5)
    # Hide half of the answers to the 10 hardest items, choosing the wrong ones: if a missing answer
    # counted as wrong, those items would look harder still; left out, they look easier.
    hardest = np.argsort(truth["difficulty"])[-10:]
    observed = observed.copy()
    for j in hardest:
        wrong = np.nonzero(correct[:, j] == 0)[0]
        observed[wrong[: len(wrong) // 2], j] = 0
    table = irt.to_long(correct, observed)
    items, report = irt.fit_items(table, "1pl", min_responses=1)
    assert report["missing_share"] > 0
    full = irt.fit_irt(correct, np.ones_like(correct), model="1pl").difficulty
    shifted = items["difficulty"].to_numpy()[hardest] - full[hardest]
    assert (shifted < -0.3).all()  # fewer wrong answers among those observed: easier
    assert np.isfinite(items["difficulty"]).all()


def test_degenerate_items_get_finite_extreme_difficulty_and_a_warning(tmp_path, capsys):
    correct, observed, _ = irt.simulate(200, 40, "1pl", seed=6)
    correct[:, 0] = 1  # everyone right
    correct[:, 1] = 0  # everyone wrong
    table = irt.to_long(correct, observed, items=[f"q{j}" for j in range(40)])
    with pytest.warns(UserWarning) as caught:
        items, report = irt.fit_items(table, "1pl", min_responses=1)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert re.match(r"1 item\(s\) all correct by every subject .*'q0'", messages[0])
    assert re.match(r"1 item\(s\) all wrong by every subject .*'q1'", messages[1])
    assert report["all_correct"] == ["q0"] and report["all_wrong"] == ["q1"]
    by_id = items.set_index("item_id")
    assert np.isfinite(items[["difficulty", "difficulty_se", "quantile"]].to_numpy()).all()
    assert by_id.loc["q0", "difficulty"] == items["difficulty"].min() < -3
    assert by_id.loc["q1", "difficulty"] == items["difficulty"].max() > 3
    # Through the step: the warning names the items.
    data = pd.DataFrame({"item_id": [f"q{j}" for j in range(40)], "question": ["?"] * 40})
    table.to_parquet(tmp_path / "responses.parquet")
    data.to_parquet(tmp_path / "data.parquet")
    run_step(tmp_path, min_responses=1)
    err = capsys.readouterr().err
    assert "1 item(s) all correct" in err and "'q0'" in err and "all wrong" in err and "'q1'" in err


def run_step(folder, min_responses=20, model="1pl", responses_file="responses.parquet"):
    irt.main(
        [
            "--responses",
            str(folder / responses_file),
            "--data",
            str(folder / "data.parquet"),
            "--model",
            model,
            "--min-responses",
            str(min_responses),
            "--out",
            str(folder / "out.parquet"),
            "--items-out",
            str(folder / "items.parquet"),
            "--report",
            str(folder / "report.json"),
        ]
    )


def test_items_with_too_few_responses_are_reported_and_not_binned(tmp_path):
    correct, observed, _ = irt.simulate(100, 30, "1pl", seed=8)
    observed[5:, 3] = 0  # item 3: 5 answers
    table = irt.to_long(correct, observed, items=[f"q{j}" for j in range(30)])
    table.to_csv(tmp_path / "responses.csv", index=False)
    # The dataset has one more row that no subject answered.
    pd.DataFrame({"item_id": [f"q{j}" for j in range(31)]}).to_parquet(tmp_path / "data.parquet")
    run_step(tmp_path, min_responses=20, responses_file="responses.csv")
    report = json.loads((tmp_path / "report.json").read_text())
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert report["too_few_responses"] == ["q3"]
    assert sorted(report["rows_left_out"]) == ["q3", "q30"]
    assert sorted(out["item_id"]) == sorted(f"q{j}" for j in range(30) if j != 3)
    assert out["irt_quantile"].min() == 0 and out["irt_quantile"].max() == 1
    assert {"irt_difficulty", "irt_difficulty_se", "irt_discrimination"} <= set(out.columns)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda t: t.assign(correct=t["correct"].astype(float).where(t.index != 3, 0.5)),
            r"'correct' must be 0 or 1.*0\.5",
        ),
        (
            lambda t: t.assign(correct=t["correct"].astype(object).where(t.index != 0, "yes")),
            r"'correct' must be 0 or 1.*yes",
        ),
        (lambda t: t.rename(columns={"item_id": "question_id"}), r"missing column\(s\) \['item_id'\]"),
        (lambda t: pd.concat([t, t.iloc[:1]]), r"1 repeated \(subject, item_id\) pair"),
        (
            lambda t: t.assign(item_id=t["item_id"].where(t.index != 0, "not-in-data")),
            r"1 item_id\(s\) not in the dataset, e\.g\. \['not-in-data'\]",
        ),
    ],
)
def test_bad_tables_are_rejected_with_one_line(tmp_path, capsys, change, message):
    correct, observed, _ = irt.simulate(30, 10, "1pl", seed=9)
    table = change(irt.to_long(correct, observed, items=[f"q{j}" for j in range(10)]).reset_index(drop=True))
    table.to_csv(tmp_path / "responses.csv", index=False)  # CSV: a parquet column cannot mix types
    pd.DataFrame({"item_id": [f"q{j}" for j in range(10)]}).to_parquet(tmp_path / "data.parquet")
    with pytest.raises(SystemExit) as stop:
        run_step(tmp_path, min_responses=1, responses_file="responses.csv")
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    assert re.search(message, err), err
    assert not (tmp_path / "out.parquet").exists()


def test_bin_stability_grows_with_the_number_of_subjects():
    stability = {}
    for n_subjects in (40, 1000):
        correct, observed, _ = irt.simulate(n_subjects, 100, "1pl", missing=0.2, seed=11)
        items, report = irt.fit_items(irt.to_long(correct, observed), "1pl", 1, bootstrap=10, n_bins=3)
        assert items["bin_stability"].between(0, 1).all() and report["bootstrap_rounds"] == 10
        stability[n_subjects] = report["mean_bin_stability"]
    assert stability[40] < 0.85 < stability[1000]


def test_lm_eval_logs_become_a_response_table(tmp_path):
    def write(model, stamp, samples):
        folder = tmp_path / "logs" / model
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"samples_cross_difficulty_arc_{stamp}.jsonl", "w") as handle:
            for sample in samples:
                handle.write(json.dumps(sample) + "\n")

    def sample(doc_id, acc, doc_key="id", flt="none"):
        return {"doc_id": doc_id, "doc": {doc_key: f"Q{doc_id}", "question": "?"}, "filter": flt, "acc": acc}

    write("org__model-a", "2026-01-01T00-00-00", [sample(0, 1.0), sample(1, 0.0), sample(1, 1.0, flt="other")])
    write("org__model-b", "2026-01-01T00-00-00", [sample(0, 0.0), sample(1, 0.0)])
    write("org__model-b", "2026-02-01T00-00-00", [sample(0, 1.0)])  # newer run: replaces the older
    table = responses.read_logs(str(tmp_path / "logs"), "acc,none")
    rows = sorted(map(tuple, table.to_numpy().tolist()))
    assert rows == [("org__model-a", "Q0", 1), ("org__model-a", "Q1", 0), ("org__model-b", "Q0", 1)]
    # Without an id in the document, lm-eval's doc_id (the row number) is the item id.
    write("org__model-c", "2026-01-01T00-00-00", [sample(4, 1.0, doc_key="text")])
    table = responses.read_logs(str(tmp_path / "logs"), "acc,none")
    assert table.set_index("subject").loc["org__model-c", "item_id"] == "4"
    with pytest.raises(ValueError, match="no metric 'exact_match'"):
        responses.read_logs(str(tmp_path / "logs"), "exact_match,none")


def test_demo_bins_from_a_fitted_response_table(tmp_path):
    """config/demo_irt.yaml: the arc sample's bins come from an IRT fit of its synthetic responses."""
    overlay = ["--configfile", str(REPO / "config/demo.yaml"), str(REPO / "config/demo_irt.yaml")]
    targets = ["results/demo-irt/data/arc/bins", "results/demo-irt/data/gsm8k/bins"]
    dry = snakemake(*overlay, "-n", "--cores", "2", *targets, workdir=tmp_path)
    assert job_counts(dry.stdout) == {
        "sample_data": 2,
        "download": 2,
        "sample_responses": 1,
        "irt": 1,
        "bin": 2,
        "total": 8,
    }
    snakemake(*overlay, "--cores", "2", *targets, workdir=tmp_path)
    arc = tmp_path / "results/demo-irt/data/arc"
    manifest = json.loads((arc / "bins/manifest.json").read_text())
    assert manifest["quantile_key"] == "irt_quantile" and manifest["counts"] == {"0": 20, "1": 20, "2": 20}
    bins = pd.concat(pd.read_parquet(arc / f"bins/bin-{k}.parquet").assign(fitted_bin=k) for k in range(3))
    shipped_bin = np.minimum((bins["1pl_quantile"] * 3).astype(int), 2)
    # 300 synthetic models answered: the fitted bins agree with the shipped ones for most items.
    assert (bins["fitted_bin"] == shipped_bin).mean() >= 0.8
    assert spearman(bins["irt_difficulty"], bins["1pl_diff"]) >= 0.9
    report = json.loads((arc / "irt/report.json").read_text())
    assert report["n_subjects"] == 300 and report["binned_rows"] == 60 and report["converged"]
    assert report["bootstrap_rounds"] == 20 and 0.5 < report["mean_bin_stability"] <= 1
    assert bins["irt_bin_stability"].between(0, 1).all()
    # gsm8k has no irt block: it still bins on the shipped column.
    gsm8k = json.loads((tmp_path / "results/demo-irt/data/gsm8k/bins/manifest.json").read_text())
    assert gsm8k["quantile_key"] == "1pl_quantile"


@pytest.mark.parametrize(
    "irt_block, message",
    [
        (
            {"responses": "no/such/table.parquet"},
            "datasets.arc.irt.responses: no/such/table.parquet does not exist and none of the workflow's rules makes it; fix:",
        ),
        (
            {"responses": "resources/demo/sample_responses/arc.parquet", "model": "3pl"},
            "datasets.arc.irt.model = '3pl'",
        ),
        ({"model": "1pl"}, "datasets.arc.irt: 'responses' is a required property; fix: add it"),
    ],
)
def test_bad_irt_config_fails_before_any_job(tmp_path, irt_block, message):
    import yaml

    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["datasets"]["arc"]["irt"] = irt_block
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(tmp_path / "bad.yaml"), workdir=tmp_path, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_a_log_folder_is_converted_before_the_fit(tmp_path):
    import yaml

    (tmp_path / "logs/org__model-a").mkdir(parents=True)
    (tmp_path / "logs/org__model-a/samples_cross_difficulty_arc_2026-01-01T00-00-00.jsonl").write_text("{}\n")
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    config["datasets"]["arc"]["irt"] = {"responses": str(tmp_path / "logs"), "model": "2pl"}
    (tmp_path / "irt.yaml").write_text(yaml.safe_dump(config))
    # The target goes first: --configfile takes every value that follows it.
    dry = snakemake(
        "results/demo/data/arc/bins", "-n", "-p", "--configfile", str(tmp_path / "irt.yaml"), workdir=tmp_path
    )
    assert job_counts(dry.stdout) == {
        "sample_data": 1,
        "download": 1,
        "responses_from_logs": 1,
        "irt": 1,
        "bin": 1,
        "total": 5,
    }
    assert "--metric acc,none" in dry.stdout + dry.stderr  # the dataset's headline_metric by default
