# aggregate: the cells of one (model, dataset) -> a tidy table with bootstrap intervals;
# cell_table: all of them in one table (csv + parquet); seed_table: per cell, mean and spread over seeds
# beside the bootstrap interval over questions.
# Every cell the run makes (all seeds, in-context rows) is in the tables; the figures show seed means.
# Figures (PNG + PDF, PNGs in the `snakemake --report` html): heatmaps per (model, dataset),
# change_by_distance per dataset, change_grid per model, training_loss per (model, dataset).


rule aggregate:
    input:
        cells=lambda wc: every_cell_of(wc.model, wc.dataset),
        samples=lambda wc: samples_of(wc.model, wc.dataset),
        code=step_code("workflow_scripts.steps.aggregation"),
    output:
        layout.pair_table(RESULTS, "{model}", "{dataset}"),
    log:
        layout.job_log(RESULTS, "aggregate", "{model}", "{dataset}"),
    conda:
        "../envs/report.yaml"
    threads: rule_threads("aggregate")
    resources:
        **rule_resources("aggregate"),
    params:
        headline=lambda wc: f"{wc.dataset}={dataset_entry(wc.dataset)['headline_metric']}",
        bootstrap=bootstrap_arguments(),
    shell:
        "python -m workflow_scripts.steps.aggregation --cells {input.cells:q} --headline-metric {params.headline:q}"
        " {params.bootstrap} --csv {output:q} > {log:q} 2>&1"


rule cell_table:
    input:
        tables=[layout.pair_table(RESULTS, model, dataset) for model in MODELS for dataset in DATASETS],
        code=step_code("workflow_scripts.steps.aggregation"),
    output:
        csv=report(
            layout.run_table(RESULTS, "cells", "csv"),
            caption="captions/cell_table.rst",
            category="Tables",
            labels={"table": "every cell, every metric"},
        ),
        parquet=layout.run_table(RESULTS, "cells", "parquet"),
    log:
        layout.job_log(RESULTS, "cell_table"),
    conda:
        "../envs/report.yaml"
    threads: rule_threads("aggregate")
    resources:
        **rule_resources("aggregate"),
    shell:
        "python -m workflow_scripts.steps.aggregation --tables {input.tables:q} --csv {output.csv:q}"
        " --parquet {output.parquet:q} > {log:q} 2>&1"


rule seed_table:
    input:
        table=rules.cell_table.output.parquet,
        code=step_code("workflow_scripts.steps.seed_summary"),
    output:
        csv=report(
            layout.run_table(RESULTS, "seeds", "csv"),
            caption="captions/seed_table.rst",
            category="Tables",
            labels={"table": "mean and spread over seeds"},
        ),
        parquet=layout.run_table(RESULTS, "seeds", "parquet"),
    log:
        layout.job_log(RESULTS, "seed_table"),
    conda:
        "../envs/report.yaml"
    threads: rule_threads("aggregate")
    resources:
        **rule_resources("aggregate"),
    shell:
        "python -m workflow_scripts.steps.seed_summary --table {input.table:q} --csv {output.csv:q}"
        " --parquet {output.parquet:q} > {log:q} 2>&1"


rule heatmaps:
    input:
        table=rules.aggregate.output[0],
        code=step_code("workflow_scripts.steps.plots"),
    output:
        change=report(
            layout.pair_figure(RESULTS, "{model}", "{dataset}", "change_vs_base", "png"),
            caption="captions/change_vs_base.rst",
            category="{dataset}",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "change vs zero-shot"},
        ),
        change_pdf=layout.pair_figure(RESULTS, "{model}", "{dataset}", "change_vs_base", "pdf"),
        accuracy=report(
            layout.pair_figure(RESULTS, "{model}", "{dataset}", "accuracy", "png"),
            caption="captions/accuracy.rst",
            category="{dataset}",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "accuracy"},
        ),
        accuracy_pdf=layout.pair_figure(RESULTS, "{model}", "{dataset}", "accuracy", "pdf"),
    log:
        layout.job_log(RESULTS, "heatmaps", "{model}", "{dataset}"),
    conda:
        "../envs/report.yaml"
    threads: rule_threads("aggregate")
    resources:
        **rule_resources("aggregate"),
    params:
        figure=figure_arguments(),
    shell:
        # The headline metric comes with the table (its `headline` column), from the aggregate job.
        "python -m workflow_scripts.steps.plots {params.figure} pair --table {input.table:q}"
        " --model {wildcards.model:q} --dataset {wildcards.dataset:q}"
        " --change-png {output.change:q} --accuracy-png {output.accuracy:q} > {log:q} 2>&1"


