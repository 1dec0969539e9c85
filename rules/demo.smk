# Offline stand-ins for the hub, used by config/demo.yaml: synthetic sample data with the real schemas
# and a tiny Qwen2-style model. Nothing here runs unless a config points at these paths.


rule sample_data:
    input:
        code=step_code("workflow_scripts.demo.sample_data"),
    output:
        "resources/demo/sample_data/{sample}.jsonl",
    log:
        "resources/demo/logs/sample_data/{sample}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        rows=60,
    shell:
        "python -m workflow_scripts.demo.sample_data --dataset {wildcards.sample:q} --rows {params.rows}"
        " --out {output:q} > {log:q} 2>&1"


rule tiny_model:
    input:
        code=step_code("workflow_scripts.demo.tiny_model"),
    output:
        directory("resources/demo/tiny-qwen2"),
    log:
        "resources/demo/logs/tiny_model.log",
    localrule: True
    conda:
        "../envs/train.yaml"
    shell:
        "python -m workflow_scripts.demo.tiny_model --out-dir {output:q} > {log:q} 2>&1"


rule sample_responses:
    input:
        sample="resources/demo/sample_data/{sample}.jsonl",
        code=step_code("workflow_scripts.demo.sample_data"),
    # A synthetic response table for a sample's items (1PL, known difficulties): config/demo_irt.yaml
    # fits IRT on it instead of using the shipped quantile column.
    output:
        "resources/demo/sample_responses/{sample}.parquet",
    log:
        "resources/demo/logs/sample_responses/{sample}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    shell:
        "python -m workflow_scripts.demo.sample_data --dataset {wildcards.sample:q} --responses-for {input.sample:q}"
        " --out {output:q} > {log:q} 2>&1"


rule punkt_model:
    input:
        code=step_code("workflow_scripts.demo.punkt_model"),
    # IFEval's Punkt model for the demo: learnt here from a little text (NLTK's data host is out of
    # reach offline), in NLTK's own layout, where config/demo.yaml's nltk_data points.
    output:
        directory("resources/demo/nltk_data/tokenizers/punkt_tab"),
    log:
        "resources/demo/logs/punkt_model.log",
    localrule: True
    conda:
        "../envs/eval.yaml"
    shell:
        "python -m workflow_scripts.demo.punkt_model --out-dir resources/demo/nltk_data > {log:q} 2>&1"


# With nltk_data pointing at the demo's folder both rules could make the model: the demo builds it.
ruleorder: punkt_model > fetch_nltk_data
