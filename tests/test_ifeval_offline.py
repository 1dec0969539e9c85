"""IFEval scores on an offline node: NLTK's Punkt model comes from the nltk_data folder, never the network.

lm-eval's IFEval checkers count sentences and split words with NLTK's Punkt model; its module tries to
download it at import, and without it `length_constraints:number_sentences` and
`change_case:capital_word_frequency` raise LookupError. The workflow fetches the model once on the
login node (rule fetch_nltk_data; the demo builds a small one offline, rule punkt_model), makes it an
input of the ifeval score jobs and points NLTK_DATA at it in every job.

Here the network is really cut: the scoring runs in a network namespace of its own (`unshare --net`,
root), HOME is an empty folder (no ~/nltk_data), and no NLTK data sits in the default locations of
this machine. Every instruction id lm-eval's IFEval knows is in the sample data, with a reference
answer that follows it; each is scored and must be followed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake
from workflow_scripts.demo import punkt_model

# Scores each sample row's reference answer with lm-eval's own checkers (through our task hook).
SCORE_EVERY_INSTRUCTION = """
import json, sys
sys.path.insert(0, {repo!r})
from workflow_scripts.demo import sample_data
from workflow_scripts.lib import task_files
from lm_eval.tasks.ifeval import instructions_registry
result = {{"registry": sorted(instructions_registry.INSTRUCTION_DICT), "scored": {{}}, "errors": {{}}}}
hook = task_files.hooks().ifeval_process_results
for row in sample_data.ifeval_rows(60).to_dict("records"):
    (instruction,) = row["instruction_id_list"]
    try:
        result["scored"][instruction] = hook(row, [row["answer"]])["inst_level_strict_acc"] == [True]
    except LookupError as error:
        result["errors"][instruction] = str(error)
print(json.dumps(result))
"""


def offline_unavailable() -> str | None:
    if not shutil.which("unshare"):
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot make a network namespace here: {probe.stderr.strip()}"


def default_locations_hold_punkt() -> list[str]:
    """NLTK's default search folders (those NLTK_DATA does not add) that hold a Punkt model."""
    code = "import nltk.data, json; print(json.dumps(nltk.data.path))"
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    paths = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout)
    return [p for p in paths if (Path(p) / "tokenizers" / "punkt_tab").exists()]


def offline(command: list[str], home: Path, **env) -> subprocess.CompletedProcess:
    """`command` with the network cut (its own network namespace) and an empty HOME."""
    reason = offline_unavailable()
    if reason:
        pytest.skip(f"the network cannot be cut here: {reason}")
    environment = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    environment.update(HOME=str(home), **env)
    return subprocess.run(["unshare", "--net", *command], capture_output=True, text=True, env=environment, timeout=900)


def score_every_instruction(tmp_path, nltk_data: Path | None) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    extra = {"NLTK_DATA": str(nltk_data)} if nltk_data else {}
    result = offline([sys.executable, "-c", SCORE_EVERY_INSTRUCTION.format(repo=str(REPO))], home, **extra)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_ifeval_instruction_scores_with_the_network_cut(tmp_path):
    assert default_locations_hold_punkt() == [], "this machine has NLTK data where NLTK looks by default"
    nltk_data = tmp_path / "nltk_data"
    punkt_model.build(nltk_data)
    result = score_every_instruction(tmp_path, nltk_data)
    assert len(result["registry"]) == 25 and sorted(result["scored"]) == result["registry"]
    assert result["errors"] == {}
    assert [name for name, followed in result["scored"].items() if not followed] == []


def test_without_the_data_the_sentence_checks_fail_offline(tmp_path):
    """The control: the same scoring, offline, with no NLTK data: what an ifeval score job on an offline
    node did before the data was provisioned."""
    result = score_every_instruction(tmp_path, None)
    assert set(result["errors"]) == {"length_constraints:number_sentences", "change_case:capital_word_frequency"}
    assert all("punkt_tab" in message for message in result["errors"].values())
    assert len(result["scored"]) == 23


def test_the_data_rule_comes_before_the_ifeval_score_jobs_only(tmp_path):
    """Paper grid, dry-run: fetch_nltk_data (a local rule, on the login node) once, an input of the
    ifeval score jobs and of no other dataset's."""
    ifeval = "results/paper/cells/qwen2.5-7b-instruct/ifeval/train-base/test-0.json"
    arc = "results/paper/cells/qwen2.5-7b-instruct/arc/train-base/test-0.json"
    output = snakemake("-n", ifeval, workdir=tmp_path).stdout
    fetch = output[output.index("rule fetch_nltk_data:") :].split("\n\n")[0]
    assert "output: resources/nltk_data/tokenizers/punkt_tab\n" in fetch
    score_inputs = output[output.index("rule score:") :].split("output:")[0]
    assert "resources/nltk_data/tokenizers/punkt_tab," in score_inputs
    assert output.index("rule fetch_nltk_data:") < output.index("rule score:")
    assert "fetch_nltk_data" not in snakemake("-n", arc, workdir=tmp_path).stdout


@pytest.mark.slow
def test_an_ifeval_row_is_generated_and_scored_with_the_network_cut(tmp_path):
    """The workflow itself, offline: the demo's Punkt model built by its rule, the ifeval base row of the
    sample data generated by the tiny model and scored, every instruction id checked."""
    config = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    paper = yaml.safe_load((REPO / "config/config.yaml").read_text())["datasets"]["ifeval"]
    config["datasets"] = {
        "ifeval": {**paper, "source": {"path": "resources/demo/sample_data/ifeval.jsonl"}, "training": {}}
    }
    config["evaluation"]["max_gen_toks"] = 8
    config.pop("pilot")
    path = tmp_path / "ifeval.yaml"
    path.write_text(yaml.safe_dump(config))
    cells = [f"results/demo/cells/tiny-qwen2/ifeval/train-base/test-{b}.json" for b in range(3)]
    home = tmp_path / "home"
    home.mkdir()
    command = [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO / "Snakefile")]
    command += ["--directory", str(tmp_path), "--configfile", str(path), "--cores", "2", *cells]
    result = offline(command, home, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert (tmp_path / "resources/demo/nltk_data/tokenizers/punkt_tab/english/sent_starters.txt").exists()
    import pandas as pd

    instructions = set()
    for test_bin, cell in enumerate(cells):
        rows = pd.read_parquet(tmp_path / f"results/demo/data/ifeval/bins/bin-{test_bin}.parquet")
        asked = {str(row["item_id"]): list(row["instruction_id_list"]) for row in rows.to_dict("records")}
        samples = [
            json.loads(line) for line in (tmp_path / cell.replace(".json", ".samples.jsonl")).read_text().splitlines()
        ]
        assert {sample["item_id"] for sample in samples} == set(asked)
        for sample in samples:  # every instruction of every question checked
            assert len(sample["inst_level_strict_acc,none"]) == len(asked[sample["item_id"]])
            instructions.update(asked[sample["item_id"]])
    assert len(instructions) == 25
    log = (tmp_path / "results/demo/logs/score/tiny-qwen2/ifeval/train-base.log").read_text()
    assert "Downloaded punkt_tab" not in log and "Error loading punkt_tab" not in log
