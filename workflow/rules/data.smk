# Data [5.1, 5.2, C]: prompt pool slices for stages 1 and 2, and the five benchmarks as local
# jsonl (rock.data). At paper scale they read the hub, so they run where the network is: on the
# submit host under the SLURM profile (localrules).

localrules:
    data_prompts,
    data_benchmark,


rule data_prompts:
    input:
        data_input("openthoughts"),
    output:
        stage1=paths.prompts(RUN_DIR, 1),
        stage2=paths.prompts(RUN_DIR, 2),
    params:
        source=data_source_args("openthoughts"),
        prompt_field=lookup(dpath="data/prompt_pool/prompt_field", within=config),
        domain=pool_domain_args(),
        stage1=lookup(dpath="data/stage1_slice", within=config),
        stage2=lookup(dpath="data/stage2_slice", within=config),
    log:
        paths.log_file(RUN_DIR, "data_prompts"),
    benchmark:
        paths.job_timing(RUN_DIR, "data_prompts"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/data/threads", within=config)
    resources:
        **job_resources("data"),
    shell:
        "rock data prompts {params.source} --prompt-field {params.prompt_field:q}"
        " {params.domain}"
        " --stage1 {params.stage1} --stage2 {params.stage2}"
        " --out1 {output.stage1} --out2 {output.stage2}"
        " > {log} 2>&1"


rule data_benchmark:
    input:
        benchmark_input,
    output:
        paths.benchmark(RUN_DIR, "{bench}"),
    params:
        source=benchmark_source_args,
    log:
        paths.log_file(RUN_DIR, "data_benchmark", "{bench}"),
    benchmark:
        paths.job_timing(RUN_DIR, "data_benchmark", "{bench}"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/data/threads", within=config)
    resources:
        **job_resources("data"),
    shell:
        "rock data benchmark {wildcards.bench} {params.source} --out {output}"
        " > {log} 2>&1"
