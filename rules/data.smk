# download: a hub dataset (or a local file of the same schema) -> one normalized parquet.
# fetch_model: a hub base model -> the model cache, so that no compute job needs the hub.
# fetch_nltk_data: NLTK data a score job needs (IFEval's Punkt model) -> config `nltk_data`, likewise.
# bin: that table -> one parquet per difficulty bin and a manifest with counts.
# heldout_split: each bin -> a training part and a held-out part (only with eval_split: heldout).


rule download:
    input:
        source=local_source,
        code=step_code("workflow_scripts.steps.data"),
    output:
        layout.normalized_table(RESULTS, "{dataset}"),
    log:
        layout.job_log(RESULTS, "download", "{dataset}"),
    # Compute nodes are often offline: fetch on the machine that runs Snakemake.
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        source=lambda wc: json.dumps(dataset_entry(wc.dataset)["source"]),
        prompt_format=lambda wc: dataset_entry(wc.dataset)["prompt_format"],
    shell:
        "python -m workflow_scripts.steps.data --source {params.source:q} --prompt-format {params.prompt_format}"
        " --out {output:q} > {log:q} 2>&1"


rule fetch_model:
    input:
        code=step_code("workflow_scripts.steps.fetch_model"),
    output:
        directory(os.path.join(setting("model_cache"), "{model}")),
    log:
        os.path.join(setting("model_cache"), "logs", "{model}.log"),
    localrule: True  # the login node has the internet; HF_TOKEN (gated Llama) comes from its shell
    conda:
        "../envs/data.yaml"
    params:
        repo=lambda wc: model_entry(wc.model)["hub"],
        revision=lambda wc: model_entry(wc.model)["revision"],
    shell:
        "python -m workflow_scripts.steps.fetch_model --repo {params.repo:q} --revision {params.revision:q}"
        " --out-dir {output:q} > {log:q} 2>&1"


rule fetch_nltk_data:
    input:
        code=step_code("workflow_scripts.steps.fetch_nltk_data"),
    output:
        directory(os.path.join(setting("nltk_data"), "tokenizers", "{package}")),
    log:
        os.path.join(setting("nltk_data"), "logs", "{package}.log"),
    localrule: True  # NLTK's data host is reachable from the login node, not from compute nodes
    conda:
        "../envs/eval.yaml"
    params:
        # The NLTK data folder: the output is <folder>/tokenizers/<package>.
        folder=lambda wc, output: os.path.dirname(os.path.dirname(output[0])),
    shell:
        "python -m workflow_scripts.steps.fetch_nltk_data --package {wildcards.package:q} --out-dir {params.folder:q}"
        " > {log:q} 2>&1"


rule bin:
    input:
        # The normalized table, or that table joined with IRT difficulties (rules/irt.smk).
        data=binning_data,
        code=step_code("workflow_scripts.steps.binning"),
    output:
        # A folder, because the number of bin files is a per-dataset setting.
        directory(layout.bins_dir(RESULTS, "{dataset}")),
    log:
        layout.job_log(RESULTS, "bin", "{dataset}"),
    conda:
        "../envs/data.yaml"
    threads: rule_threads("bin")
    resources:
        **rule_resources("bin"),
        # A check, not a param: changing the minimum must not re-make bins (and everything after them).
        min_train_rows=setting("min_train_rows"),
    params:
        n_bins=lambda wc: dataset_setting(wc.dataset, "n_bins"),
        quantile_key=lambda wc: binning_quantile_key(wc.dataset),
    shell:
        "python -m workflow_scripts.steps.binning --data {input.data:q} --n-bins {params.n_bins}"
        " --quantile-key {params.quantile_key:q} --min-rows {resources.min_train_rows}"
        " --out-dir {output:q} > {log:q} 2>&1"


rule heldout_split:
    input:
        bins=rules.bin.output[0],
        code=step_code("workflow_scripts.steps.heldout_split"),
    output:
        directory(layout.heldout_dir(RESULTS, "{dataset}")),
    log:
        layout.job_log(RESULTS, "heldout_split", "{dataset}"),
    conda:
        "../envs/data.yaml"
    threads: rule_threads("bin")
    resources:
        **rule_resources("bin"),
        min_train_rows=setting("min_train_rows"),
    params:
        fraction=setting("heldout_fraction"),
        seed=setting("heldout_seed"),
    shell:
        "python -m workflow_scripts.steps.heldout_split --bins-dir {input.bins:q} --fraction {params.fraction}"
        " --seed {params.seed} --min-train-rows {resources.min_train_rows} --out-dir {output:q} > {log:q} 2>&1"
