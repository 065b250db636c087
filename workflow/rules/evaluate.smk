# Evaluation [5.2] (rock evaluate): every model of evaluation.models (teacher, student, and the
# students after stage-1 and stage-2 distillation) on every benchmark of evaluation.benchmarks,
# through lm-evaluation-harness: n_runs seeded runs, a per-problem table and a summary with Pass@1
# per run, mean and std. One job per {model} x {benchmark}; targets in common.smk (evaluate_targets).
# Any change of the evaluation section re-runs these jobs (params.settings).


rule evaluate:
    input:
        model=eval_model_input,
        data=eval_benchmark_input,
    output:
        table=paths.eval_file(RUN_DIR, "{eval_model}", "{bench}", "per_problem.parquet"),
        summary=paths.eval_file(RUN_DIR, "{eval_model}", "{bench}", "summary.json"),
    params:
        config_file=CONFIG_FILE,
        model=eval_model_ref,
        settings=lookup(dpath="evaluation", within=config),
    log:
        paths.log_file(RUN_DIR, "evaluate", "{eval_model}/{bench}"),
    conda:
        "../../envs/generate.yaml"
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/evaluation/threads", within=config)
    resources:
        gpu=lookup(dpath="resources/evaluation/gpu", within=config),
        mem_mb=lookup(dpath="resources/evaluation/mem_mb", within=config),
        runtime=lookup(dpath="resources/evaluation/runtime", within=config),
    shell:
        "rock evaluate --config {params.config_file} --model {params.model:q}"
        " --model-name {wildcards.eval_model} --benchmark {wildcards.bench} --threads {threads}"
        " --table {output.table} --summary {output.summary}"
        " > {log} 2>&1"
