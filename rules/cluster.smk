# cluster_check (opt-in target): one SLURM job per GPU rule, with that rule's resources and conda env,
# that reports the GPUs, CPUs and node it got. Run it once on a new cluster before the grid:
#   snakemake --profile slurm-b200 cluster_check
CHECKED_RULES = {"train": "../envs/train.yaml", "generate": "../envs/eval.yaml"}


rule cluster_check:
    input:
        [layout.cluster_check_report(RESULTS, name) for name in CHECKED_RULES],
    localrule: True


for checked_rule, conda_env in CHECKED_RULES.items():

    rule:
        name:
            f"cluster_check_{checked_rule}"
        input:
            code=step_code("workflow_scripts.steps.cluster_check"),
        output:
            layout.cluster_check_report(RESULTS, checked_rule),
        log:
            layout.job_log(RESULTS, "cluster_check", checked_rule),
        conda:
            conda_env
        threads: resource_entry(checked_rule)["threads"]
        resources:
            **check_resources(checked_rule),
        params:
            rule=checked_rule,
            gpus=check_gpus(checked_rule),
        shell:
            "python -m workflow_scripts.steps.cluster_check --rule {params.rule} --expected-gpus {params.gpus}"
            " --out {output:q} > {log:q} 2>&1"
