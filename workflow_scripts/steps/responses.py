"""Turn a folder of lm-eval per-sample logs from many models into a long response table.

lm-eval run with ``--log_samples`` writes ``<output_path>/<model>/samples_<task>_<timestamp>.jsonl``,
one JSON object per (document, filter) with the document, the filter name and each metric's value.
Here every such file is one subject (its folder's path under the root names it), and every logged
document one item: its id is the document's own ``id``/``doc_id``/``key`` field if it has one (as the
download step does), else lm-eval's ``doc_id`` (the row number). ``correct`` is the chosen metric of
the chosen filter, thresholded at 0.5. When a model has several logs of the task, the newest wins.
Output columns: subject, item_id, correct.
"""

from __future__ import annotations

import argparse
import glob
import os

import pandas as pd

from workflow_scripts.lib.bins import ID_COLUMNS
from workflow_scripts.lib.io_utils import atomic_write_parquet, json_lines, one_line_errors


def item_id(sample: dict) -> str:
    doc = sample.get("doc") or {}
    for column in ID_COLUMNS:
        if column in doc and doc[column] is not None:
            return str(doc[column])
    return str(sample["doc_id"])


def sample_files(root: str, task: str | None) -> dict[str, str]:
    """The newest samples file per subject (folder); timestamps in the names sort in time order."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"lm-eval log folder {root!r} does not exist")
    pattern = f"samples_{task}_*.jsonl" if task else "samples_*.jsonl"
    newest = {}
    for path in sorted(glob.glob(os.path.join(root, "**", pattern), recursive=True)):
        subject = os.path.relpath(os.path.dirname(path), root)
        newest[subject] = path  # sorted: a later timestamp replaces an earlier one
    if not newest:
        raise ValueError(f"no lm-eval samples files ({pattern}) under {root!r}; fix: run lm-eval with --log_samples")
    return newest


def read_logs(root: str, metric: str, task: str | None = None) -> pd.DataFrame:
    """metric is 'name,filter' as in headline_metric, e.g. 'acc,none' or 'exact_match,strict-match'."""
    name, _, filter_name = metric.partition(",")
    fix = "fix: re-run lm-eval with --log_samples for that model, or remove the file"
    rows = []
    for subject, path in sample_files(root, task).items():
        count = 0
        for number, sample in json_lines(path, "lm-eval samples file", fix):
            count += 1
            if filter_name and sample.get("filter", filter_name) != filter_name:
                continue
            if name not in sample:
                raise ValueError(
                    f"{path} line {number}: no metric {name!r} (has "
                    f"{sorted(k for k in sample if not isinstance(sample[k], (dict, list)))}); "
                    "fix: set irt.metric to one the task logs"
                )
            try:
                rows.append((subject, item_id(sample), int(float(sample[name]) >= 0.5)))
            except (KeyError, TypeError, ValueError) as error:  # no doc_id, a metric that is no number
                raise ValueError(
                    f"lm-eval samples file {path} line {number}: no doc_id or no number for {name!r} "
                    f"({type(error).__name__}: {error}); {fix}"
                ) from None
        if not count:  # an empty newest log would silently drop its model's answers
            raise ValueError(f"lm-eval samples file {path} is empty; {fix}")
    table = pd.DataFrame(rows, columns=["subject", "item_id", "correct"])
    if table.empty:
        raise ValueError(f"no samples with filter {filter_name!r} under {root!r}; fix: set irt.metric's filter")
    return table.drop_duplicates(["subject", "item_id"], keep="last").reset_index(drop=True)


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", required=True, help="folder of lm-eval output folders, one per model")
    parser.add_argument("--metric", required=True, help="'metric,filter', e.g. acc,none")
    parser.add_argument("--task", help="only samples_<task>_*.jsonl files")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    table = read_logs(args.logs, args.metric, args.task)
    atomic_write_parquet(table, args.out)
    print(
        f"wrote {len(table)} responses of {table['subject'].nunique()} subjects on {table['item_id'].nunique()} items"
    )


if __name__ == "__main__":
    main()
