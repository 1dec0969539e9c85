"""Scoring with the real task objects, without a model: lm-eval builds a task of tasks/ on given rows,
a function answers each request, and the task's own filters and process_results score the answers
(tests/unit/test_tasks.py, tests/integration/test_parity.py)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from tests.support.workflow import REPO
from workflow_scripts.lib import evaluation, task_files


def evaluation_utils():
    sys.path.insert(0, str(REPO / "tasks"))
    import utils

    return utils


def score(task: str, rows: list[dict], respond) -> dict[str, float]:
    """Build `task` with lm-eval on `rows`, answer each request with respond(doc, instance), run the
    task's own filters and process_results, and return the mean of each 'metric,filter'."""
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "bin.parquet"
        pd.DataFrame(rows).to_parquet(data)
        spec = evaluation.cell_task_spec(task, str(data))
        (Path(tmp) / "cell.yaml").write_text(yaml.safe_dump(spec))
        folders = [tmp, str(task_files.TASKS_DIR)] if "group" in spec else [str(task_files.TASKS_DIR)]
        manager = TaskManager(include_path=folders, include_defaults=False)
        loaded = manager.load([spec["group"] if "group" in spec else str(Path(tmp) / "cell.yaml")])
        totals: dict[str, list[float]] = {}
        for obj in loaded["tasks"].values():
            obj.build_all_requests(rank=0, world_size=1)
            for instance in obj.instances:
                instance.resps = [respond(instance.doc, instance)]
            obj.apply_filters()
            by_doc: dict[int, list] = {}
            for instance in obj.instances:
                by_doc.setdefault(instance.doc_id, []).append(instance)
            for instances in by_doc.values():
                doc = instances[0].doc
                for key in instances[0].filtered_resps:
                    results = [i.filtered_resps[key] for i in instances]
                    for metric, value in obj.process_results(doc, results).items():
                        value = sum(value) / len(value) if isinstance(value, list) else float(value)
                        totals.setdefault(f"{metric},{key}", []).append(value)
    return {key: sum(values) / len(values) for key, values in totals.items()}
