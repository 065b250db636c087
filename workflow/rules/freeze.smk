# Freeze training [4.2-4.3, 5.2] (rock freeze): every regime of freeze.regimes (baseline OPD,
# Rock-Freeze, the matched random window freeze, soft lambdas) is one stage-2 run from the stage-1
# model with the same seeds, only the token weights of Eq. 19 differing; its kept checkpoints (one
# per evaluated step, rock.freeze.plan) are scored on AIME24/AIME25/HMMT25 by `rock evaluate`, one
# job per regime scoring its checkpoints one after another (tasks built once), the stage-1 model once
# for step 0 (freeze_evaluate_start); the report draws Figure 5 and writes the regime table, the
# wall-clock comparison and the W_R vs W_S two-sample tests. The regime list
# is data: one freeze_train job per name ({fz_regime}), no rule per regime. Checkpoints are temp():
# deleted once evaluated (paper scale: 50 x 8 GB per regime), unless freeze.keep_checkpoints; a
# freeze evaluation re-runs only for the evaluation keys it reads (freeze_eval_settings). Targets in
# common.smk.


rule freeze_train:
    input:
        student=paths.stage_model(RUN_DIR, 1),
        prompts=paths.prompts(RUN_DIR, 2),
        rocks=freeze_detection("rocks.json"),
        ranking=freeze_detection("ranking.parquet"),
        info=freeze_detection("info.json"),
        teacher=model_input("teacher"),
    output:
        model=directory(paths.train_model(paths.freeze_run_dir(RUN_DIR, "{fz_regime}"))),
        checkpoints=[freeze_checkpoint_output("{fz_regime}", s) for s in FREEZE_KEPT_STEPS],
        log_csv=paths.train_log(paths.freeze_run_dir(RUN_DIR, "{fz_regime}")),
        summary=paths.train_summary(paths.freeze_run_dir(RUN_DIR, "{fz_regime}")),
        counts=paths.freeze_log(RUN_DIR, "{fz_regime}"),
        control=paths.freeze_control_match(RUN_DIR, "{fz_regime}"),
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        launcher=distill_launcher("freeze_train"),
        settings=freeze_train_settings,
    log:
        paths.log_file(RUN_DIR, "freeze_train", "{fz_regime}"),
    benchmark:
        paths.job_timing(RUN_DIR, "freeze_train", "{fz_regime}"),
    conda:
        "../../envs/generate.yaml"  # as stage2: vLLM rollouts at paper scale
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/freeze_train/threads", within=config)
    resources:
        **job_resources("freeze_train"),
    shell:
        "{params.launcher} freeze train --config {params.config_file} --regime {wildcards.fz_regime}"
        " --threads {threads} {params.inputs}"
        " > {log} 2>&1"


