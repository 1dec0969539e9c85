"""Scoring: a row's generated outputs (generation.py) turned into its cell files, on the CPU.

Each cell is scored exactly as one lm-eval run of the cell scores it (evaluation.run_lm_eval: the same task spec, lm-eval's own
filters, metrics, process_results and group aggregation, the same cell file and per-question log),
only the model is a replay: `ReplayLM`, registered with lm-eval as `cross_difficulty_replay`, answers
each request lm-eval asks with the response logged for it, matched by (task, doc_id, idx). Before it
answers, it checks that the request is exactly the generated one (prompt with its chat template,
continuation or stop sequences and lengths), and afterwards that no generated request went unasked.
Otherwise the generation is stale (the task's documents, prompt, stop sequences, generation length or
chat template changed after it ran), and scoring stops with one line naming the cell.

In the workflow (rules/score.smk): one `score` job per row (not per cell, not a local rule): one process imports lm-eval
once (~3 s) and scores the row's cells at ~0.5 s each, so the grid adds 616 CPU jobs instead of 6,160
(the DAG and the scheduler stay small), and a generation re-run plans exactly the one scoring job of
its row. A deleted cell also re-runs its row's scoring (seconds, no GPU). It is a CPU-partition job,
not a localrule: 616 of them would load the login node. On SLURM, grouping (`group: score` with
`--group-components score=N`) can pack N rows into one allocation. What the cells record from the
generation (model path, backend, dtype, versions) is read from the raw files, so scoring takes no
generation settings of its own: it cannot disagree with them. Nor does it need the trained model: the
prompts are re-rendered with the base model's tokenizer (`--tokenizer`; fine-tuning keeps it, and the
check above would catch a template that differs), so trained models can be deleted after their
generation without the DAG planning their training again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import lm_eval.models  # noqa: F401  (the registry must be filled before a model is added to it)
from lm_eval.api.model import LM, TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from workflow_scripts.lib import evaluation, runtime
from workflow_scripts.lib.evaluation import RAW_FORMAT
from workflow_scripts.lib.io_utils import json_type, one_line_errors, package_versions, read_json


class StaleGeneration(ValueError):
    """A request lm-eval asks is not the generated one: re-run the generation of the row."""


# What scoring takes from a raw file (generation.raw_record writes them all).
GENERATION_KEYS = (
    "task",
    "model_path",
    "backend",
    "dtype",
    "batch_size",
    "max_gen_toks",
    "seed",
    "versions",
    "row_seconds",
)
REQUEST_KEYS = ("task", "doc_id", "idx", "request_type", "arguments", "resps")


def read_raw(path: str) -> dict:
    """A raw-output file of generation.py, with every part scoring reads: a truncated or foreign file
    fails here naming itself, not as a KeyError deep in the replay."""
    fix = "fix: delete it and run snakemake again to re-run its row's generation"
    raw = read_json(path, "raw-output file", fix)
    generation, requests = raw.get("generation"), raw.get("requests")
    if not isinstance(generation, dict) or not isinstance(requests, list):
        raise ValueError(f"raw-output file {path} has no 'generation' object and 'requests' list; {fix}")
    if generation.get("format") != RAW_FORMAT:  # another format's keys differ: say so, not which are missing
        return raw
    missing = [key for key in GENERATION_KEYS if key not in generation]
    if missing:
        raise ValueError(f"raw-output file {path}: its 'generation' has no {missing}; {fix}")
    for number, request in enumerate(requests):
        if not isinstance(request, dict) or not all(key in request for key in REQUEST_KEYS):
            what = f"has {sorted(request)}" if isinstance(request, dict) else f"is {json_type(request)}"
            raise ValueError(
                f"raw-output file {path}: request {number} {what}, not the keys {list(REQUEST_KEYS)}; {fix}"
            )
    return raw


def _canonical(value):
    """Arguments and responses as a JSON round trip leaves them (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def _first_difference(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@register_model("cross_difficulty_replay")
class ReplayLM(LM):
    """Answers lm-eval's requests from a raw-output file of generation.py, after checking each one."""

    def __init__(self, raw: dict | str, cell: str = "", tokenizer: str | None = None, **_ignored) -> None:
        super().__init__()
        self.raw_file = raw if isinstance(raw, str) else "<raw record>"
        raw = read_raw(raw) if isinstance(raw, str) else raw
        self.generation = generation = raw["generation"]
        if generation.get("format") != RAW_FORMAT:
            raise ValueError(
                f"{self.raw_file} has raw format {generation.get('format')!r}, this scoring reads "
                f"{RAW_FORMAT}; re-run its generation"
            )
        self.cell = cell or self.raw_file
        self.logged = {(r["task"], r["doc_id"], r["idx"]): r for r in raw["requests"]}
        self.asked = defaultdict(int)
        # The prompts were rendered with the model's tokenizer and these arguments; render them alike.
        from transformers import AutoTokenizer

        trust_remote_code = bool((generation.get("model_args") or {}).get("trust_remote_code"))
        self.tokenizer = AutoTokenizer.from_pretrained(
            tokenizer or generation["model_path"], trust_remote_code=trust_remote_code
        )
        self.chat_template_args = generation.get("chat_template_args") or {}

    # lm-eval's own rendering of a chat (the HF backend's), with our tokenizer and arguments.
    apply_chat_template = HFLM.apply_chat_template
    chat_template = TemplateLM.chat_template

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def loglikelihood(self, requests):
        return self._replay(requests)

    def loglikelihood_rolling(self, requests):
        return self._replay(requests)

    def generate_until(self, requests):
        return self._replay(requests)

    def _replay(self, requests) -> list:
        answers = []
        for request in requests:
            key = (request.task_name, request.doc_id, request.idx)
            logged = self.logged.get(key)
            if logged is None:
                raise self._stale(
                    f"lm-eval asks {request.request_type} for {key[0]} doc {key[1]} request {key[2]}, "
                    f"which {self.raw_file} never generated"
                )
            asked = _canonical(request.args)
            if logged["request_type"] != request.request_type or asked != logged["arguments"]:
                raise self._stale(
                    f"the request for {key[0]} doc {key[1]} request {key[2]} is not the one generated "
                    f"in {self.raw_file} ({_difference(request.request_type, asked, logged)})"
                )
            repeat = self.asked[key]
            self.asked[key] += 1
            response = logged["resps"][repeat]
            # A log-likelihood answer is the pair lm-eval's metrics unpack.
            answers.append(tuple(response) if request.request_type == "loglikelihood" else response)
        return answers

    def check_every_request_asked(self) -> None:
        """A generated request lm-eval no longer asks: the task now has fewer documents or choices."""
        unasked = [key for key in self.logged if key not in self.asked]
        if unasked:
            task, doc_id, idx = unasked[0]
            raise self._stale(
                f"{len(unasked)} request(s) generated in {self.raw_file} are no longer asked "
                f"(first: {task} doc {doc_id} request {idx})"
            )

    def _stale(self, what: str) -> StaleGeneration:
        return StaleGeneration(
            f"{self.cell}: {what}: the task's documents, prompt, stop sequences, generation "
            "length or chat template changed after the generation ran; re-run the generation "
            "of this row"
        )


def _difference(request_type: str, asked: list, logged: dict) -> str:
    """Where a request differs from the generated one, in a few words (never the prompt itself)."""
    if request_type != logged["request_type"]:
        return f"a {request_type} request, generated as {logged['request_type']}"
    generated = logged["arguments"]
    if len(asked) != len(generated):
        return f"{len(asked)} arguments, generated with {len(generated)}"
    names = ["prompt", "continuation" if request_type.startswith("loglikelihood") else "generation settings"]
    for name, a, b in zip(names, asked, generated):
        if a != b:
            if isinstance(a, str) and isinstance(b, str):
                return f"its {name} first differs at character {_first_difference(a, b)}"
            return f"its {name} are {json.dumps(a)}, generated with {json.dumps(b)}"
    return "its arguments differ"


def score_cell(
    task: str,
    test_file: str,
    raw: dict | str,
    cell: str = "",
    spec_overrides: dict | None = None,
    tokenizer: str | None = None,
) -> tuple[dict, list[dict]]:
    """One cell from its raw outputs: the cell file's record and its per-question rows, as
    evaluation.run_lm_eval gives them for the same model and bin. `tokenizer`: a folder with the
    tokenizer that rendered the prompts (default: the generated model's own folder)."""
    started = time.time()
    replay = ReplayLM(raw, cell, tokenizer)
    generation = replay.generation
    if generation["task"] != task:
        raise replay._stale(f"generated for task {generation['task']!r}, scored as {task!r}")
    record, rows = evaluation.run_lm_eval(
        task,
        test_file,
        generation["model_path"],
        generation["backend"],
        generation["dtype"],
        generation["batch_size"],
        generation["max_gen_toks"],
        generation["seed"],
        spec_overrides=spec_overrides,
        lm=replay,
    )
    replay.check_every_request_asked()
    # The responses came from the generation's stack; the filters and metrics from this one's lm-eval.
    record["versions"] = generation["versions"]
    record["scoring_versions"] = package_versions("lm_eval")
    record["eval_seconds"] = round(time.time() - started, 3)
    record["generation_seconds"] = generation["row_seconds"]
    # The row's model load, not the replay's (which loads no model).
    record["model_load_seconds"] = generation.get("model_load_seconds")
    return record, rows


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", required=True, help="task name, a file tasks/<task>.yaml")
    parser.add_argument(
        "--cell",
        nargs=4,
        action="append",
        required=True,
        metavar=("TEST_BIN", "TEST_FILE", "RAW_FILE", "CELL_OUT"),
        help="a test bin, its parquet, its raw outputs, the cell file to write; once per cell",
    )
    parser.add_argument("--label", default="{}", help="JSON merged into every cell file (model, dataset, row)")
    parser.add_argument(
        "--tokenizer",
        help="folder of the tokenizer that rendered the prompts (default: the "
        "generated model's; the base model's has the same chat template)",
    )
    evaluation.add_in_context_arguments(parser)
    args = parser.parse_args(argv)

    label = json.loads(args.label)
    scored = []
    print(runtime.describe_caches(), file=sys.stderr)
    # The datasets library's arrow copies of the bins are throwaway: out of the shared cache. lm-eval
    # imported datasets already, so its config is set as well as the variable.
    import datasets.config

    datasets_cache = tempfile.TemporaryDirectory()
    os.environ["HF_DATASETS_CACHE"] = datasets_cache.name
    datasets.config.HF_DATASETS_CACHE = Path(datasets_cache.name)
    evaluation.check_test_files(test_file for _, test_file, _, _ in args.cell)
    if args.tokenizer:  # once here, not for each cell's replay
        evaluation.check_model_folder(args.tokenizer, weights=False)
    for test_bin, test_file, raw_file, out in args.cell:
        with tempfile.TemporaryDirectory() as tmp:
            overrides = None
            if args.in_context_k:
                from workflow_scripts.lib import in_context

                test_file, overrides = in_context.prepare_cell(
                    args.task,
                    test_file,
                    args.in_context_pool,
                    args.in_context_k,
                    args.in_context_seed,
                    args.prompt_format,
                    tmp,
                )
            record, rows = score_cell(args.task, test_file, raw_file, out, overrides, args.tokenizer)
        record.update({**label, "test_bin": int(test_bin)})
        scored.append((record, rows, Path(out)))
    # Written once every cell of the row has scored: a stale bin leaves no half-updated row behind.
    for record, rows, out in scored:
        evaluation.write_cell(record, rows, out)
        print(json.dumps({"cell": str(out), "n": record["n"], "metrics": record["metrics"]}))


if __name__ == "__main__":
    main()
    # Cell files are on disk (atomically); skip the interpreter's slow teardown (see evaluation.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
