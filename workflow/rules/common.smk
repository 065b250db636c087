# Shared workflow code: config selection and validation, wildcard constraints, model resolution,
# input functions, and the targets of the `all` target. Rule files (workflow/rules/<stage>.smk) hold only
# rules; everything they compute comes from here or from rock.paths.
#
# Careful: snakemake --lint reports "Mixed rules and functions" for this file as soon as one line
# (comments and docstrings too) has the word rule, a space, and further on the same line a colon.
# Write "job" or "target" in such lines instead.
#
# To add a stage: write its input/target functions in a section below ("ADD HERE" marks), append
# its target function to TARGETS, add its section to workflow/schemas/config.schema.yaml, and
# include its rule file in the Snakefile.

import copy
import shlex
from pathlib import Path

from snakemake.logging import logger

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
    logger.info(f"rock: config from {' + '.join(CONFIG_FILES)} only "
                f"(a --configfile replaces {_DEFAULT_CONFIGFILE}, it is not merged into it)")
else:
    CONFIG_FILES = [_DEFAULT_CONFIGFILE]

#: names the config's origin in every error message
CONFIG_SOURCE = " + ".join(CONFIG_FILES) + (" (+ --config)" if _CLI_OVERRIDES else "")

for _file in CONFIG_FILES:
    rock_config.load_yaml(_file)  # refuses duplicate keys, which YAML would silently merge
rock_config.validate_config(config, CONFIG_SOURCE)

#: the one file `rock <stage> --config FILE` reads (params.config_file, see rock_config_file): the
#: config file itself, or, with overrides or several files, the effective config written once
#: under .snakemake/ (named by content hash)
if len(CONFIG_FILES) == 1 and not _CLI_OVERRIDES:
    CONFIG_FILE = CONFIG_FILES[0]
else:
    CONFIG_FILE = str(rock_config.materialize(config, ".snakemake/rock"))

SCALE = config["scale"]
RUN_DIR = config["run_dir"]


def is_toy():
    return SCALE == "toy"


# ================================================================================================
# What every job declares: its resources and the config values it depends on
# ================================================================================================

def job_resources(group):
    """`resources: **job_resources("<group>")`: gpu, mem_mb, runtime of config resources.<group>
    (threads are the rule's `threads:`; partition and account live in the SLURM profile)."""
    return {key: config["resources"][group][key] for key in ("gpu", "mem_mb", "runtime")}


def job_settings(*keys):
    """The `settings` param of a job: the config values it uses, by dotted key ("stage1",
    "knockout.k_screen"; a missing key is None). With --rerun-triggers params, changing a value
    re-runs exactly the jobs that list it; the config file's name is not among them
    (rock_config_file)."""
    settings = {}
    for key in keys:
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        settings[key] = node
    return settings


def rock_config_file(wildcards, input):
    """`params: config_file=rock_config_file`: the file `rock <stage> --config` reads (CONFIG_FILE).

    Snakemake does not record a param computed from the job's input (or output, threads,
    resources) for its params rerun trigger, and this one must not be recorded: a --config
    KEY=VALUE override writes a new file (named by content hash), which would otherwise re-plan
    every job, days of GPU time at paper scale. What a job depends on is its `settings` param."""
    return CONFIG_FILE


def job_inputs(wildcards, input):
    """`params: inputs=job_inputs`, given to the stage as `{params.inputs}`: `--in NAME=PATH` for
    every named input of the job (a list repeats its name), so the stage reads exactly the files
    Snakemake tracked (rock.job_files). Derived from the job's input, so not a rerun trigger."""
    return " ".join(f"--in {shlex.quote(f'{name}={path}')}" for name, value in input.items()
                    for path in ([value] if isinstance(value, str) else value))


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
    """Input list for a job that loads a model: the directory if it is local, else the record of
    its download into HF_HOME (download_model, a submit-host job: compute nodes may be offline)."""
    ref = MODELS[role]
    return [ref.name] if ref.is_file_input else [str(paths.model_download(RUN_DIR, role))]


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

# ------------------------------------------------------------------------------------------------
# distill [5.1, C] (workflow/rules/distill.smk, rock.distill)
# ------------------------------------------------------------------------------------------------

def distill_launcher(section):
    """`rock launch` (rock/launch.py) for a training job of resource group ``section``: `rock` for
    one GPU, `torchrun --standalone` (FSDP2, one rank per GPU) for several on one node, one torchrun
    per node through srun for a multi-node SLURM allocation; on the job's own devices (rock gpus).
    It first checks that the global batch of the stage (freeze training: stage 2's) splits evenly
    over the ranks."""
    gpus = int(config["resources"][section]["gpu"])
    batch = config["stage1" if section == "stage1" else "stage2"]["global_batch"]
    return f"rock launch --gpus-per-node {gpus} --global-batch {batch} --"


