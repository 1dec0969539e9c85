# evaluate: one lm-eval run per cell (model, dataset, train bin or `base`, test bin) on that test bin.


rule evaluate:
    output:
        cell=results("cells/{model}/{dataset}/train-{train}/test-{test_bin}.json"),
        samples=results("cells/{model}/{dataset}/train-{train}/test-{test_bin}.samples.jsonl"),
    log:
        results("logs/evaluate/{model}/{dataset}/train-{train}/test-{test_bin}.log"),
    benchmark:
        results("benchmarks/evaluate/{model}/{dataset}/train-{train}/test-{test_bin}.tsv")
    input:
        unpack(evaluation_inputs),
        bins=rules.bin.output[0],
        code=step_code("workflow_scripts.evaluation"),
    params:
        # One function for all of a cell's arguments: Snakemake inspects every input/params function
        # of each of the grid's 6,160 cells, so fewer functions keep the dry-run fast.
        args=evaluation_arguments,
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        **rule_resources("evaluate"),
    conda:
        "../envs/eval.yaml"
    shell:
        "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.evaluation {params.args} --out {output.cell:q} > {log:q} 2>&1"
