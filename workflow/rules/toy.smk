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
            config_file=CONFIG_FILE,
            # the sections the build reads: a change to them (not to other stages) rebuilds
            settings={key: config.get(key) for key in ("toy", "seed", "models")},
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
            gpu=lookup(dpath="resources/toy_world/gpu", within=config),
            mem_mb=lookup(dpath="resources/toy_world/mem_mb", within=config),
            runtime=lookup(dpath="resources/toy_world/runtime", within=config),
        shell:
            "rock toy build --config {params.config_file} > {log} 2>&1"
