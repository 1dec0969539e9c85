# Difficulty from responses, for datasets with an `irt` block: (lm-eval logs ->) a long response table
# -> a 1PL/2PL fit -> the dataset joined with irt_difficulty / _se / irt_discrimination / irt_quantile,
# which the bin step then splits (rules/data.smk). Items with too few responses are listed in the
# report and left out of the bins.


rule responses_from_logs:
    input:
        logs=lambda wc: irt_settings(wc.dataset)["responses"],
        code=step_code("workflow_scripts.steps.responses"),
    output:
        layout.irt_file(RESULTS, "{dataset}", "responses.parquet"),
    log:
        layout.job_log(RESULTS, "responses", "{dataset}"),
    conda:
        "../envs/data.yaml"
    resources:
        **rule_resources("irt"),
    params:
        metric=lambda wc: irt_settings(wc.dataset)["metric"],
        task=lambda wc: f"--task {irt_settings(wc.dataset)['task']}" if irt_settings(wc.dataset).get("task") else "",
    shell:
        "python -m workflow_scripts.steps.responses --logs {input.logs:q} --metric {params.metric:q} {params.task}"
        " --out {output:q} > {log:q} 2>&1"


rule irt:
    input:
        data=rules.download.output[0],
        responses=irt_responses,
        code=step_code("workflow_scripts.steps.irt"),
    output:
        data=layout.irt_file(RESULTS, "{dataset}", "with_difficulty.parquet"),
        item_table=layout.irt_file(RESULTS, "{dataset}", "items.parquet"),
        report=layout.irt_file(RESULTS, "{dataset}", "report.json"),
    log:
        layout.job_log(RESULTS, "irt", "{dataset}"),
    benchmark:
        layout.job_benchmark(RESULTS, "irt", "{dataset}")
    conda:
        "../envs/data.yaml"
    threads: rule_threads("irt")
    resources:
        **rule_resources("irt"),
    params:
        model=lambda wc: irt_settings(wc.dataset)["model"],
        min_responses=lambda wc: irt_settings(wc.dataset)["min_responses"],
        # Bin stability needs the bin count; without bootstrap rounds n_bins is no input of this job.
        bootstrap=lambda wc: irt_bootstrap_arguments(wc.dataset),
    shell:
        "python -m workflow_scripts.steps.irt --responses {input.responses:q} --data {input.data:q}"
        " --model {params.model} --min-responses {params.min_responses} {params.bootstrap}"
        " --out {output.data:q} --items-out {output.item_table:q} --report {output.report:q} > {log:q} 2>&1"
