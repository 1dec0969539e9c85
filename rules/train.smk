# train: full fine-tuning of one base model on one difficulty bin (TRL + accelerate + DeepSpeed ZeRO-3).
# train_bin is the bin with its tags (workflow_scripts/cell_names.py): `3`, or `3-heldout-seed43` for
# the training part of bin 3 with seed 43.
# convert: that ZeRO checkpoint -> a Hugging Face model folder; the ZeRO state is then deleted (temp).


rule train:
    output:
        temp(directory(results("models/{model}/{dataset}/train-{train_bin}/zero"))),
    log:
        results("logs/train/{model}/{dataset}/train-{train_bin}.log"),
    benchmark:
        results("benchmarks/train/{model}/{dataset}/train-{train_bin}.tsv")
    input:
        bins=rules.bin.output[0],
        split=heldout_split_input,
        base_model=local_base_model,
        accelerate_config=code(config["launch"]["accelerate_config"]),
        code=code("workflow_scripts/training.py", "workflow_scripts/prompts.py", "workflow_scripts/runtime.py"),
    params:
        base_model=lambda wc: base_model(wc.model),
        train_file=training_file,
        prompt_format=lambda wc: config["datasets"][wc.dataset]["prompt_format"],
        settings=training_settings,
        processes=train_processes(),
        work_dir=lambda wc: training_work_dir(wc.model, wc.dataset, wc.train_bin),
    threads: config["resources"]["train"]["threads"]
    retries: rule_retries("train")
    resources:
        **rule_resources("train"),
        # A resource, not a param: how often to checkpoint does not change the model, so changing it
        # must not re-run finished training jobs.
        save_steps=config["launch"]["save_steps"],
    conda:
        "../envs/train.yaml"
    shell:
        "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.training launch --model {params.base_model:q}"
        " --train-file {params.train_file:q} --prompt-format {params.prompt_format}"
        " --output-dir {output:q} --work-dir {params.work_dir:q} --save-steps {resources.save_steps}"
        " --settings {params.settings:q}"
        " --accelerate-config {input.accelerate_config:q} --num-processes {params.processes}"
        " --gpus {resources.gpu} > {log:q} 2>&1"


rule convert:
    output:
        directory(results("models/{model}/{dataset}/train-{train_bin}/hf")),
    log:
        results("logs/convert/{model}/{dataset}/train-{train_bin}.log"),
    benchmark:
        results("benchmarks/convert/{model}/{dataset}/train-{train_bin}.tsv")
    input:
        zero=rules.train.output[0],
        code=code("workflow_scripts/conversion.py"),
    params:
        dtype=config["conversion"]["dtype"],
        max_shard_size=config["conversion"]["max_shard_size"],
    threads: config["resources"]["convert"]["threads"]
    resources:
        **rule_resources("convert"),
    conda:
        "../envs/train.yaml"
    shell:
        "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.conversion --zero-dir {input.zero:q} --out-dir {output:q}"
        " --dtype {params.dtype} --max-shard-size {params.max_shard_size:q} > {log:q} 2>&1"
