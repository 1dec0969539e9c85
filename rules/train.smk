# train: full fine-tuning of one base model on one difficulty bin (TRL + accelerate + DeepSpeed ZeRO-3).
# {trained_row} is the row's name, a bin with its tags (workflow_scripts/lib/cell_names.py): `3`, or
# `3-heldout-seed43` for the training part of bin 3 with seed 43.
# convert: that ZeRO checkpoint -> a Hugging Face model folder; the ZeRO state is then deleted (temp).
# What the conversion code and settings were is recorded in the model's conversion.json; changing them
# re-plans nothing that is converted already: re-making a model would need its deleted ZeRO state,
# i.e. re-training (keeping every ZeRO state instead costs ~6 bytes/param per model, ~19 TB for the
# paper grid). `make plan` lists models converted by other code or settings than the current ones.


rule train:
    input:
        bins=rules.bin.output[0],
        split=heldout_split_input,
        base_model=local_base_model,
        accelerate_config=code(section("launch")["accelerate_config"]),
        code=step_code("workflow_scripts.steps.training"),
    output:
        temp(directory(row_pattern(layout.zero_checkpoint_dir, row="{trained_row}"))),
    log:
        row_pattern(layout.row_log, "train", row="{trained_row}"),
    benchmark:
        row_pattern(layout.row_benchmark, "train", row="{trained_row}")
    retries: rule_retries("train")
    conda:
        "../envs/train.yaml"
    threads: rule_threads("train")
    resources:
        **rule_resources("train"),
        # Resources, not params: how often to checkpoint does not change the model, so changing it must
        # not re-run finished training jobs. A string: Snakemake rounds float resources.
        checkpoint_minutes=str(section("launch")["checkpoint_minutes"]),
        stop_halfway=0,  # the pilot's resume drill (rules/pilot.smk) stops its first attempt half way
    params:
        base_model=lambda wc: base_model(wc.model),
        train_file=training_file,
        prompt_format=lambda wc: dataset_entry(wc.dataset)["prompt_format"],
        settings=training_settings,
        processes=lambda wc: train_processes(wc.model),
        work_dir=lambda wc: layout.training_work_dir(RESULTS, wc.model, wc.dataset, wc.trained_row),
    shell:
        "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.steps.training launch --model {params.base_model:q}"
        " --train-file {params.train_file:q} --prompt-format {params.prompt_format}"
        " --output-dir {output:q} --work-dir {params.work_dir:q}"
        " --checkpoint-minutes {resources.checkpoint_minutes} --stop-halfway {resources.stop_halfway}"
        " --time-limit-minutes {resources.runtime}"
        " --settings {params.settings:q}"
        " --accelerate-config {input.accelerate_config:q} --num-processes {params.processes}"
        " --nodes {resources.nodes} --gpus {resources.node_gpus} > {log:q} 2>&1"


rule convert:
    input:
        # conversion.py is not an input, and the conversion settings are resources, not params: a
        # change to either must not make finished models stale (see the top of this file).
        zero=rules.train.output[0],
    output:
        directory(row_pattern(layout.trained_model_dir, row="{trained_row}")),
    log:
        row_pattern(layout.row_log, "convert", row="{trained_row}"),
    benchmark:
        row_pattern(layout.row_benchmark, "convert", row="{trained_row}")
    conda:
        "../envs/train.yaml"
    threads: rule_threads("convert")
    resources:
        **rule_resources("convert"),
        dtype=section("conversion")["dtype"],
        max_shard_size=section("conversion")["max_shard_size"],
    params:
        # The train job's checkpoints: kept until now, so that a train job killed after its final save
        # resumes on its retry instead of starting over.
        training_work_dir=lambda wc: layout.training_work_dir(RESULTS, wc.model, wc.dataset, wc.trained_row),
    shell:
        "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.steps.conversion --zero-dir {input.zero:q} --out-dir {output:q}"
        " --dtype {resources.dtype} --max-shard-size {resources.max_shard_size:q}"
        " --training-work-dir {params.training_work_dir:q} > {log:q} 2>&1"
