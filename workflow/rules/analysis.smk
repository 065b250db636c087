# Token statistics, Rock Token detection and gradient geometry [2.1-2.6, App. B, E]:
# the post-OPD student decodes the detection set (stats_decode) -> every named checkpoint and the
# teacher score the same trajectories (stats_score, one job per checkpoint) -> detection per mode
# (context = Sec. 2.2, official = the authors' selection): ranking, windows W(v), density; the
# cutoff sweep (App. E); clusters (App. B); Figure 2 -> comparison with the authors' ids ->
# gradient geometry (one streaming pass over the models) and its statistics, Figure 3.
# Input functions and targets: workflow/rules/common.smk; logic: rock/stats/, rock/detect/,
# rock/geometry/.


rule stats_decode:
    input:
        benchmark=paths.benchmark(RUN_DIR, config["stats"]["dataset"]),
        model=stats_decode_input(),
    output:
        paths.trajectories(RUN_DIR),
    params:
        config_file=rock_config_file,
        settings=job_settings("stats.dataset", "stats.problem_field", "stats.id_field",
                              "stats.n_problems", "stats.shuffle_seed", "stats.instruction_suffix",
                              "stats.max_new_tokens", "stats.decode_backend",
                              "stats.decode_checkpoint", "stats.checkpoints", "stats.seed",
                              "models"),
    log:
        paths.log_file(RUN_DIR, "stats_decode"),
    benchmark:
        paths.job_timing(RUN_DIR, "stats_decode"),
    conda:
        "../../envs/generate.yaml"
    container:
        lookup(dpath="containers/generate", within=config)
    threads: lookup(dpath="resources/stats_decode/threads", within=config)
    resources:
        **job_resources("stats_decode"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock stats decode --config {params.config_file} --benchmark {input.benchmark} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule stats_score:
    input:
        trajectories=rules.stats_decode.output[0],
        model=stats_checkpoint_input,
        teacher=model_input("teacher"),
    output:
        paths.token_stats(RUN_DIR, "{st_ckpt}"),
    params:
        config_file=rock_config_file,
        settings=job_settings("stats.checkpoints", "stats.chunk_size", "stats.device", "models"),
    log:
        paths.log_file(RUN_DIR, "stats_score", "{st_ckpt}"),
    benchmark:
        paths.job_timing(RUN_DIR, "stats_score", "{st_ckpt}"),
    conda:
        "../../envs/train.yaml"
    container:
        lookup(dpath="containers/train", within=config)
    threads: lookup(dpath="resources/stats_score/threads", within=config)
    resources:
        **job_resources("stats_score"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock stats score --config {params.config_file} --checkpoint {wildcards.st_ckpt}"
        " --trajectories {input.trajectories} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule stats_hidden:
    input:
        trajectories=rules.stats_decode.output[0],
        model=stats_checkpoint_input,
    output:
        paths.hidden_states(RUN_DIR, "{st_ckpt}"),
    params:
        config_file=rock_config_file,
        settings=job_settings("stats.checkpoints", "stats.hidden_dim", "stats.seed", "stats.device",
                              "models"),
    log:
        paths.log_file(RUN_DIR, "stats_hidden", "{st_ckpt}"),
    benchmark:
        paths.job_timing(RUN_DIR, "stats_hidden", "{st_ckpt}"),
    conda:
        "../../envs/train.yaml"
    container:
        lookup(dpath="containers/train", within=config)
    threads: lookup(dpath="resources/stats_score/threads", within=config)
    resources:
        **job_resources("stats_score"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock stats hidden --config {params.config_file} --checkpoint {wildcards.st_ckpt}"
        " --trajectories {input.trajectories} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule detect_select:
    input:
        unpack(detection_inputs),
    output:
        **{name.replace(".", "_"): paths.detection_file(RUN_DIR, "{det_mode}", name)
           for name in paths.DETECTION_SELECT},
    params:
        config_file=rock_config_file,
        tables=detection_table_args,
        settings=job_settings("detection"),
    log:
        paths.log_file(RUN_DIR, "detect_select", "{det_mode}"),
    benchmark:
        paths.job_timing(RUN_DIR, "detect_select", "{det_mode}"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/detect/threads", within=config)
    resources:
        **job_resources("detect"),
    shell:
        "rock detect select --config {params.config_file} --mode {wildcards.det_mode} {params.tables}"
        " --threads {threads} > {log} 2>&1"


rule detect_stability:
    input:
        unpack(detection_inputs),
        ranking=paths.detection_file(RUN_DIR, "{det_mode}", "ranking.parquet"),
    output:
        sweep=paths.detection_file(RUN_DIR, "{det_mode}", "stability.csv"),
        summary=paths.detection_file(RUN_DIR, "{det_mode}", "stability_summary.csv"),
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        tables=detection_table_args,
        settings=job_settings("detection"),
    log:
        paths.log_file(RUN_DIR, "detect_stability", "{det_mode}"),
    benchmark:
        paths.job_timing(RUN_DIR, "detect_stability", "{det_mode}"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/detect_stability/threads", within=config)
    resources:
        **job_resources("detect_stability"),
    shell:
        "rock detect stability --config {params.config_file} --mode {wildcards.det_mode} {params.tables}"
        " {params.inputs}"
        " --threads {threads} > {log} 2>&1"


rule detect_clusters:
    input:
        ranking=paths.detection_file(RUN_DIR, "{det_mode}", "ranking.parquet"),
        tokenizer=model_input("student"),  # decoded with models.student's tokenizer
    output:
        **{name.replace(".", "_"): paths.detection_file(RUN_DIR, "{det_mode}", name)
           for name in paths.DETECTION_CLUSTERS},
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        settings=job_settings("detection.clusters"),
    log:
        paths.log_file(RUN_DIR, "detect_clusters", "{det_mode}"),
    benchmark:
        paths.job_timing(RUN_DIR, "detect_clusters", "{det_mode}"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/analysis/threads", within=config)
    resources:
        **job_resources("analysis"),
    shell:
        "rock detect clusters --config {params.config_file} --mode {wildcards.det_mode}"
        " {params.inputs} > {log} 2>&1"


rule detect_figure2:
    input:
        ranking=paths.detection_file(RUN_DIR, "{det_mode}", "ranking.parquet"),
        density=paths.detection_file(RUN_DIR, "{det_mode}", "density.csv"),
        sweep=rules.detect_stability.output.sweep,
        summary=rules.detect_stability.output.summary,
    output:
        png=report(paths.figure2(RUN_DIR, "{det_mode}", "png"), caption="../report/figure2.rst",
                   category="Detection"),
        pdf=paths.figure2(RUN_DIR, "{det_mode}", "pdf"),
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        settings=job_settings("detection.top_k"),  # the K line of panel (c)
    log:
        paths.log_file(RUN_DIR, "detect_figure2", "{det_mode}"),
    benchmark:
        paths.job_timing(RUN_DIR, "detect_figure2", "{det_mode}"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/analysis/threads", within=config)
    resources:
        **job_resources("analysis"),
    shell:
        "rock detect figure --config {params.config_file} --mode {wildcards.det_mode}"
        " {params.inputs} > {log} 2>&1"


rule detect_compare:
    input:
        rankings=[paths.detection_file(RUN_DIR, m, "ranking.parquet") for m in paths.DETECTION_MODES],
        reference=detection_reference_input(),
    output:
        paths.detection_comparison(RUN_DIR),
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        settings=job_settings("scale", "detection.reference"),
    log:
        paths.log_file(RUN_DIR, "detect_compare"),
    benchmark:
        paths.job_timing(RUN_DIR, "detect_compare"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/analysis/threads", within=config)
    resources:
        **job_resources("analysis"),
    shell:
        "rock detect compare --config {params.config_file} {params.inputs} > {log} 2>&1"


rule geometry_gradients:
    input:
        trajectories=rules.stats_decode.output[0],
        tokens=paths.token_stats(RUN_DIR, config["geometry"]["checkpoint"]),
        rocks=paths.detection_file(RUN_DIR, geometry_mode(), "rocks.json"),
        model=geometry_model_input(),
        teacher=model_input("teacher"),
    output:
        per_type=paths.geometry_file(RUN_DIR, "per_type.csv"),
        info=paths.geometry_file(RUN_DIR, "gradients.json"),
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        settings=job_settings("geometry"),
    log:
        paths.log_file(RUN_DIR, "geometry_gradients"),
    benchmark:
        paths.job_timing(RUN_DIR, "geometry_gradients"),
    conda:
        "../../envs/train.yaml"
    container:
        lookup(dpath="containers/train", within=config)
    threads: lookup(dpath="resources/geometry_gradients/threads", within=config)
    resources:
        **job_resources("geometry_gradients"),
    shell:
        "rock gpus {resources.gpu} --"
        " rock geometry gradients --config {params.config_file} --threads {threads} {params.inputs}"
        " > {log} 2>&1"


rule geometry_analyze:
    input:
        per_type=rules.geometry_gradients.output.per_type,
        tokens=paths.token_stats(RUN_DIR, config["geometry"]["checkpoint"]),
        early=paths.token_stats(RUN_DIR, config["geometry"]["early"]),
        late=paths.token_stats(RUN_DIR, config["geometry"]["late"]),
        pre=paths.token_stats(RUN_DIR, "pre"),  # the persistence groups' selection table (also in selection)
        rocks=paths.detection_file(RUN_DIR, geometry_mode(), "rocks.json"),
        selection=persistence_selection_input(),
    output:
        tests=paths.geometry_file(RUN_DIR, "tests.csv"),
        persistence=paths.geometry_file(RUN_DIR, "persistence.csv"),
        summary=paths.geometry_file(RUN_DIR, "summary.json"),
        png=report(paths.figure3(RUN_DIR, "png"), caption="../report/figure3.rst", category="Geometry"),
        pdf=paths.figure3(RUN_DIR, "pdf"),
    params:
        config_file=rock_config_file,
        inputs=job_inputs,
        settings=job_settings("geometry"),
    log:
        paths.log_file(RUN_DIR, "geometry_analyze"),
    benchmark:
        paths.job_timing(RUN_DIR, "geometry_analyze"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/analysis/threads", within=config)
    resources:
        **job_resources("analysis"),
    shell:
        "rock geometry analyze --config {params.config_file} {params.inputs} > {log} 2>&1"
