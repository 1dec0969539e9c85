# aggregate: the cells of one (model, dataset) -> a tidy table; cell_table: all of them in one table.
# heatmaps: per (model, dataset), accuracy and change vs the zero-shot base model.


rule aggregate:
    output:
        results("tables/{model}/{dataset}.csv"),
    log:
        results("logs/aggregate/{model}/{dataset}.log"),
    input:
        cells=lambda wc: cells_of(wc.model, wc.dataset),
        code=code("workflow_scripts/aggregation.py", "workflow_scripts/io_utils.py"),
    threads: config["resources"]["aggregate"]["threads"]
    resources:
        **rule_resources("aggregate"),
    conda:
        "../envs/report.yaml"
    shell:
        "python -m workflow_scripts.aggregation --cells {input.cells:q} --csv {output:q} > {log:q} 2>&1"


rule cell_table:
    output:
        csv=results("tables/cells.csv"),
        parquet=results("tables/cells.parquet"),
    log:
        results("logs/cell_table.log"),
    input:
        tables=[results("tables", model, f"{dataset}.csv") for model in MODELS for dataset in DATASETS],
        code=code("workflow_scripts/aggregation.py", "workflow_scripts/io_utils.py"),
    threads: config["resources"]["aggregate"]["threads"]
    resources:
        **rule_resources("aggregate"),
    conda:
        "../envs/report.yaml"
    shell:
        "python -m workflow_scripts.aggregation --tables {input.tables:q} --csv {output.csv:q}"
        " --parquet {output.parquet:q} > {log:q} 2>&1"


rule heatmaps:
    output:
        accuracy=results("figures/{model}/{dataset}/accuracy.png"),
        change=results("figures/{model}/{dataset}/change_vs_base.png"),
    log:
        results("logs/heatmaps/{model}/{dataset}.log"),
    input:
        table=rules.aggregate.output[0],
        code=code("workflow_scripts/plots.py"),
    params:
        headline_metric=lambda wc: config["datasets"][wc.dataset]["headline_metric"],
        dpi=config.get("report", {}).get("figure_dpi", 150),
        annotate="" if config.get("report", {}).get("annotate_cells", True) else "--no-annotate",
    threads: config["resources"]["aggregate"]["threads"]
    resources:
        **rule_resources("aggregate"),
    conda:
        "../envs/report.yaml"
    shell:
        "python -m workflow_scripts.plots --table {input.table:q} --model {wildcards.model:q}"
        " --dataset {wildcards.dataset:q} --headline-metric {params.headline_metric:q}"
        " --accuracy-png {output.accuracy:q} --change-png {output.change:q} --dpi {params.dpi}"
        " {params.annotate} > {log:q} 2>&1"
