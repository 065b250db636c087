# Toy world [DESIGN.md, "The toy world"]: tokenizer, teacher, student and the raw datasets, built on
# the spot on CPU by `rock toy build`. Defined only at scale toy; at paper scale models and data
# come from the hub.

if is_toy():

    rule toy_world:
        output:
            teacher=directory(toy_world_outputs()["teacher"]),
            student=directory(toy_world_outputs()["student"]),
            raw=[toy_world_outputs()[name] for name in paths.RAW_DATASETS],
        params:
            config_file=rock_config_file,
            # the sections the build reads: a change to them (not to other stages) rebuilds
            settings=job_settings("toy", "seed", "models"),
        log:
            paths.log_file(RUN_DIR, "toy_world"),
        benchmark:
            paths.job_timing(RUN_DIR, "toy_world"),
        conda:
            "../../envs/train.yaml"
        container:
            lookup(dpath="containers/train", within=config)
        threads: lookup(dpath="resources/toy_world/threads", within=config)
        resources:
            **job_resources("toy_world"),
        shell:
            "rock toy build --config {params.config_file} > {log} 2>&1"
