# rock-repro: "Cornerstones or Stumbling Blocks? Deciphering the Rock Tokens in On-Policy
# Distillation" (arXiv 2605.09253) as one workflow. Table of contents only: rules live in
# workflow/rules/<stage>.smk, their logic in rock/<stage>.py, input functions and targets in
# workflow/rules/common.smk.
#
#   paper scale : snakemake --profile workflow/profiles/local-gpu  (config.yaml, one GPU machine)
#   SLURM       : snakemake --profile workflow/profiles/slurm
#   toy (CPU)   : snakemake --profile workflow/profiles/toy        (tests/config_toy/config.yaml)
#
# A --configfile given on the command line REPLACES config.yaml (it is not merged into it), and the
# config is validated before any job is planned (rock.config.validate_config).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"
report: "workflow/report/workflow.rst"  # front page of `snakemake --report`


# Validation, config selection, wildcard constraints, input functions, targets.
include: "workflow/rules/common.smk"
# One file per stage, in pipeline order (DESIGN.md). ADD HERE: include: "workflow/rules/<stage>.smk"
include: "workflow/rules/toy.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/knockout.smk"
include: "workflow/rules/freeze.smk"
include: "workflow/rules/report.smk"  # keep last: the report reads every stage


rule all:
    default_target: True
    input:
        final_outputs(),
