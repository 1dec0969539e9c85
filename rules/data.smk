# download: a hub dataset (or a local file of the same schema) -> one normalized parquet.
# bin: that table -> one parquet per difficulty bin and a manifest with counts.


rule download:
    output:
        results("data/{dataset}/normalized.parquet"),
    log:
        results("logs/download/{dataset}.log"),
    input:
        source=local_source,
        code=code("workflow_scripts/data.py", "workflow_scripts/io_utils.py"),
    params:
        source=lambda wc: json.dumps(config["datasets"][wc.dataset]["source"]),
        prompt_format=lambda wc: config["datasets"][wc.dataset]["prompt_format"],
    conda:
        "../envs/data.yaml"
    # Compute nodes are often offline: fetch on the machine that runs Snakemake.
    localrule: True
    shell:
        "python -m workflow_scripts.data --source {params.source:q} --prompt-format {params.prompt_format}"
        " --out {output:q} > {log:q} 2>&1"


rule bin:
    output:
        # A folder, because the number of bin files is a per-dataset setting.
        directory(results("data/{dataset}/bins")),
    log:
        results("logs/bin/{dataset}.log"),
    input:
        # The normalized table, or that table joined with IRT difficulties (rules/irt.smk).
        data=binning_data,
        code=code("workflow_scripts/binning.py", "workflow_scripts/io_utils.py"),
    params:
        n_bins=lambda wc: dataset_setting(wc.dataset, "n_bins"),
        quantile_key=lambda wc: binning_quantile_key(wc.dataset),
    threads: config["resources"]["bin"]["threads"]
    resources:
        **rule_resources("bin"),
    conda:
        "../envs/data.yaml"
    shell:
        "python -m workflow_scripts.binning --data {input.data:q} --n-bins {params.n_bins}"
        " --quantile-key {params.quantile_key:q} --out-dir {output:q} > {log:q} 2>&1"
