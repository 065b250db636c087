# Model download [offline compute nodes]: every hub model of `models:` goes into HF_HOME once, on
# the submit host (localrules: it needs the internet, GPU nodes often have none). Each job that
# loads the model waits for its record (model_input in common.smk) and runs with HF_HUB_OFFLINE=1
# (`rock gpus`, rock/gpu_slots.py). Local model directories (the toy world) need no download.

localrules:
    download_model,


wildcard_constraints:
    dl_role="|".join(rock_config.MODEL_ROLES),


rule download_model:
    output:
        paths.model_download(RUN_DIR, "{dl_role}"),
    params:
        model=lambda wildcards: model_name(wildcards.dl_role),
    log:
        paths.log_file(RUN_DIR, "download_model", "{dl_role}"),
    benchmark:
        paths.job_timing(RUN_DIR, "download_model", "{dl_role}"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/data/threads", within=config)
    resources:
        **job_resources("data"),
    shell:
        "rock download --model {params.model:q} --out {output} > {log} 2>&1"
