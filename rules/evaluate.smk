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
        bins=rules.bin.output[0],
        model=evaluated_model,
        task=task_files,
        code=code(
            "workflow_scripts/evaluation.py",
            "workflow_scripts/io_utils.py",
            "workflow_scripts/prompts.py",
        ),
    params:
        task=lambda wc: config["datasets"][wc.dataset]["task"],
        model=lambda wc, input: input.model[0] if input.model else base_model(wc.model),
        test_file=lambda wc, input: os.path.join(input.bins, f"bin-{wc.test_bin}.parquet"),
        label=lambda wc: json.dumps(
            {"model": wc.model, "dataset": wc.dataset, "train": wc.train, "test_bin": int(wc.test_bin)}
        ),
        backend=lambda wc: evaluation_settings(wc.dataset)["backend"],
        dtype=lambda wc: evaluation_settings(wc.dataset)["dtype"],
        batch_size=lambda wc: evaluation_settings(wc.dataset)["batch_size"],
        max_gen_toks=lambda wc: (
            f"--max-gen-toks {evaluation_settings(wc.dataset)['max_gen_toks']}"
            if evaluation_settings(wc.dataset).get("max_gen_toks")
            else ""
        ),
        seed=lambda wc: evaluation_settings(wc.dataset)["seed"],
        trust_remote_code=lambda wc: (
            "--trust-remote-code" if config["models"][wc.model].get("trust_remote_code") else ""
        ),
    threads: config["resources"]["evaluate"]["threads"]
    resources:
        **rule_resources("evaluate"),
    conda:
        "../envs/eval.yaml"
    shell:
        "python -m workflow_scripts.evaluation --task {params.task} --bin-file {params.test_file:q}"
        " --model {params.model:q} --out {output.cell:q} --label {params.label:q}"
        " --backend {params.backend} --dtype {params.dtype} --batch-size {params.batch_size}"
        " --seed {params.seed} {params.max_gen_toks} {params.trust_remote_code} > {log:q} 2>&1"
