"""Every artifact path, defined once (as showyourwork's ``paths.py``).

Snakemake rules (``workflow/rules/common.smk``) and the ``rock`` stages both build paths from here,
so a file name changes in one place. ``run_dir`` is the config key ``run_dir`` (``results/paper``
for the paper scale, ``results/toy`` for the toy run).

Layout under ``run_dir``::

    world/                       toy world only (rock toy build)
      tokenizer/                 HF tokenizer (byte-level BPE, ChatML template)
      teacher/  student/         HF model dirs (Qwen3ForCausalLM + tokenizer files)
      raw/<name>.jsonl           generated datasets in the real formats (RAW_DATASETS)
      world.json                 seed, sizes, timings, teacher/student toy MATH-500 accuracy
    data/
      prompts_stage1.jsonl       {"id", "prompt"}: pool slice for stage 1 (paper 0-20k)
      prompts_stage2.jsonl       {"id", "prompt"}: pool slice for stage 2 (paper 20k-30k)
      <benchmark>.jsonl          BENCHMARKS, normalised rows (see rock.data)
    distill/
      teacher_samples.jsonl      {"id", "prompt", "response", ...}
      teacher_samples.summary.json
      stage1/model/              final stage-1 student (HF format)
      stage1/log.csv, summary.json
      stage2/checkpoints/step_<n>/   kept stage-2 checkpoints (HF format)
      stage2/model/              final stage-2 student
      stage2/log.csv             per-step log; summary.json
      stage{1,2}/resume/         resume states while a run is in progress
      stage2/token_losses/step_<n>.parquet   optional per-token losses
    eval/<model>/<benchmark>/    per_problem.parquet, summary.json
"""

from __future__ import annotations

from pathlib import Path

#: benchmark names used in configs, file names and lm-eval task names (``rock_<name>``)
BENCHMARKS = ("math500", "ifeval", "aime24", "aime25", "hmmt25")
#: raw toy datasets: the prompt pool plus the benchmarks
RAW_DATASETS = ("openthoughts",) + BENCHMARKS


def world_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "world"


def world_model(run_dir: str | Path, role: str) -> Path:
    """``role`` is ``teacher`` or ``student``."""
    return world_dir(run_dir) / role


def world_raw(run_dir: str | Path, name: str) -> Path:
    return world_dir(run_dir) / "raw" / f"{name}.jsonl"


def world_tokenizer(run_dir: str | Path) -> Path:
    return world_dir(run_dir) / "tokenizer"


def world_info(run_dir: str | Path) -> Path:
    """``world.json``: seed, sizes, parameter counts, timings, toy MATH-500 accuracies."""
    return world_dir(run_dir) / "world.json"


def model_download(run_dir: str | Path, role: str) -> Path:
    """Record of a hub model downloaded into HF_HOME on the submit host (rock download): GPU jobs
    that load the model wait for it and then read the cache offline."""
    return Path(run_dir) / "models" / f"{role}.json"


def prompts(run_dir: str | Path, stage: int) -> Path:
    return Path(run_dir) / "data" / f"prompts_stage{stage}.jsonl"