def distill_targets():
    stage2 = paths.stage_dir(RUN_DIR, 2)
    return [paths.teacher_samples(RUN_DIR), paths.stage_model(RUN_DIR, 1), paths.stage_model(RUN_DIR, 2),
            paths.train_checkpoints_dir(stage2), paths.train_log(stage2)]


TARGETS.append(distill_targets)

# ------------------------------------------------------------------------------------------------
# evaluate [5.2] (workflow/rules/evaluate.smk, rock.evaluate): {model} x {benchmark}
# ------------------------------------------------------------------------------------------------

wildcard_constraints:
    eval_model="|".join(paths.EVAL_MODELS),

#: evaluated names that are distilled students -> their stage (the final model of rock distill)
_EVAL_STAGES = {"stage1": 1, "stage2": 2}


def eval_model_ref(wildcards):
    """What `rock evaluate --model` gets: the role's hub id / directory, or a stage's model dir."""
    name = wildcards.eval_model
    if name in _EVAL_STAGES:
        return str(paths.stage_model(RUN_DIR, _EVAL_STAGES[name]))
    return model_name(name)


def eval_model_input(wildcards):
    """The model directory when it is local (toy world, distilled stage), else nothing (hub)."""
    name = wildcards.eval_model
    if name in _EVAL_STAGES:
        return [str(paths.stage_model(RUN_DIR, _EVAL_STAGES[name]))]
    return model_input(name)


#: the benchmarks every evaluated model is scored on (one evaluate job per model does them all)
EVAL_BENCHMARKS = list(config["evaluation"]["benchmarks"])


def eval_benchmark_input(wildcards):
    """The data stage's jsonl files with evaluation.dataset_source local; nothing when lm-eval
    reads the hub."""
    if config["evaluation"]["dataset_source"] == "local":
        return [str(paths.benchmark(RUN_DIR, b)) for b in EVAL_BENCHMARKS]
    return []


def eval_outputs(name):
    """One file ``name`` (of paths.EVAL_FILES) per benchmark of the model {eval_model}."""
    return [str(paths.eval_file(RUN_DIR, "{eval_model}", b, name)) for b in EVAL_BENCHMARKS]


def eval_output_template(name):
    """The path `rock evaluate` fills in per benchmark: {bench} stays a placeholder for it."""
    def template(wildcards):
        return str(paths.eval_file(RUN_DIR, wildcards.eval_model, "{bench}", name))
    return template


def evaluate_targets():
    ev = config["evaluation"]
    return [paths.eval_file(RUN_DIR, m, b, name) for m in ev.get("models", [])
            for b in EVAL_BENCHMARKS for name in paths.EVAL_FILES]


TARGETS.append(evaluate_targets)

# ------------------------------------------------------------------------------------------------
# token statistics, detection, geometry [2.1-2.6, B, E] (workflow/rules/analysis.smk; rock.stats,
# rock.detect, rock.geometry)
# ------------------------------------------------------------------------------------------------

#: checkpoint names of config stats.checkpoints (wildcard values: pre, post, early, late)
STATS_CHECKPOINTS = list(config["stats"]["checkpoints"])

wildcard_constraints:
    st_ckpt="|".join(STATS_CHECKPOINTS),
    det_mode="|".join(paths.DETECTION_MODES),


def stats_model_input(spec):
    """Input of the model a stats checkpoint spec names (rock.stats.resolve_checkpoint): the stage
    model, the stage-2 checkpoints directory, the role's local directory, or nothing (hub id)."""
    if spec in ("stage1", "stage2"):
        return [str(paths.stage_model(RUN_DIR, int(spec[-1])))]
    if spec in ("stage2_first", "stage2_penultimate", "stage2_last") or (spec.startswith("step_") and spec[5:].isdigit()):
        return [str(paths.train_checkpoints_dir(paths.stage_dir(RUN_DIR, 2)))]
    if spec in rock_config.MODEL_ROLES:
        return model_input(spec)
    return [spec] if Path(spec).exists() else []


def stats_checkpoint_input(wildcards):
    return stats_model_input(config["stats"]["checkpoints"][wildcards.st_ckpt])


def stats_decode_input():
    st = config["stats"]
    return stats_model_input(st["checkpoints"][st["decode_checkpoint"]])


def detection_inputs(wildcards):
    """Token tables (and hidden states) that one detection mode reads."""
    det = config["detection"]
    ins = {"post": str(paths.token_stats(RUN_DIR, "post"))}
    if wildcards.det_mode == "context":
        ins["pre"] = str(paths.token_stats(RUN_DIR, "pre"))
        if det["context"]["representation"] == "hidden":
            ins["hidden"] = str(paths.hidden_states(RUN_DIR, det["hidden_checkpoint"]))
    return ins


