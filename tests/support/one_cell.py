"""One model on one difficulty bin, one cell, outside the workflow: the tests and benchmarks use it to
check lm-eval's results where the workflow would split them into a generate and a score job.

    python -m tests.support.one_cell --task cross_difficulty_arc --bin-file bin-2.parquet --model MODEL ...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from workflow_scripts.lib import evaluation, runtime
from workflow_scripts.lib.io_utils import one_line_errors


def cell_arguments(task, bin_file, model, out, *, backend, dtype, batch_size, seed, **options) -> list[str]:
    """This module's arguments for one cell, as the tests and benchmarks give them (the workflow
    generates and scores rows: steps/generation.py, steps/scoring.py). options: further arguments by name
    (max_gen_toks=8 -> --max-gen-toks 8; True -> the bare flag; None or False -> left out)."""
    arguments = ["--task", task, "--bin-file", str(bin_file), "--model", str(model), "--out", str(out)]
    arguments += ["--backend", backend, "--dtype", dtype, "--batch-size", str(batch_size), "--seed", str(seed)]
    for name, value in options.items():
        if value is not None and value is not False:
            arguments += ["--" + name.replace("_", "-")] + ([] if value is True else [str(value)])
    return arguments


def cell_command(*args, python=sys.executable, **kwargs) -> list[str]:
    """`python -m tests.support.one_cell` with cell_arguments(*args, **kwargs)."""
    return [str(python), "-m", "tests.support.one_cell", *cell_arguments(*args, **kwargs)]


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True, help="task name, a file tasks/<task>.yaml")
    parser.add_argument("--bin-file", required=True, help="parquet of the test bin")
    parser.add_argument("--model", required=True, help="hub name or local folder")
    parser.add_argument("--out", required=True, help="cell json; the per-question log goes beside it")
    parser.add_argument("--label", default="{}", help="JSON merged into the cell file (model, dataset, bins)")
    evaluation.add_model_arguments(parser)
    args = parser.parse_args(argv)

    print(runtime.describe_caches(), file=sys.stderr)
    evaluation.check_test_files([args.bin_file])
    evaluation.check_model_folder(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        # The datasets library's arrow copy of this bin is throwaway: keep it out of the shared cache
        # (one per cell, 6,160 of them in the paper grid). Set before datasets is first imported.
        os.environ["HF_DATASETS_CACHE"] = os.path.join(tmp, "datasets")
        bin_file, overrides = args.bin_file, None
        if args.in_context_k:
            from workflow_scripts.lib import in_context

            bin_file, overrides = in_context.prepare_cell(
                args.task,
                args.bin_file,
                args.in_context_pool,
                args.in_context_k,
                args.in_context_seed,
                args.prompt_format,
                tmp,
            )
        cell, rows = evaluation.run_lm_eval(
            args.task,
            bin_file,
            args.model,
            args.backend,
            args.dtype,
            args.batch_size,
            args.max_gen_toks,
            args.seed,
            args.trust_remote_code,
            overrides,
            args.chat_template_date,
            args.attention_backend,
        )
    cell.update(json.loads(args.label))
    evaluation.write_cell(cell, rows, Path(args.out))
    print(json.dumps({k: cell[k] for k in ("task", "n", "metrics", "eval_seconds")}))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Both files are on disk (atomically). Tearing down the interpreter's torch/transformers/lm-eval
    # module graph takes ~1.5 s on a CPU, paid once per cell, 6,160 times in the paper grid: skip it,
    # but first stop vLLM's engine process, which the skipped exit handlers would have stopped (left
    # running, it keeps the job's output pipes and, on a GPU, its memory). A normal exit hangs there.
    evaluation.stop_child_processes()
    os._exit(0)