def benchmark(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "data" / f"{name}.jsonl"


def teacher_samples(run_dir: str | Path) -> Path:
    return Path(run_dir) / "distill" / "teacher_samples.jsonl"


def stage_model(run_dir: str | Path, stage: int) -> Path:
    return Path(run_dir) / "distill" / f"stage{stage}" / "model"


# --- distillation runs (rock.distill) ------------------------------------------------------------
# A training run writes into one directory ``out_dir`` (stage 1: ``stage_dir(run_dir, 1)``, stage 2:
# ``stage_dir(run_dir, 2)``; the freeze regimes reuse the layout in their own directories), so
# ``train_model(stage_dir(r, s)) == stage_model(r, s)``; stage 2's kept checkpoint after step n is
# ``train_checkpoint(stage_dir(r, 2), n)``.
def teacher_samples_summary(run_dir: str | Path) -> Path:
    """Counts of the teacher-sampling run (skipped prompts, truncated responses, timing)."""
    return Path(run_dir) / "distill" / "teacher_samples.summary.json"


def stage_dir(run_dir: str | Path, stage: int) -> Path:
    return Path(run_dir) / "distill" / f"stage{stage}"


def train_model(out_dir: str | Path) -> Path:
    """Final student of a training run (HF format)."""
    return Path(out_dir) / "model"


def train_checkpoints_dir(out_dir: str | Path) -> Path:
    """All kept checkpoints of a run (one directory output for the workflow)."""
    return Path(out_dir) / "checkpoints"


def train_checkpoint(out_dir: str | Path, step: int) -> Path:
    """Kept checkpoint after optimizer step ``step`` (HF format)."""
    return train_checkpoints_dir(out_dir) / f"step_{step}"


def train_pending_checkpoint(out_dir: str | Path, step: int) -> Path:
    """Where a kept checkpoint waits while the run is in progress (moved to train_checkpoint at the
    end, so that a failed job's cleanup never deletes checkpoints a resumed run cannot redo)."""
    return train_state(out_dir) / "kept" / f"step_{step}"


def train_log(out_dir: str | Path) -> Path:
    """Per-step log (csv), written when the run completes (in-progress copy under train_state)."""
    return Path(out_dir) / "log.csv"


def train_summary(out_dir: str | Path) -> Path:
    """Run summary (json): config, steps, data counts, kept checkpoints, timing."""
    return Path(out_dir) / "summary.json"


def train_state(out_dir: str | Path) -> Path:
    """Resume states (``step_<n>/`` + ``LATEST``) and the in-progress log; removed at the end."""
    return Path(out_dir) / "resume"


def train_token_losses(out_dir: str | Path, step: int) -> Path:
    """Per-token losses of one optimizer step (parquet; optional)."""
    return Path(out_dir) / "token_losses" / f"step_{step:06d}.parquet"


def eval_dir(run_dir: str | Path, model: str, bench: str) -> Path:
    return Path(run_dir) / "eval" / model / bench


#: files of one ``rock evaluate`` job (rock.evaluate.runner): the tidy per-problem table and the
#: summary (Pass@1 per run, mean, std, provenance)
EVAL_FILES = ("per_problem.parquet", "summary.json")
#: models the evaluate stage knows: the two roles, and the distilled students of stage 1 and 2
EVAL_MODELS = ("teacher", "student", "stage1", "stage2")


def eval_file(run_dir: str | Path, model: str, bench: str, name: str) -> Path:
    """One of :data:`EVAL_FILES` for ``model`` (:data:`EVAL_MODELS`) on benchmark ``bench``."""
    return eval_dir(run_dir, model, bench) / name



# --- token statistics [2.1, 2.3] (rock.stats) ---------------------------------------------------
#: checkpoint names of the token-statistics tables (config ``stats.checkpoints`` maps each to a model)
STATS_CHECKPOINTS = ("pre", "post", "early", "late")


def stats_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "stats"


def trajectories(run_dir: str | Path) -> Path:
    """Detection-set trajectories decoded by the student (jsonl: trajectory, problem_id, prompt,
    response_ids, teacher_system, ...)."""
    return stats_dir(run_dir) / "trajectories.jsonl"


def token_stats(run_dir: str | Path, checkpoint: str) -> Path:
    """One row per token occurrence: trajectory, position, token_id, log_ratio, reverse_kl,
    student_entropy, teacher_entropy, ..., checkpoint (parquet)."""
    return stats_dir(run_dir) / f"tokens_{checkpoint}.parquet"


def hidden_states(run_dir: str | Path, checkpoint: str) -> Path:
    """Student hidden states aligned with the rows of :func:`token_stats` (npy, float16 [n, d])."""
    return stats_dir(run_dir) / f"hidden_{checkpoint}.npy"


# --- detection [2.2-2.5, B, E] (rock.detect) ------------------------------------------------------
#: detection modes: the paper's context-aware definition (Sec. 2.2) and the authors' selection
DETECTION_MODES = ("context", "official")
#: files of ``rock detect select`` per mode
DETECTION_SELECT = ("ranking.parquet", "ranking.csv", "windows.parquet", "density.csv", "rocks.json",
                    "info.json")
#: files of ``rock detect stability`` per mode (Sec. 2.4, App. E)
DETECTION_STABILITY = ("stability.csv", "stability_summary.csv")
#: files of ``rock detect clusters`` per mode (Sec. 2.5, App. B)
DETECTION_CLUSTERS = ("clusters.csv", "clusters_summary.csv", "control_matching.csv")


def detection_dir(run_dir: str | Path, mode: str) -> Path:
    return Path(run_dir) / "detect" / mode


def detection_file(run_dir: str | Path, mode: str, name: str) -> Path:
    """One file of a detection mode, e.g. ``ranking.parquet`` (columns in rock.detect.core)."""
    return detection_dir(run_dir, mode) / name


def figure2(run_dir: str | Path, mode: str, ext: str) -> Path:
    """Figure 2 (four panels) of one detection mode; ``ext`` is ``png`` or ``pdf``."""
    return detection_dir(run_dir, mode) / f"figure2.{ext}"


def detection_comparison(run_dir: str | Path) -> Path:
    """Jaccard of our top-100 sets with the authors' released ids (csv)."""
    return Path(run_dir) / "detect" / "comparison.csv"


# --- gradient geometry [2.6] (rock.geometry) ------------------------------------------------------
#: ``rock geometry gradients`` writes per_type.csv and gradients.json; ``analyze`` the rest + Figure 3
GEOMETRY_FILES = ("per_type.csv", "gradients.json", "tests.csv", "persistence.csv", "summary.json")


def geometry_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "geometry"


def geometry_file(run_dir: str | Path, name: str) -> Path:
    return geometry_dir(run_dir) / name


def figure3(run_dir: str | Path, ext: str) -> Path:
    return geometry_dir(run_dir) / f"figure3.{ext}"

# --- knockout [3, D] (rock.knockout) ----------------------------------------------------------
#: result files of ``rock knockout analyze`` under knockout/results/ (Figures 4, 6; Tables 1, 2; D.2)
KNOCKOUT_RESULTS = (
    "deltas.csv", "candidates.csv", "table1.csv", "table1.md", "table2.csv", "table2_agreement.csv",
    "table2.md", "multiple_testing.json", "multiple_testing.md",
    "figure4.png", "figure4.pdf", "figure6.png", "figure6.pdf",
)


def knockout_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "knockout"


def knockout_pool(run_dir: str | Path) -> Path:
    """Screening pool: one row per candidate with its window set (parquet)."""
    return knockout_dir(run_dir) / "pool.parquet"


def knockout_plan(run_dir: str | Path) -> Path:
    """Suppression sets, their shards, the candidate -> set mapping, seeds (json)."""
    return knockout_dir(run_dir) / "plan.json"


def knockout_shard(run_dir: str | Path, shard: int | str) -> Path:
    """Per-problem table of one shard (parquet)."""
    return knockout_dir(run_dir) / "shards" / f"shard_{shard}.parquet"


def knockout_per_problem(run_dir: str | Path) -> Path:
    """All shards gathered: set_id, task, problem_id, run, seed, correct, shard (parquet)."""
    return knockout_dir(run_dir) / "per_problem.parquet"


def knockout_results_dir(run_dir: str | Path) -> Path:
    """Where ``rock knockout analyze`` writes :data:`KNOCKOUT_RESULTS`."""
    return knockout_dir(run_dir) / "results"


def knockout_result(run_dir: str | Path, name: str) -> Path:
    """One of :data:`KNOCKOUT_RESULTS`."""
    return knockout_results_dir(run_dir) / name


# --- freeze training [4] (rock.freeze) ------------------------------------------------------------
#: result files of ``rock freeze report`` under freeze/results/ (Figure 5, regime table, wall-clock,
#: W_R vs W_S two-sample tests)
FREEZE_RESULTS = ("figure5.png", "figure5.pdf", "curves.csv", "regimes.csv", "regimes.md",
                  "control_match.csv", "speedup.json")
#: the model name of step 0 (the stage-1 checkpoint every regime starts from; evaluated once)
FREEZE_STEP0 = "stage1"


def freeze_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "freeze"


def freeze_run_dir(run_dir: str | Path, regime: str) -> Path:
    """``out_dir`` of one regime's stage-2 run (layout of rock.distill: model/, checkpoints/step_<n>/,
    log.csv, summary.json) plus ``freeze_log.csv`` and ``control_match.json`` (random regime)."""
    return freeze_dir(run_dir) / "regimes" / regime


def freeze_log(run_dir: str | Path, regime: str) -> Path:
    """Per-step freeze counts of a regime, summed over ranks (csv; rock.freeze.train)."""
    return freeze_run_dir(run_dir, regime) / "freeze_log.csv"


def freeze_control_match(run_dir: str | Path, regime: str) -> Path:
    """W_R and W_S histograms of a random-window regime (json; rock.freeze.control); empty
    histograms for the other regimes."""
    return freeze_run_dir(run_dir, regime) / "control_match.json"


def freeze_eval_path(run_dir: str | Path, model: str, step: int | str, name: str) -> Path:
    """``freeze/eval/<model>/step_<step>/<name>``; ``model`` is a regime or :data:`FREEZE_STEP0`
    (also usable with Snakemake wildcards as ``model`` and ``step``)."""
    return freeze_dir(run_dir) / "eval" / model / f"step_{step}" / name


def freeze_eval(run_dir: str | Path, regime: str, step: int, name: str) -> Path:
    """``per_problem.parquet`` or ``summary.json`` of one evaluated checkpoint of ``regime``; step 0
    is the stage-1 model, evaluated once and shared by every regime."""
    model = FREEZE_STEP0 if int(step) == 0 else regime
    return freeze_eval_path(run_dir, model, int(step), name)


def freeze_result(run_dir: str | Path, name: str) -> Path:
    """One of :data:`FREEZE_RESULTS`."""
    return freeze_dir(run_dir) / "results" / name


# --- workflow logs (workflow/rules/*.smk) ---------------------------------------------------------
def _job_file(base: Path, rule: str, name: str | None, suffix: str) -> Path:
    """``<base>/<rule><suffix>`` for a rule with one job, ``<base>/<rule>/<name><suffix>`` otherwise."""
    return base / f"{rule}{suffix}" if name is None else base / rule / f"{name}{suffix}"


def log_file(run_dir: str | Path, rule: str, name: str | None = None) -> Path:
    """Log of one Snakemake job: ``{run_dir}/logs/<rule>.log`` or ``.../<rule>/<name>.log``."""
    return _job_file(Path(run_dir) / "logs", rule, name, ".log")


def job_timing(run_dir: str | Path, rule: str, name: str | None = None) -> Path:
    """Snakemake's ``benchmark:`` file of one job (tsv: wall seconds ``s``, ``max_rss``, ``cpu_time``,
    ...): ``{benchmarks_dir}/<rule>.tsv`` or ``.../<rule>/<name>.tsv`` (rock.report.provenance)."""
    return _job_file(benchmarks_dir(run_dir), rule, name, ".tsv")


# --- report [DESIGN.md stage 10] (rock.report) ----------------------------------------------------
#: files of ``rock report check`` / ``rock report render`` under report/
REPORT_FILES = ("claims_check.csv", "claims_check.md", "ground_truth.csv", "report.html", "report.md",
                "provenance.json", "report.png")


def report_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "report"


def report_file(run_dir: str | Path, name: str) -> Path:
    """One of :data:`REPORT_FILES` (the screenshot ``report.png`` exists only where chromium is)."""
    return report_dir(run_dir) / name


def benchmarks_dir(run_dir: str | Path) -> Path:
    """Snakemake ``benchmark:`` files of the rules (``<rule>.tsv``): wall-clock per stage."""
    return Path(run_dir) / "benchmarks"


def expected_table(expected_dir: str | Path) -> list[Path]:
    """The expected tables of one directory of ``results/expected/`` that exist."""
    d = Path(expected_dir)
    return [d / n for n in ("claims.csv", "golden.csv") if (d / n).is_file()]
