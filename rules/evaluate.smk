# Evaluation of a row (model, dataset, row: a trained bin with its tags, `base`, an in-context row) on
# every test bin of its dataset, in two jobs:
# - generate (GPU): one lm-eval run loads the model once and answers every bin (each bin its own task),
#   writing each bin's prompts and responses to raw/.../test-{bin}.json (workflow_scripts/generation.py);
# - score (CPU): lm-eval's own filters and metrics over those responses, replayed through a model class
#   that checks each prompt is the generated one (workflow_scripts/scoring.py), writing the cell files.
# generate depends on what shapes the requests (the model, the test files, the generation settings and
# the generation part of the task: task_parts.generation_fingerprint), not on the task files, so a
# filter or metric edit plans score jobs only. score is one CPU job per row (not per cell, not local):
# one lm-eval import scores a row's cells at ~0.5 s each, and 616 jobs stay off the login node.
# The raw files are kept (not temp()): they are what lets scoring re-run without a GPU.
# An output list cannot depend on a dataset's bin count: each pair of rules is declared once per
# distinct n_bins in the config (one count, as in every shipped config: plain `generate` / `score`).


for n_bins, names in evaluation_rule_names().items():

    rule:
        name:
            names["generate"]
        input:
            unpack(generation_inputs),
            bins=rules.bin.output[0],
            code=step_code("workflow_scripts.generation"),
        output:
            bin_patterns(layout.raw_file, n_bins),
        log:
            row_pattern(layout.row_log, "generate"),
        benchmark:
            row_pattern(layout.row_benchmark, "generate")
        wildcard_constraints:
            dataset=datasets_with_bins(n_bins),
        conda:
            "../envs/eval.yaml"
        threads: rule_threads("generate")
        resources:
            **rule_resources("generate"),
        params:
            # One function for all of a row's arguments (fewer functions keep the grid's dry-run fast).
            args=generation_arguments,
        shell:
            "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.generation {params.args} > {log:q} 2>&1"

    rule:
        name:
            names["score"]
        input:
            unpack(scoring_inputs),
            raw=bin_patterns(layout.raw_file, n_bins),
            bins=rules.bin.output[0],
            code=step_code("workflow_scripts.scoring"),
        output:
            [path for cell in bin_patterns(layout.cell, n_bins) for path in (cell, layout.samples(cell))],
        log:
            row_pattern(layout.row_log, "score"),
        wildcard_constraints:
            dataset=datasets_with_bins(n_bins),
        conda:
            "../envs/eval.yaml"
        threads: rule_threads("score")
        resources:
            **rule_resources("score"),
        params:
            args=scoring_arguments,
        shell:
            "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.scoring {params.args} > {log:q} 2>&1"