def detection_table_args(wildcards, input):
    """`rock detect select|stability` flags naming the token tables of detection_inputs (a param
    derived from the job's input: tracked through the input files, not as a param)."""
    return " ".join(f"--{name} {shlex.quote(str(input[name]))}" for name in ("post", "pre", "hidden")
                    if name in input.keys())


def detection_reference_input():
    """The authors' id files compared with our top-K (paper scale only, when configured)."""
    if is_toy():
        return []
    ref = config["detection"]["reference"]
    return [p for p in (ref["rock_ids"], ref["control_ids"]) if p]


def geometry_mode():
    """The detection mode whose Rock set forms the rock group of Sec. 2.6."""
    return config["geometry"]["detection_mode"] or config["detection"]["downstream_mode"]


def geometry_model_input():
    return stats_model_input(config["stats"]["checkpoints"][config["geometry"]["checkpoint"]])


def persistence_selection_input():
    """What the persistence groups are selected on (rock.persistence): the detection inputs (the
    pre and post tables; holdout re-detects R on half of them) and the pre, post and late models,
    whose weights `rock geometry analyze` compares (late must not be a selection model)."""
    from types import SimpleNamespace

    ckpts = config["stats"]["checkpoints"]
    tables = detection_inputs(SimpleNamespace(det_mode=geometry_mode())).values()
    models = [m for c in ("pre", "post", config["geometry"]["late"]) for m in stats_model_input(ckpts[c])]
    return sorted({str(p) for p in [*tables, *models]})


def analysis_targets():
    out = [paths.token_stats(RUN_DIR, c) for c in STATS_CHECKPOINTS]
    for mode in paths.DETECTION_MODES:
        names = paths.DETECTION_SELECT + paths.DETECTION_STABILITY + paths.DETECTION_CLUSTERS
        out += [paths.detection_file(RUN_DIR, mode, n) for n in names]
        out += [paths.figure2(RUN_DIR, mode, ext) for ext in ("png", "pdf")]
    out.append(paths.detection_comparison(RUN_DIR))
    out += [paths.geometry_file(RUN_DIR, n) for n in paths.GEOMETRY_FILES]
    out += [paths.figure3(RUN_DIR, ext) for ext in ("png", "pdf")]
    return out


TARGETS.append(analysis_targets)

# ------------------------------------------------------------------------------------------------
# knockout [3, D] (workflow/rules/knockout.smk, rock.knockout)
# ------------------------------------------------------------------------------------------------

wildcard_constraints:
    ko_shard=r"\d+",


def knockout_shards():
    """Shard indices 0..n_shards-1 (config knockout.n_shards): one decoding job each."""
    return list(range(config["knockout"]["n_shards"]))


def knockout_detection(name):
    """A file of the detection mode whose ranking feeds the knockout (detection.downstream_mode)."""
    return paths.detection_file(RUN_DIR, config["detection"]["downstream_mode"], name)


def knockout_model():
    """The model the knockout probes: the post-OPD student (final stage-2 model) [D.3]."""
    return paths.stage_model(RUN_DIR, 2)


def knockout_targets():
    return [paths.knockout_result(RUN_DIR, name) for name in paths.KNOCKOUT_RESULTS]


TARGETS.append(knockout_targets)


# ------------------------------------------------------------------------------------------------
# freeze training [4, 5.2] (workflow/rules/freeze.smk, rock.freeze): one stage-2 run per regime,
# one evaluation per (regime, evaluated step), step 0 (the stage-1 model) evaluated once
# ------------------------------------------------------------------------------------------------

from rock.freeze.plan import planned_eval_steps as _freeze_planned_steps
from rock.freeze.plan import report_files as freeze_report_files
from rock.job_files import unique_paths

#: regime names of config freeze.regimes (wildcard values; rock.freeze.config validates them)
FREEZE_REGIMES = [r["name"] for r in config["freeze"]["regimes"]]
#: evaluated steps of every regime: 0 (shared stage-1 model), then the kept checkpoints
FREEZE_STEPS = _freeze_planned_steps(config)

wildcard_constraints:
    fz_regime="|".join(FREEZE_REGIMES),
    fz_step=r"[1-9]\d*",


def freeze_detection(name):
    """A file of the detection mode whose Rock set the freeze regimes use (detection.downstream_mode)."""
    return paths.detection_file(RUN_DIR, config["detection"]["downstream_mode"], name)


def freeze_checkpoint(regime, step):
    """Kept checkpoint of a regime's stage-2 run after optimizer step ``step``."""
    return paths.train_checkpoint(paths.freeze_run_dir(RUN_DIR, regime), step)


def freeze_checkpoint_output(regime, step):
    """freeze_train's output for a kept checkpoint: temp() (deleted once scored) unless
    freeze.keep_checkpoints."""
    out = directory(freeze_checkpoint(regime, step))
    return out if config["freeze"]["keep_checkpoints"] else temp(out)