rule change_by_distance:
    input:
        tables=lambda wc: [layout.pair_table(RESULTS, model, wc.dataset) for model in MODELS],
        code=step_code("workflow_scripts.steps.plots"),
    output:
        png=report(
            layout.summary_figure(RESULTS, "change_by_distance", "{dataset}", "png"),
            caption="captions/change_by_distance.rst",
            category="{dataset}",
            subcategory="all models",
            labels={"model": "all models", "figure": "change by bin distance"},
        ),
        pdf=layout.summary_figure(RESULTS, "change_by_distance", "{dataset}", "pdf"),
    log:
        layout.job_log(RESULTS, "change_by_distance", "{dataset}"),
    conda:
        "../envs/report.yaml"
    threads: rule_threads("aggregate")
    resources:
        **rule_resources("aggregate"),
    params:
        seed=section("statistics")["seed"],
        dpi=section("report")["figure_dpi"],
    shell:
        "python -m workflow_scripts.steps.plots --dpi {params.dpi} distance --tables {input.tables:q}"
        " --dataset {wildcards.dataset:q}"
        " --seed {params.seed} --png {output.png:q} > {log:q} 2>&1"


rule change_grid:
    input:
        tables=lambda wc: [layout.pair_table(RESULTS, wc.model, dataset) for dataset in DATASETS],
        code=step_code("workflow_scripts.steps.plots"),
    output:
        png=report(
            layout.summary_figure(RESULTS, "change_grid", "{model}", "png"),
            caption="captions/change_grid.rst",
            category="All datasets",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "change vs zero-shot, every dataset"},
        ),
        pdf=layout.summary_figure(RESULTS, "change_grid", "{model}", "pdf"),
    log:
        layout.job_log(RESULTS, "change_grid", "{model}"),
    conda:
        "../envs/report.yaml"
    threads: rule_threads("aggregate")
    resources:
        **rule_resources("aggregate"),
    params:
        tables=lambda wc, input: " ".join(f"--table {d} {shlex.quote(t)}" for d, t in zip(DATASETS, input.tables)),
        figure=figure_arguments(),
    shell:
        "python -m workflow_scripts.steps.plots {params.figure} model-grid {params.tables}"
        " --model {wildcards.model:q} --png {output.png:q} > {log:q} 2>&1"


rule training_loss:
    input:
        models=lambda wc: [
            layout.trained_model_dir(RESULTS, wc.model, wc.dataset, row) for row in loss_rows(wc.dataset)
        ],
        code=step_code("workflow_scripts.steps.plots"),
    output:
        png=report(
            layout.pair_figure(RESULTS, "{model}", "{dataset}", "training_loss", "png"),
            caption="captions/training_loss.rst",
            category="{dataset}",
            subcategory="{model}",
            labels={"model": "{model}", "figure": "training loss"},
        ),
        pdf=layout.pair_figure(RESULTS, "{model}", "{dataset}", "training_loss", "pdf"),
    log:
        layout.job_log(RESULTS, "training_loss", "{model}", "{dataset}"),
    conda:
        "../envs/report.yaml"
    threads: rule_threads("aggregate")
    resources:
        **rule_resources("aggregate"),
    params:
        models=lambda wc, input: " ".join(
            f"--model-dir {b} {shlex.quote(d)}" for b, d in zip(bin_ids(wc.dataset), input.models)
        ),
        dpi=section("report")["figure_dpi"],
        eval_split=eval_split(),
    shell:
        "python -m workflow_scripts.steps.plots --dpi {params.dpi} loss {params.models}"
        " --model {wildcards.model:q} --dataset {wildcards.dataset:q} --eval-split {params.eval_split}"
        " --png {output.png:q} > {log:q} 2>&1"
