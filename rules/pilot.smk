# pilot: one trained row through every GPU path the grid uses, checked, before the grid is submitted:
#   snakemake --profile slurm-b200 pilot
# The row (config `pilot`) is trained by the grid's own train job (ranks = resources.train.gpu, bf16,
# Liger, paged 8-bit Adam, ZeRO-3), converted by its convert job, and evaluated by its row's generate job
# (vLLM, every bin) and score job; the pilot reads its own bin's cell, beside the base model's cell
# there: the grid later reuses all of them. The
# resume drill trains the same row once more, stops its first attempt after a checkpoint half way
# and lets Snakemake's retry resume it. `pilot` asserts every output and prints the measured figures;
# with them in this results folder, `make plan` sizes the grid from measured rates.


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


rule pilot:
    input:
        # Functions: the pilot's row is worked out only when the pilot is asked for.
        unpack(pilot_inputs),
        code=step_code("workflow_scripts.pilot"),
    output:
        results("pilot/report.json"),
    log:
        results("logs/pilot/report.log"),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        test_file=lambda wc: pilot_job()["test_file"],
        expect=lambda wc: pilot_expectations(),
        benchmarks=lambda wc: pilot_benchmarks(),
    shell:
        "python -m workflow_scripts.pilot --model-dir {input.model:q} --drill-dir {input.drill:q}"
        " --cell {input.cell:q} --base-cell {input.base_cell:q} --test-file {params.test_file:q}"
        " --expect {params.expect:q} --benchmarks {params.benchmarks:q} --out {output:q} 2>&1 | tee {log:q}"
