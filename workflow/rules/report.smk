# Report [DESIGN.md stage 10]: every claim of the paper (results/expected/paper/claims.csv) and, on
# the toy, every golden number (results/expected/toy/golden.csv) checked against what this run
# produced; then one page (HTML + markdown) with Figures 2-6, Tables 1-2, the check and the
# provenance. Both read whatever the other stages wrote: a missing artifact is "not run".
# `snakemake --report report.html` collects the outputs marked report() below (and those of the
# stage rules, captioned from workflow/report/*.rst).

localrules:
    report_check,
    report_render,


rule report_check:
    input:
        expected=report_expected_tables(),
        artifacts=report_inputs(),
    output:
        csv=report(
            paths.report_file(RUN_DIR, "claims_check.csv"),
            caption="../report/claims_check.rst",
            category="Claim check",
        ),
        md=paths.report_file(RUN_DIR, "claims_check.md"),
        truth=paths.report_file(RUN_DIR, "ground_truth.csv"),
    params:
        config_file=rock_config_file,
        settings=job_settings(*config),  # config claims and the provenance show the whole config
        # the run directory holding every artifact (report/ sits directly under it)
        run_dir=lambda w, output: Path(output.csv).parent.parent,
        no_fail="" if config["report"]["fail_on_regression"] else "--no-fail",
    log:
        paths.log_file(RUN_DIR, "report_check"),
    benchmark:
        paths.job_timing(RUN_DIR, "report_check"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/report/threads", within=config)
    resources:
        **job_resources("report"),
    shell:
        "rock report check --expected {input.expected} --run-dir {params.run_dir}"
        " --config {params.config_file} --out {output.csv} {params.no_fail} > {log} 2>&1"


rule report_render:
    input:
        check=rules.report_check.output.csv,
        artifacts=report_inputs(),
    output:
        html=report(
            paths.report_file(RUN_DIR, "report.html"),
            caption="../report/report.rst",
            category="Report",
        ),
        md=paths.report_file(RUN_DIR, "report.md"),
        provenance=paths.report_file(RUN_DIR, "provenance.json"),
    params:
        config_file=rock_config_file,
        settings=job_settings(*config),  # config claims and the provenance show the whole config
        run_dir=lambda w, output: Path(output.html).parent.parent,
        images="" if config["report"]["embed_images"] else "--link-images",
        # best effort, not a declared output: kept with the run where chromium is installed
        screenshot=lambda w, output: Path(output.html).with_suffix(".png"),
    log:
        paths.log_file(RUN_DIR, "report_render"),
    benchmark:
        paths.job_timing(RUN_DIR, "report_render"),
    conda:
        "../../envs/analysis.yaml"
    container:
        lookup(dpath="containers/analysis", within=config)
    threads: lookup(dpath="resources/report/threads", within=config)
    resources:
        **job_resources("report"),
    shell:
        "rock report render --run-dir {params.run_dir} --check {input.check}"
        " --config {params.config_file} --captions workflow/report {params.images}"
        " --out {output.html} --screenshot {params.screenshot} > {log} 2>&1"