rule freeze_evaluate_start:
    input:
        model=paths.stage_model(RUN_DIR, 1),
        data=freeze_benchmark_input,
    output:
        table=paths.freeze_eval(RUN_DIR, FREEZE_REGIMES[0], 0, "per_problem.parquet"),
        summary=paths.freeze_eval(RUN_DIR, FREEZE_REGIMES[0], 0, "summary.json"),
    params:
        config_file=rock_config_file,
        options=FREEZE_EVAL_OPTIONS,
        settings=freeze_eval_settings(),
        model_name=f"{paths.FREEZE_STEP0}_step0",
    log:
        paths.log_file(RUN_DIR, "freeze_evaluate", paths.FREEZE_STEP0),
    benchmark:
        paths.job_timing(RUN_DIR, "freeze_evaluate", paths.FREEZE_STEP0),
    conda:
        "../../envs/generate.yaml"
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/freeze_evaluate/threads", within=config)
    resources:
        **job_resources("freeze_evaluate"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock evaluate --config {params.config_file} --model {input.model:q}"
        " --model-name {params.model_name} {params.options}"
        " --threads {threads} --table {output.table:q} --summary {output.summary:q}"
        " > {log} 2>&1"


# freeze.eval_job: one job per kept checkpoint (side by side on a cluster), or one per regime
# scoring its checkpoints one after another in one process (the toy run).
if config["freeze"]["eval_job"] == "checkpoint":

    rule freeze_evaluate:
        input:
            model=freeze_checkpoint("{fz_regime}", "{fz_step}"),
            data=freeze_benchmark_input,
        output:
            table=paths.freeze_eval_path(RUN_DIR, "{fz_regime}", "{fz_step}", "per_problem.parquet"),
            summary=paths.freeze_eval_path(RUN_DIR, "{fz_regime}", "{fz_step}", "summary.json"),
        params:
            config_file=rock_config_file,
            options=FREEZE_EVAL_OPTIONS,
            settings=freeze_eval_settings(),
        log:
            paths.log_file(RUN_DIR, "freeze_evaluate", "{fz_regime}/step_{fz_step}"),
        benchmark:
            paths.job_timing(RUN_DIR, "freeze_evaluate", "{fz_regime}/step_{fz_step}"),
        conda:
            "../../envs/generate.yaml"
        container:
            lookup(dpath="containers/generate", within=config)
        threads: lookup(dpath="resources/freeze_evaluate/threads", within=config)
        resources:
            **job_resources("freeze_evaluate"),
        shell:
            "rock gpus {resources.gpu} --"
            " rock evaluate --config {params.config_file} --model {input.model:q}"
            " --model-name {wildcards.fz_regime}_step{wildcards.fz_step} {params.options}"
            " --threads {threads} --table {output.table:q} --summary {output.summary:q}"
            " > {log} 2>&1"

else:

    rule freeze_evaluate:
        input:
            checkpoints=[freeze_checkpoint("{fz_regime}", s) for s in FREEZE_KEPT_STEPS],
            data=freeze_benchmark_input,
        output:
            tables=freeze_eval_outputs("{fz_regime}", "per_problem.parquet", FREEZE_KEPT_STEPS),
            summaries=freeze_eval_outputs("{fz_regime}", "summary.json", FREEZE_KEPT_STEPS),
        params:
            config_file=rock_config_file,
            models=freeze_eval_args,
            options=FREEZE_EVAL_OPTIONS,
            settings=freeze_eval_settings(),
        log:
            paths.log_file(RUN_DIR, "freeze_evaluate", "{fz_regime}"),
        benchmark:
            paths.job_timing(RUN_DIR, "freeze_evaluate", "{fz_regime}"),
        conda:
            "../../envs/generate.yaml"
        container:
            lookup(dpath="containers/generate", within=config)
        threads: lookup(dpath="resources/freeze_evaluate/threads", within=config)
        resources:
            **job_resources("freeze_evaluate"),
        shell:
            "rock gpus {resources.gpu} --"
            " rock evaluate --config {params.config_file} {params.models} {params.options}"
            " --threads {threads} > {log} 2>&1"


rule freeze_report:
    input:
        **freeze_report_inputs(),
    output:
        figure5=report(paths.freeze_result(RUN_DIR, "figure5.png"),
                       caption="../report/figure5.rst", category="Freeze training"),
        figure5_pdf=paths.freeze_result(RUN_DIR, "figure5.pdf"),
        regimes=report(paths.freeze_result(RUN_DIR, "regimes.csv"),
                       caption="../report/freeze_regimes.rst", category="Freeze training"),
        other=[paths.freeze_result(RUN_DIR, n) for n in paths.FREEZE_RESULTS
               if n not in ("figure5.png", "figure5.pdf", "regimes.csv")],
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        settings=job_settings("freeze.regimes", "freeze.benchmarks", "freeze.tta_fraction"),
    log:
        paths.log_file(RUN_DIR, "freeze_report"),
    benchmark:
        paths.job_timing(RUN_DIR, "freeze_report"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/freeze_report/threads", within=config)
    resources:
        **job_resources("freeze_report"),
    shell:
        "rock freeze report --config {params.config_file} {params.inputs} > {log} 2>&1"
