# Two-stage distillation [5.1, C] (rock distill): teacher answers to the stage-1 prompts ->
# stage 1, off-policy KD on them -> stage 2, on-policy KD on student rollouts, with its kept
# checkpoints. Both training jobs resume from their last state after a kill (rock.distill.loop);
# the resume area is not a declared output, so a failed job's cleanup never deletes it. Multi-GPU
# jobs run under torchrun + FSDP2 (distill_launcher in common.smk); each job's `settings` param
# names the config it depends on, so changing stage 2 re-runs stage 2 only.


rule teacher_samples:
    input:
        prompts=paths.prompts(RUN_DIR, 1),
        teacher=model_input("teacher"),
    output:
        samples=paths.teacher_samples(RUN_DIR),
        summary=paths.teacher_samples_summary(RUN_DIR),
    params:
        config_file=rock_config_file,
        teacher=model_name("teacher"),
        settings=job_settings("teacher_samples", "models", "seed"),
    log:
        paths.log_file(RUN_DIR, "teacher_samples"),
    benchmark:
        paths.job_timing(RUN_DIR, "teacher_samples"),
    conda:
        "../../envs/generate.yaml"
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/teacher_samples/threads", within=config)
    resources:
        **job_resources("teacher_samples"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock distill teacher-samples --config {params.config_file} --threads {threads}"
        " --teacher {params.teacher:q}"
        " --prompts {input.prompts} --out {output.samples} --summary {output.summary}"
        " > {log} 2>&1"


rule stage1:
    input:
        samples=rules.teacher_samples.output.samples,
        student=model_input("student"),
        teacher=model_input("teacher"),
    output:
        model=directory(paths.stage_model(RUN_DIR, 1)),
        log=paths.train_log(paths.stage_dir(RUN_DIR, 1)),
        summary=paths.train_summary(paths.stage_dir(RUN_DIR, 1)),
    params:
        config_file=rock_config_file,
        launcher=distill_launcher("stage1"),
        student=model_name("student"),
        teacher=model_name("teacher"),
        out_dir=paths.stage_dir(RUN_DIR, 1),
        settings=job_settings("stage1", "models", "seed"),
    log:
        paths.log_file(RUN_DIR, "stage1"),
    benchmark:
        paths.job_timing(RUN_DIR, "stage1"),
    conda:
        "../../envs/train.yaml"
    container:
        lookup(dpath="containers/train", within=config)
    threads: lookup(dpath="resources/stage1/threads", within=config)
    resources:
        **job_resources("stage1"),
    shell:
        "{params.launcher} distill stage1 --config {params.config_file} --threads {threads}"
        " --student {params.student:q} --teacher {params.teacher:q}"
        " --samples {input.samples} --out-dir {params.out_dir}"
        " > {log} 2>&1"


rule stage2:
    input:
        prompts=paths.prompts(RUN_DIR, 2),
        student=rules.stage1.output.model,
        teacher=model_input("teacher"),
    output:
        model=directory(paths.stage_model(RUN_DIR, 2)),
        checkpoints=directory(paths.train_checkpoints_dir(paths.stage_dir(RUN_DIR, 2))),
        log=paths.train_log(paths.stage_dir(RUN_DIR, 2)),
        summary=paths.train_summary(paths.stage_dir(RUN_DIR, 2)),
    params:
        config_file=rock_config_file,
        launcher=distill_launcher("stage2"),
        teacher=model_name("teacher"),
        out_dir=paths.stage_dir(RUN_DIR, 2),
        settings=job_settings("stage2", "models", "seed"),
    log:
        paths.log_file(RUN_DIR, "stage2"),
    benchmark:
        paths.job_timing(RUN_DIR, "stage2"),
    conda:
        "../../envs/generate.yaml"
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/stage2/threads", within=config)
    resources:
        **job_resources("stage2"),
    shell:
        "{params.launcher} distill stage2 --config {params.config_file} --threads {threads}"
        " --student {input.student} --teacher {params.teacher:q}"
        " --prompts {input.prompts} --out-dir {params.out_dir}"
        " > {log} 2>&1"
