# pilot: every GPU path the grid takes, checked, before the grid is submitted:
#   snakemake --profile slurm-b200 pilot
# Config `pilot` lists its entries. A row is trained by the grid's own train job (its model's ranks,
# bf16, Liger, paged 8-bit Adam, ZeRO-3), converted by its convert job, generated (vLLM, every bin) and
# scored by its row's jobs; the pilot reads its own bin's cell beside the base model's cell there, and
# the grid later reuses all of them. An entry with resume_drill trains its row once more, stops the
# first attempt after a checkpoint half way and lets Snakemake's retry resume it. A memory_probe entry
# runs a few optimizer steps of its model on sequences of max_length tokens with its dataset's settings
# and records the peak memory. `pilot` asserts every output, names the paths proved (and any path of the
# grid no entry covered) and prints the measured figures; with them in this results folder, `make plan`
# sizes the grid from measured rates.


# Its first attempt's failure is expected (the log of the second says it resumed). No `message:`: a
# dry-run would print it instead of the job's resources, which `make plan` reads.
use rule train as resume_drill with:
    output:
        temp(directory(row_pattern(layout.resume_drill_dir, row="{trained_row}"))),
    log:
        row_pattern(layout.row_log, layout.RESUME_DRILL, row="{trained_row}"),
    benchmark:
        row_pattern(layout.row_benchmark, layout.RESUME_DRILL, row="{trained_row}")
    retries: max(1, rule_retries("train"))
    resources:
        **rule_resources("train"),
        checkpoint_minutes=str(section("launch")["checkpoint_minutes"]),
        stop_halfway=lambda wildcards, attempt: int(attempt == 1),
    params:
        work_dir=lambda wc: layout.resume_drill_work_dir(RESULTS, wc.model, wc.dataset, wc.trained_row),


# A probe that runs out of memory has answered its question: no retry.
rule memory_probe:
    input:
        bins=rules.bin.output[0],
        base_model=local_base_model,
        accelerate_config=code(section("launch")["accelerate_config"]),
        code=step_code("workflow_scripts.steps.training"),
    output:
        layout.memory_probe(RESULTS, "{model}", "{dataset}"),
    log:
        layout.memory_probe_part(RESULTS, "logs", "{model}", "{dataset}"),
    benchmark:
        layout.memory_probe_part(RESULTS, "benchmarks", "{model}", "{dataset}")
    retries: 0
    conda:
        "../envs/train.yaml"
    threads: rule_threads("memory_probe")
    resources:
        **rule_resources("memory_probe"),
    params:
        base_model=lambda wc: base_model(wc.model),
        train_file=lambda wc, input: os.path.join(input.bins, layout.bin_file_name(0)),
        prompt_format=lambda wc: dataset_entry(wc.dataset)["prompt_format"],
        settings=lambda wc: json.dumps(train_settings(wc.model, wc.dataset, seeds()[0]), sort_keys=True),
        processes=lambda wc: train_processes(wc.model),
        work_dir=lambda wc: layout.memory_probe_part(RESULTS, "work", wc.model, wc.dataset),
        steps=MEMORY_PROBE_STEPS,
    shell:
        "export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1; python -m workflow_scripts.steps.training launch --model {params.base_model:q}"
        " --train-file {params.train_file:q} --prompt-format {params.prompt_format}"
        " --output-dir {params.work_dir:q}/zero --work-dir {params.work_dir:q}"
        " --memory-probe-steps {params.steps} --probe-out {output:q}"
        " --settings {params.settings:q}"
        " --accelerate-config {input.accelerate_config:q} --num-processes {params.processes}"
        " --nodes {resources.nodes} --gpus {resources.node_gpus} > {log:q} 2>&1"


rule pilot:
    input:
        # Functions: the pilot's entries are worked out only when the pilot is asked for.
        unpack(pilot_inputs),
        code=step_code("workflow_scripts.steps.pilot"),
    output:
        layout.pilot_report(RESULTS),
    log:
        layout.job_log(RESULTS, "pilot", "report"),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        spec=lambda wc: pilot_spec(),
    shell:
        "python -m workflow_scripts.steps.pilot --spec {params.spec:q} --out {output:q} 2>&1 | tee {log:q}"
