# score (CPU): lm-eval's own filters and metrics over a row's generated responses, replayed through a
# model class that checks each prompt is the generated one (workflow_scripts/steps/scoring.py), writing
# the row's cell files. One CPU job per row (not per cell, not local): one lm-eval import scores a row's
# cells at ~0.5 s each, and 616 jobs stay off the login node. Declared once per distinct n_bins, as
# generate is.


for n_bins, names in row_rule_names().items():

    rule:
        name:
            names["score"]
        input:
            unpack(scoring_inputs),
            raw=bin_patterns(layout.raw_file, n_bins),
            bins=rules.bin.output[0],
            code=step_code("workflow_scripts.steps.scoring"),
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
            "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.steps.scoring {params.args} > {log:q} 2>&1"
