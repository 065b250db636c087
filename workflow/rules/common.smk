# Shared workflow code: config selection and validation, wildcard constraints, model resolution,
# input functions, and the targets of the `all` target. Rule files (workflow/rules/<stage>.smk) hold only
# rules; everything they compute comes from here or from rock.paths.
#
# To add a stage: write its input/target functions in a section below ("ADD HERE" marks), append
# its target function to TARGETS, add its section to workflow/schemas/config.schema.yaml, and
# include its rule file in the Snakefile.

import copy
import shlex
from pathlib import Path

from rock import config as rock_config
from rock import paths


# ================================================================================================
# Config: which file, then validation (before any job is planned)
# ================================================================================================

_DEFAULT_CONFIGFILE = "config.yaml"


def _display(path):
    """A config path as the user typed it: relative to the working directory when possible."""
    path = Path(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# Snakemake 9 MERGES a --configfile into the Snakefile's `configfile:` values (only
# --replace-workflow-config replaces them). Here a command-line config file replaces config.yaml
# instead, so that the toy run validates exactly its own file and no paper-scale key leaks into it.
# The effective config is then: the --configfile files (merged in order) + --config KEY=VALUE.
_CLI_CONFIGFILES = [Path(f) for f in workflow.config_settings.configfiles]
_CLI_OVERRIDES = dict(workflow.config_settings.config or {})
if _CLI_CONFIGFILES:
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
    CONFIG_FILES = [_display(f) for f in _CLI_CONFIGFILES]
else:
    CONFIG_FILES = [_DEFAULT_CONFIGFILE]

#: names the config's origin in every error message
CONFIG_SOURCE = " + ".join(CONFIG_FILES) + (" (+ --config)" if _CLI_OVERRIDES else "")

for _file in CONFIG_FILES:
    rock_config.load_yaml(_file)  # refuses duplicate keys, which YAML would silently merge
rock_config.validate_config(config, CONFIG_SOURCE)

#: the one file `rock <stage> --config FILE` reads: the config file itself, or, with overrides or
#: several files, the effective config written once under .snakemake/ (named by content hash)
if len(CONFIG_FILES) == 1 and not _CLI_OVERRIDES:
    CONFIG_FILE = CONFIG_FILES[0]
else:
    CONFIG_FILE = str(rock_config.materialize(config, ".snakemake/rock"))

SCALE = config["scale"]
RUN_DIR = config["run_dir"]


def is_toy():
    return SCALE == "toy"


# ================================================================================================
# Wildcards
# ================================================================================================

wildcard_constraints:
    bench="|".join(paths.BENCHMARKS),


# ================================================================================================
# Models: toy world directory (built by the toy_world job), local directory, or hub id
# ================================================================================================

#: role -> rock.config.ModelRef; a missing local model is a ConfigError here, before planning
MODELS = {role: rock_config.resolve_model(config, role, CONFIG_SOURCE)
          for role in rock_config.MODEL_ROLES}


def model_name(role):
    """What `rock <stage> --teacher/--student` gets: a hub id or a local directory."""
    return MODELS[role].name


def model_input(role):
    """Input list for a job that loads a model: the directory if it is local, else nothing."""
    ref = MODELS[role]
    return [ref.name] if ref.is_file_input else []


# ================================================================================================
# Targets of the `all` target: one function per stage, appended to TARGETS in pipeline order
# ================================================================================================

#: functions returning the final files of one stage; final_outputs() concatenates them
TARGETS = []


def final_outputs():
    """Every stage's final artifacts (the input of the `all` target)."""
    targets = []
    for stage_targets in TARGETS:
        targets.extend(str(t) for t in stage_targets())
    return targets


# ------------------------------------------------------------------------------------------------
# toy world (scale toy only) [DESIGN.md, "The toy world"]
# ------------------------------------------------------------------------------------------------

def toy_world_outputs():
    """Outputs of the toy_world job: the two model directories and the raw datasets."""
    return {
        "teacher": paths.world_model(RUN_DIR, "teacher"),
        "student": paths.world_model(RUN_DIR, "student"),
        **{name: paths.world_raw(RUN_DIR, name) for name in paths.RAW_DATASETS},
    }


# ------------------------------------------------------------------------------------------------
# data [5.1, 5.2, C]
# ------------------------------------------------------------------------------------------------

def data_source_args(name):
    """`rock data` source flags of dataset `name` ("openthoughts" or a benchmark)."""
    if config["data"]["source"] == "toy":
        return f"--jsonl {paths.world_raw(RUN_DIR, name)}"
    if name == "openthoughts":
        pool = config["data"]["prompt_pool"]
        streaming = "--streaming" if pool["streaming"] else "--no-streaming"
        return f"--hub {pool['dataset']} --split {pool['split']} {streaming}"
    entry = config["data"]["benchmarks"][name]
    return f"--hub {entry['dataset']} --split {entry['split']}"


def pool_domain_args():
    """`rock data prompts` domain filter flags; a null domain_field keeps every row."""
    pool = config["data"]["prompt_pool"]
    if pool["domain_field"] is None:
        return "--domain-field ''"
    return f"--domain-field {shlex.quote(pool['domain_field'])} --domain {shlex.quote(pool['domain'])}"


def data_input(name):
    """Input of a data rule: the toy world's raw file, or nothing (hub)."""
    return [str(paths.world_raw(RUN_DIR, name))] if config["data"]["source"] == "toy" else []


def benchmark_source_args(wildcards):
    return data_source_args(wildcards.bench)


def benchmark_input(wildcards):
    return data_input(wildcards.bench)


def data_targets():
    return [paths.prompts(RUN_DIR, 1), paths.prompts(RUN_DIR, 2)] + [
        paths.benchmark(RUN_DIR, name) for name in config["data"]["benchmarks"]]


TARGETS.append(data_targets)

# ------------------------------------------------------------------------------------------------
# ADD HERE: distill (teacher samples, stage 1, stage 2), evaluate, stats, detect, geometry,
# knockout, freeze, report: input functions, then `TARGETS.append(<stage>_targets)`.
# ------------------------------------------------------------------------------------------------
