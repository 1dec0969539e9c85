"""Fixed cost of one evaluation cell (process start, imports, task index, model load) next to the
evaluation itself, on the tiny model and a 20-question arc bin. Goal: fixed cost <= 4 s on 2 CPU cores.

    .venv/bin/python benchmarks/eval_cell_overhead.py

Phases are timed inside a fresh interpreter, as a cell job starts one; the whole `python -m
tests.support.one_cell` command (one cell outside the workflow) is timed too, from outside.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import one_cell  # noqa: E402  (imports no torch)

PHASES = r"""
import json, sys, time, tempfile
t0 = time.perf_counter()
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager
from lm_eval.models.huggingface import HFLM
from workflow_scripts.lib import evaluation, task_files
t1 = time.perf_counter()
ours = TaskManager(include_path=str(task_files.TASKS_DIR), include_defaults=False)
t2 = time.perf_counter()
everything = TaskManager(include_path=str(task_files.TASKS_DIR)) if sys.argv[3] == "1" else None
t3 = time.perf_counter()
lm = HFLM(pretrained=sys.argv[1], device="cpu", dtype="float32", batch_size=8)
t4 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    path = f"{tmp}/cross_difficulty_arc.yaml"
    open(path, "w").write(evaluation.cell_task_yaml("cross_difficulty_arc", sys.argv[2]))
    simple_evaluate(model=lm, tasks=[path], task_manager=ours, apply_chat_template=True, bootstrap_iters=0)
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "index_our_tasks": t2 - t1, "index_all_builtin_tasks": t3 - t2,
                  "model_load": t4 - t3, "evaluation": t5 - t4}))
"""


def main() -> None:
    from workflow_scripts.demo import sample_data, tiny_model
    from workflow_scripts.steps import binning, data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = tiny_model.build(tmp / "tiny")
        sample_data.arc_rows(60).to_json(tmp / "arc.jsonl", orient="records", lines=True)
        table = data.normalize(data.load_source({"path": str(tmp / "arc.jsonl")}))
        binning.split_into_bins(table, 3, "1pl_quantile")[0].to_parquet(tmp / "bin-0.parquet")

        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        interpreter = time.perf_counter() - started

        env = {"PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent)}
        out = subprocess.run(
            [sys.executable, "-c", PHASES, str(model), str(tmp / "bin-0.parquet"), "1"],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        phases = json.loads(out.stdout.strip().splitlines()[-1])

        started = time.perf_counter()
        subprocess.run(
            one_cell.cell_command(
                "cross_difficulty_arc",
                tmp / "bin-0.parquet",
                model,
                tmp / "cell.json",
                backend="hf",
                dtype="float32",
                batch_size=8,
                seed=42,
            ),
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        whole_cell = time.perf_counter() - started

    fixed = interpreter + phases["imports"] + phases["index_our_tasks"] + phases["model_load"]
    print("one evaluation cell, tiny model, 20 arc questions (80 log-likelihood requests)")
    print(f"  interpreter start            {interpreter:6.2f} s")
    print(f"  imports (lm_eval, torch, ..)  {phases['imports']:6.2f} s")
    print(f"  index our tasks/ folder      {phases['index_our_tasks']:6.2f} s")
    print(f"  (index all built-in tasks    {phases['index_all_builtin_tasks']:6.2f} s, avoided)")
    print(f"  model load                   {phases['model_load']:6.2f} s")
    print(f"  fixed cost                   {fixed:6.2f} s   (goal <= 4 s)")
    print(f"  evaluation itself            {phases['evaluation']:6.2f} s")
    print(f"  whole `python -m workflow_scripts.lib.evaluation` {whole_cell:6.2f} s")


if __name__ == "__main__":
    main()