def freeze_eval_settings():
    """What a freeze evaluation job reads: the evaluation keys, less those `rock evaluate` is given
    on the command line for the freeze (benchmarks, limit when freeze.eval_limit is set) or never
    uses there (the models list, suppression, the IFEval metric unless IFEval is a freeze benchmark),
    plus the freeze benchmarks, eval_limit, seed and models. So changing e.g.
    evaluation.ifeval_metric re-runs no freeze job."""
    fz = config["freeze"]
    unused = {"benchmarks", "models", "vllm_suppression"}
    if "ifeval" not in fz["benchmarks"]:
        unused.add("ifeval_metric")
    if fz["eval_limit"]:
        unused.add("limit")
    return job_settings(*(f"evaluation.{k}" for k in config["evaluation"] if k not in unused),
                        "freeze.benchmarks", "freeze.eval_limit", "seed", "models")


#: the evaluated steps after step 0 (step 0 is the stage-1 model, scored once for every regime)
FREEZE_KEPT_STEPS = [s for s in FREEZE_STEPS if s]


#: `rock evaluate` options shared by every freeze evaluation job: the Figure 5 benchmarks and limit
FREEZE_EVAL_OPTIONS = " ".join(
    [f"--benchmark {b}" for b in config["freeze"]["benchmarks"]]
    + ([f"--limit {config['freeze']['eval_limit']}"] if config["freeze"]["eval_limit"] else []))


def freeze_eval_outputs(model, name, steps):
    """``name`` (of paths.EVAL_FILES) of every evaluated step of ``model`` (a regime, a wildcard)."""
    return [str(paths.freeze_eval_path(RUN_DIR, model, s, name)) for s in steps]


def freeze_eval_args(wildcards):
    """`rock evaluate` arguments scoring every kept checkpoint of one regime in one process:
    --model/--model-name/--table/--summary once per step."""
    regime = wildcards.fz_regime
    return " ".join(
        f"--model {shlex.quote(str(freeze_checkpoint(regime, s)))} --model-name {regime}_step{s}"
        f" --table {shlex.quote(str(paths.freeze_eval_path(RUN_DIR, regime, s, 'per_problem.parquet')))}"
        f" --summary {shlex.quote(str(paths.freeze_eval_path(RUN_DIR, regime, s, 'summary.json')))}"
        for s in FREEZE_KEPT_STEPS)


def freeze_benchmark_input(wildcards):
    """The data stage's jsonl of each freeze benchmark with evaluation.dataset_source local."""
    if config["evaluation"]["dataset_source"] == "local":
        return [str(paths.benchmark(RUN_DIR, b)) for b in config["freeze"]["benchmarks"]]
    return []


#: freeze keys a regime's training depends on (benchmarks, eval_limit, tta_fraction only matter later)
_FREEZE_TRAIN_KEYS = ("window_radius", "window_anchor", "anchor_loss_threshold", "loss_normalization",
                      "eval_every", "max_steps", "control")


def freeze_train_settings(wildcards):
    """What one regime's run depends on (params: a change re-runs that regime only): its own
    entry of freeze.regimes, the training keys of freeze, and the stage2 and models sections."""
    regime = next(r for r in config["freeze"]["regimes"] if r["name"] == wildcards.fz_regime)
    return {"regime": regime, **job_settings(*(f"freeze.{k}" for k in _FREEZE_TRAIN_KEYS), "stage2", "models")}


def freeze_report_inputs():
    """`rock freeze report`'s named inputs (evals, logs, counts, control), as the stage maps them
    back to regimes and steps (rock.freeze.plan.report_files, rock.job_files.keyed_paths): step 0,
    the stage-1 model's table, once."""
    return {name: [str(p) for p in unique_paths(by_key)]
            for name, by_key in freeze_report_files(config, RUN_DIR).items()}


def freeze_targets():
    return [paths.freeze_result(RUN_DIR, name) for name in paths.FREEZE_RESULTS]


TARGETS.append(freeze_targets)


# ------------------------------------------------------------------------------------------------
# report [DESIGN.md stage 10]: claim check and report over every other stage's outputs. Keep this
# section LAST: report_inputs() collects the targets of every stage appended above.
# ------------------------------------------------------------------------------------------------

def report_inputs():
    """The final artifacts of every other stage: the report waits for all of them (and reads
    whatever exists; a stage that is absent from the DAG shows as "not run")."""
    return [str(t) for fn in TARGETS if fn is not report_targets for t in fn()]


def report_expected_tables():
    """The expected tables named by config report.expected (each directory's claims/golden csv)."""
    return [str(p) for d in config["report"]["expected"] for p in paths.expected_table(d)]


def report_targets():
    return [paths.report_file(RUN_DIR, name) for name in ("claims_check.csv", "report.html")]


TARGETS.append(report_targets)
