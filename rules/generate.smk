# generate (GPU): one lm-eval run per row (model, dataset, row: a trained bin with its tags, `base`, an
# in-context row) loads the model once and answers every test bin of its dataset (each bin its own task),
# writing each bin's prompts and responses to raw/.../test-{bin}.json (workflow_scripts/steps/generation.py).
# It depends on what shapes the requests (the model, the test files, the generation settings and the
# generation part of the task: task_parts.generation_fingerprint), not on the task files, so a filter or
# metric edit plans score jobs only (rules/score.smk). The raw files are kept (not temp()): they are
# what lets scoring re-run without a GPU.
# An output list cannot depend on a dataset's bin count: the rule is declared once per distinct n_bins in
# the config (one count, as in every shipped config: plain `generate`; see row_rule_names).


for n_bins, names in row_rule_names().items():

    rule:
        name:
            names["generate"]
        input:
            unpack(generation_inputs),
            bins=rules.bin.output[0],
            code=step_code("workflow_scripts.steps.generation"),
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
            "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.steps.generation {params.args} --gpus {resources.gpu} > {log:q} 2>&1"
