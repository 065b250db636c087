# Evaluation [5.2] (rock evaluate): every model of evaluation.models (teacher, student, and the
# students after stage-1 and stage-2 distillation) on every benchmark of evaluation.benchmarks,
# through lm-evaluation-harness: n_runs seeded runs, a per-problem table and a summary with Pass@1
# per run, mean and std. One job per model: the model is loaded once and lm-eval batches the
# requests of every benchmark together; the files are still one pair per benchmark
# (eval/<model>/<bench>/). Targets in common.smk (evaluate_targets).
# Any change of the evaluation section re-runs these jobs (params.settings).


rule evaluate:
    input:
        model=eval_model_input,
        data=eval_benchmark_input,
    output:
        tables=eval_outputs("per_problem.parquet"),
        summaries=eval_outputs("summary.json"),
    params:
        config_file=rock_config_file,
        model=eval_model_ref,
        benchmarks=" ".join(f"--benchmark {b}" for b in EVAL_BENCHMARKS),
        table=eval_output_template("per_problem.parquet"),
        summary=eval_output_template("summary.json"),
        settings=job_settings("evaluation", "seed", "models.enable_thinking"),
    log:
        paths.log_file(RUN_DIR, "evaluate", "{eval_model}"),
    benchmark:
        paths.job_timing(RUN_DIR, "evaluate", "{eval_model}"),
    conda:
        "../../envs/generate.yaml"
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/evaluation/threads", within=config)
    resources:
        **job_resources("evaluation"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock evaluate --config {params.config_file} --model {params.model:q}"
        " --model-name {wildcards.eval_model} {params.benchmarks} --threads {threads}"
        " --table {params.table:q} --summary {params.summary:q}"
        " > {log} 2>&1"
