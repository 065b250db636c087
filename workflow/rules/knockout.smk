# Inference-time knockout [3.2, D.2-D.4] (rock knockout): screening pool and plan -> one decoding
# job per shard (each loads the post-OPD student once and decodes its suppression sets on MATH-500
# and IFEval, writing its own per-problem parquet atomically) -> gather -> statistics, Figures 4
# and 6, Tables 1 and 2. A finished shard is never redone; a failed one is re-run alone
# (snakemake re-runs only missing outputs). Which config keys each step depends on is in its
# `settings` param, so e.g. a new n_resamples re-runs the statistics, not the GPU jobs.


rule knockout_pool:
    input:
        candidates=knockout_detection("ranking.parquet"),
        windows=knockout_detection("windows.parquet"),
        tokens=paths.token_stats(RUN_DIR, "post"),
        tokens_pre=paths.token_stats(RUN_DIR, "pre"),
        model=knockout_model(),  # its stop/pad/special/chat-template tokens are never screened
    output:
        pool=paths.knockout_pool(RUN_DIR),
        plan=paths.knockout_plan(RUN_DIR),
        sets=paths.knockout_dir(RUN_DIR) / "window_sets.csv",  # |S_W(v)| and decoded members
    params:
        config_file=rock_config_file,
        settings=job_settings("knockout.tasks", "knockout.levels", "knockout.window_members",
                              "knockout.window_rule", "knockout.window_min_share", "knockout.n_runs",
                              "knockout.seed", "knockout.n_shards"),
    log:
        paths.log_file(RUN_DIR, "knockout_pool"),
    benchmark:
        paths.job_timing(RUN_DIR, "knockout_pool"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/knockout_analysis/threads", within=config)
    resources:
        **job_resources("knockout_analysis"),
    shell:
        "rock knockout pool --config {params.config_file}"
        " --candidates {input.candidates} --windows {input.windows}"
        " --tokens {input.tokens} --tokens-pre {input.tokens_pre} --model {input.model}"
        " --pool-out {output.pool} --plan-out {output.plan} --sets-out {output.sets}"
        " > {log} 2>&1"


rule knockout_shard:
    input:
        plan=rules.knockout_pool.output.plan,
        model=knockout_model(),
        benchmarks=[paths.benchmark(RUN_DIR, t) for t in config["knockout"]["tasks"]],
    output:
        paths.knockout_shard(RUN_DIR, "{ko_shard}"),
    params:
        config_file=rock_config_file,
        settings=job_settings("knockout.temperature", "knockout.top_p", "knockout.max_gen_toks",
                              "knockout.limit", "evaluation"),
    log:
        paths.log_file(RUN_DIR, "knockout_shard", "{ko_shard}"),
    benchmark:
        paths.job_timing(RUN_DIR, "knockout_shard", "{ko_shard}"),
    conda:
        "../../envs/generate.yaml"
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/knockout_shard/threads", within=config)
    resources:
        **job_resources("knockout_shard"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock knockout shard --config {params.config_file} --plan {input.plan}"
        " --shard {wildcards.ko_shard} --model {input.model} --benchmark-files {input.benchmarks}"
        " --threads {threads} --out {output}"
        " > {log} 2>&1"


rule knockout_gather:
    input:
        plan=rules.knockout_pool.output.plan,
        shards=expand(paths.knockout_shard(RUN_DIR, "{ko_shard}"), ko_shard=knockout_shards()),
    output:
        paths.knockout_per_problem(RUN_DIR),
    log:
        paths.log_file(RUN_DIR, "knockout_gather"),
    benchmark:
        paths.job_timing(RUN_DIR, "knockout_gather"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/knockout_analysis/threads", within=config)
    resources:
        **job_resources("knockout_analysis"),
    shell:
        "rock knockout gather --plan {input.plan} --shards {input.shards} --out {output}"
        " > {log} 2>&1"


rule knockout_analyze:
    input:
        pool=rules.knockout_pool.output.pool,
        plan=rules.knockout_pool.output.plan,
        per_problem=rules.knockout_gather.output[0],
    output:
        [paths.knockout_result(RUN_DIR, name) for name in paths.KNOCKOUT_RESULTS
         if not name.startswith("figure")],
        figure4=report(paths.knockout_result(RUN_DIR, "figure4.png"),
                       caption="../report/knockout_figure4.rst", category="Knockout"),
        figure6=report(paths.knockout_result(RUN_DIR, "figure6.png"),
                       caption="../report/knockout_figure6.rst", category="Knockout"),
        figure4_pdf=paths.knockout_result(RUN_DIR, "figure4.pdf"),
        figure6_pdf=paths.knockout_result(RUN_DIR, "figure6.pdf"),
    params:
        config_file=rock_config_file,
        out_dir=lambda wildcards, output: Path(output.figure4).parent,
        settings=job_settings("knockout.epsilon", "knockout.alpha", "knockout.n_resamples",
                              "knockout.bootstrap_seed", "knockout.fdr_q", "knockout.tasks",
                              "knockout.level_correction"),
    log:
        paths.log_file(RUN_DIR, "knockout_analyze"),
    benchmark:
        paths.job_timing(RUN_DIR, "knockout_analyze"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/knockout_analysis/threads", within=config)
    resources:
        **job_resources("knockout_analysis"),
    shell:
        "rock knockout analyze --config {params.config_file} --pool {input.pool}"
        " --plan {input.plan} --per-problem {input.per_problem} --out-dir {params.out_dir}"
        " > {log} 2>&1"
