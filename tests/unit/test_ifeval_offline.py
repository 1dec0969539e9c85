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
import subprocess
import sys
from pathlib import Path

from tests.support.offline import offline
from tests.support.workflow import REPO, snakemake
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


def default_locations_hold_punkt() -> list[str]:
    """NLTK's default search folders (those NLTK_DATA does not add) that hold a Punkt model."""
    code = "import nltk.data, json; print(json.dumps(nltk.data.path))"
    env = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    paths = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout)
    return [p for p in paths if (Path(p) / "tokenizers" / "punkt_tab").exists()]


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
