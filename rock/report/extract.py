"""The metric table: from a metric key of an expected table to the number a run produced.

Every row of ``results/expected/paper/claims.csv`` and ``results/expected/toy/golden.csv`` names a
``metric``. :data:`REGISTRY` maps each key to a :class:`Metric`: which artifact it is read from and
which reader of :mod:`rock.report.readers` (or :func:`derived`, a function of other metrics)
reads it. Generic keys ``json:<relpath>#<dotted.key>`` read any JSON under the run directory; the
golden table of the toy run uses them for the numbers of ``world/world.json`` and the stage
summaries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from rock import paths
from rock.report.readers import (ARTIFACTS, FIGURES, GEOMETRY_GROUPS, KNOCKOUT_BENCHMARKS,
                                 TABLE1_PREDICTORS, Context, Measured, Metric, NotRun, _p, config_value,
                                 constant, cross_task, csv_table, dig, find_artifact,
                                 json_path, json_value, jsonl_rows, norm, table1_cell, table2_cell)


# ============================================================================================
# the registry: metric key -> Metric
# ============================================================================================

REGISTRY: dict[str, Metric] = {}


def derived(fn: Callable[..., Any], *inputs: str, what: str = "") -> Callable[[Context], Measured]:
    """A function of other registered metrics (each input resolved through :data:`REGISTRY`)."""
    def read(ctx: Context) -> Measured:
        vals = [REGISTRY[k].read(ctx) for k in inputs]
        try:
            v = fn(*[float(m.value) for m in vals])
        except (ZeroDivisionError, ValueError, TypeError) as err:
            raise NotRun(f"cannot derive {what or 'value'}: {err}") from None
        return Measured(v, f"{what} from " + ", ".join(m.artifact for m in vals))
    return read


def _add(key: str, artifact: str, read, help: str = "", *, golden: bool = True,
         source: tuple[str, str] | None = None) -> None:
    if key in REGISTRY:
        raise ValueError(f"metric {key} registered twice")
    REGISTRY[key] = Metric(key, artifact, read, help, golden, source)


def _summary(stage: str, key: str, help: str, *alts: str) -> None:
    """``<stage>.<key>`` read from the stage's summary JSON (key, then alternative spellings)."""
    art = f"{stage}_summary"
    _add(f"{stage}.{key}", f"{ARTIFACTS[art][0]}#{key}", json_value(art, key, *alts), help,
         source=(art, key))


# ---- detection: Figure 2, Sec. 2.3-2.4, App. B and E (rock.detect; context-aware mode) ---------

def _stab(k_filter: Callable[[Any], Any], column: str, agg: str = "first"):
    def fn(df):
        rows = df[k_filter(df["k"])]
        if rows.empty:
            raise KeyError("no K of the grid in range")
        v = rows[column].astype(float)
        return {"first": v.iloc[0], "min": v.min(), "mean": v.mean()}[agg]
    return fn


def _cluster_count(category: str):
    def fn(df):
        sub = df[(df["group"] == "rock") & (df["category"] == category)]
        if sub.empty:
            raise KeyError(category)
        return int(sub["n"].iloc[0])
    return fn


def _cluster_share_not_other(df):
    sub = df[df["group"] == "rock"]
    total = sub["n"].sum()
    return float(sub.loc[sub["category"] != "other", "n"].sum() / total)


def _comparison(mode: str):
    def fn(df):
        sub = df[(df["mode"] == mode) & (df["reference"] == "authors_rocks")]
        return float(sub["jaccard"].iloc[0])
    return fn


_add("detect.median_rock_density", "detect/context/info.json#median_density",
     json_value("detect_context_info", "median_density"),
     "median per-sequence share of tokens whose type is a Rock Token (type level) [Fig. 2b]",
     source=("detect_context_info", "median_density"))
_add("detect.median_rock_occ_density", "detect/context/density.csv[median density_occ]",
     csv_table("detect_context_density", lambda d: d["density_occ"].astype(float).median(),
               "median density_occ"),
     "median per-sequence share of context-consistent rock occurrences (Eq. 11) [2.3]")
_add("detect.rock_token_share", "detect/context/density.csv[sum n_rock_tokens / sum length]",
     csv_table("detect_context_density",
               lambda d: d["n_rock_tokens"].sum() / d["length"].sum(), "rock tokens / all tokens"),
     "share of all output tokens whose type is a Rock Token [1, 4.3]")
_add("detect.n_rocks", "detect/context/info.json#n_rocks", json_value("detect_context_info", "n_rocks"),
     "size of R", source=("detect_context_info", "n_rocks"))
_add("detect.observed_vocab_size", "detect/context/info.json#n_types",
     json_value("detect_context_info", "n_types"), "distinct token types in the detection corpus [E]",
     source=("detect_context_info", "n_types"))
_add("detect.k_share_of_observed_vocab", "detect/context/info.json#n_rocks / #n_types",
     derived(lambda k, n: k / n, "detect.n_rocks", "detect.observed_vocab_size",
             what="|R| / observed types"),
     "|R| as a share of the observed vocabulary [E: 2.5%; Sec. 1: ~6%]")
for _kk in (50, 100):
    _add(f"detect.coverage_at_k{_kk}", f"detect/context/stability_summary.csv[k={_kk}, coverage]",
         csv_table("detect_context_stability_summary",
                   _stab(lambda k, kk=_kk: k == kk, "coverage"), f"k={_kk}, coverage"),
         f"share of the corpus KL carried by the top-{_kk} [2.4, E]")
for _kk in (50, 100, 200):
    _add(f"detect.jaccard_mean_at_k{_kk}", f"detect/context/stability_summary.csv[k={_kk}, jaccard_mean]",
         csv_table("detect_context_stability_summary",
                   _stab(lambda k, kk=_kk: k == kk, "jaccard_mean"), f"k={_kk}, jaccard_mean"),
         f"Jaccard of the top-{_kk}, averaged over sub-corpus sizes n [E]")
_add("detect.jaccard_mean_min_k_le_100", "detect/context/stability_summary.csv[k<=100, min jaccard_mean]",
     csv_table("detect_context_stability_summary", _stab(lambda k: k <= 100, "jaccard_mean", "min"),
               "k<=100, min jaccard_mean"), "min over K <= 100 of the n-averaged Jaccard [E]")
_add("detect.jaccard_mean_k_ge_150", "detect/context/stability_summary.csv[k>=150, mean jaccard_mean]",
     csv_table("detect_context_stability_summary", _stab(lambda k: k >= 150, "jaccard_mean", "mean"),
               "k>=150, mean jaccard_mean"), "mean over K >= 150 of the n-averaged Jaccard [E]")
_add("detect.n_digit_rocks", "detect/context/clusters_summary.csv[rock, digits, n]",
     csv_table("detect_context_clusters_summary", _cluster_count("digits"), "rock digits"),
     "Rock Tokens in the digits cluster [B]")
_add("detect.share_four_clusters", "detect/context/clusters_summary.csv[rock, not other]",
     csv_table("detect_context_clusters_summary", _cluster_share_not_other, "rock share not 'other'"),
     "share of R in the four clusters (LaTeX, markdown/whitespace, discourse, digits) [B]")
_add("detect.control_freq_match_p", "detect/context/control_matching.csv[ks_pvalue]",
     csv_table("detect_context_control_matching", lambda d: float(d["ks_pvalue"].iloc[0]), "ks_pvalue"),
     "KS p of rock vs control log-frequencies (matched controls) [B]")
for _mode in paths.DETECTION_MODES:
    _add(f"detect.jaccard_{_mode}_vs_authors", f"detect/comparison.csv[{_mode}, authors_rocks]",
         csv_table("detect_comparison", _comparison(_mode), f"{_mode} vs authors_rocks"),
         f"Jaccard of our {_mode} top-100 with the authors' ids [reference/README.md]")
_add("detect.official_rock_freq_sum", "detect/official/control_matching.csv[sum_freq_rocks]",
     csv_table("detect_official_control_matching", lambda d: float(d["sum_freq_rocks"].iloc[0]),
               "sum_freq_rocks"), "frequency sum of the official top-100 [reference/README.md]")
_add("detect.official_control_freq_sum", "detect/official/control_matching.csv[sum_freq_controls]",
     csv_table("detect_official_control_matching", lambda d: float(d["sum_freq_controls"].iloc[0]),
               "sum_freq_controls"), "frequency sum of official ranks 101-200 [reference/README.md]")

# ---- gradient geometry and persistence: Figure 3, Sec. 2.6 -------------------------------------
for _g in GEOMETRY_GROUPS:
    _summary("geometry", f"median_grad_norm.{_g}", f"median ||g_bar_t|| of the {_g} group [2.6a]")
    _summary("geometry", f"median_cos.{_g}", f"median cos(g_bar_t, G_balanced), {_g} [2.6b]")
    _summary("geometry", f"median_kl_early.{_g}", f"median per-token KL, early checkpoint, {_g} [2.6c]")
    _summary("geometry", f"median_kl_late.{_g}", f"median per-token KL, late checkpoint, {_g} [2.6c]")
    _summary("geometry", f"median_delta_kl.{_g}", f"median KL_late - KL_early, {_g} [2.6d]")
    _summary("geometry", f"wilcoxon_p.{_g}", f"Wilcoxon signed-rank p, early vs late KL, {_g} [2.6c]")
    _summary("geometry", f"contrib_sum.{_g}", f"sum of contrib(t) (Eq. 16) over the {_g} group [2.6]")
_summary("geometry", "max_cos.rock", "largest cos(g_bar_t, G_balanced) among rocks [2.6b tail]")
_summary("geometry", "mannwhitney_p.grad_norm_rock_vs_highkl",
         "Mann-Whitney p of grad norms, rock vs rare high-KL [2.6a]")
_add("geometry.grad_norm_ratio_rock_to_highkl", "geometry/summary.json#median_grad_norm.*",
     derived(lambda a, b: a / b, "geometry.median_grad_norm.rock", "geometry.median_grad_norm.highkl",
             what="rock / high-KL median grad norm"), "ratio of median gradient norms [2.6a, Fig. 3a]")
_add("geometry.kl_reduction.highkl", "geometry/summary.json#median_kl_{early,late}.highkl",
     derived(lambda e, l: 1.0 - l / e, "geometry.median_kl_early.highkl",
             "geometry.median_kl_late.highkl", what="1 - late/early median KL"),
     "relative reduction of the high-KL median KL [2.6c: ~58%]")
_add("geometry.kl_reduction.rock", "geometry/summary.json#median_kl_{early,late}.rock",
     derived(lambda e, l: 1.0 - l / e, "geometry.median_kl_early.rock",
             "geometry.median_kl_late.rock", what="1 - late/early median KL"),
     "relative reduction of the rock median KL [2.6c: 0.21 -> 0.19, ~10%]")
_add("geometry.cos_order_rock_highkl_random", "geometry/summary.json#median_cos.*",
     derived(lambda r, h, x: float(r > h > x), "geometry.median_cos.rock",
             "geometry.median_cos.highkl", "geometry.median_cos.random",
             what="1 if rock > high-KL > random"), "ordering of median cosines [2.6b]")
_add("geometry.contrib_ratio_rock_to_highkl", "geometry/summary.json#contrib_sum.*",
     derived(lambda r, h: r / abs(h), "geometry.contrib_sum.rock", "geometry.contrib_sum.highkl",
             what="rock / |high-KL| total contrib"),
     "rock dominance through frequency [2.6a, Eq. 16]: > 1 iff the rocks' total contrib is positive "
     "and larger than the high-KL group's in magnitude (a plain ratio would read a high-KL group "
     "that pulls against G_balanced, contrib < 0, as rocks not dominating)")

# ---- knockout: Table 1, Table 2, App. D.2 ------------------------------------------------------
for _p in TABLE1_PREDICTORS:
    for _b in KNOCKOUT_BENCHMARKS:
        for _s in ("r", "p"):
            _add(f"knockout.table1.{_p}.{_b}.{_s}", f"knockout/table1.csv[{_p}, {_b}_{_s}]",
                 table1_cell(_p, _b, _s), f"Table 1: Pearson {_s} of Delta vs {_p} on {_b} [D.1]")


def _table1_extreme(kind: str, benches: Sequence[str] = KNOCKOUT_BENCHMARKS
                    ) -> Callable[[Context], Measured]:
    def read(ctx: Context) -> Measured:
        stat = "r" if kind == "max_abs_r" else "p"
        vals, where = [], ""
        for p in TABLE1_PREDICTORS:
            for b in benches:
                m = REGISTRY[f"knockout.table1.{p}.{b}.{stat}"].read(ctx)
                vals.append(float(m.value))
                where = m.artifact.split("[")[0]
        v = max(abs(x) for x in vals) if kind == "max_abs_r" else min(vals)
        return Measured(v, f"{where} ({kind} over {len(vals)} cells)")
    return read


_add("knockout.table1.max_abs_r", "knockout/table1.csv (all 18 cells)", _table1_extreme("max_abs_r"),
     "largest |r| over the 18 (predictor, benchmark) pairs [D.1]")
_add("knockout.table1.min_p", "knockout/table1.csv (all 18 cells)", _table1_extreme("min_p"),
     "smallest p over the 18 pairs [D.1]")
for _b in KNOCKOUT_BENCHMARKS:
    _add(f"knockout.table1.max_abs_r.{_b}", f"knockout/table1.csv ({_b}, 9 cells)",
         _table1_extreme("max_abs_r", (_b,)), f"largest |r| over the nine predictors on {_b} [3.3, D.5]")
for _b in KNOCKOUT_BENCHMARKS:
    for _c in ("pillar", "neutral", "stumbling", "baseline_acc", "n_candidates"):
        _add(f"knockout.census.{_b}.{_c}", f"knockout/table2.csv[{_b}, {_c}]", table2_cell(_b, _c),
             f"Table 2: {_c} on {_b} [D.4]")
    _add(f"knockout.pillar_share.{_b}", f"knockout/table2.csv[{_b}, pillar / n_candidates]",
         derived(lambda k, n: k / n, f"knockout.census.{_b}.pillar", f"knockout.census.{_b}.n_candidates",
                 what="pillar share"), f"share of Strong Pillars on {_b} [3.3]")
    _add(f"knockout.min_p.{_b}", f"knockout/summary.json#per_task.{_b}.min_p",
         json_value("knockout_summary", f"per_task.{_b}.min_p", f"multiple_testing.per_task.{_b}.min_p"),
         f"smallest per-candidate bootstrap p on {_b} [D.2]")
    _add(f"knockout.bonferroni_threshold.{_b}",
         f"knockout/summary.json#per_task.{_b}.bonferroni_threshold",
         json_value("knockout_summary", f"per_task.{_b}.bonferroni_threshold",
                    f"multiple_testing.per_task.{_b}.bonferroni_threshold"),
         f"alpha / m on {_b} [D.2]")
    _add(f"knockout.bonferroni_rejections.{_b}",
         f"knockout/summary.json#per_task.{_b}.bonferroni_rejections",
         json_value("knockout_summary", f"per_task.{_b}.bonferroni_rejections",
                    f"multiple_testing.per_task.{_b}.bonferroni_rejections"),
         f"Bonferroni rejections on {_b} [D.2]")
    for _q in ("0.05", "0.1", "0.2"):
        _add(f"knockout.bh_rejections.{_b}.q{_q}", f"knockout/summary.json#per_task.{_b}.bh_rejections.{_q}",
             json_value("knockout_summary", f"per_task.{_b}.bh_rejections.{_q}",
                        f"per_task.{_b}.bh_rejections.{float(_q):.2f}",
                        f"multiple_testing.per_task.{_b}.bh_rejections.{_q}"),
             f"Benjamini-Hochberg rejections at q={_q} on {_b} [D.2]")
for _lab in ("N||N", "P||N", "N||P", "P||P"):
    _add(f"knockout.cross_task.{_lab}", f"knockout/cross_task.csv[{_lab}]", cross_task(_lab),
         f"cross-task agreement {_lab} (MATH-500 || IFEval) [Table 2]")
# sign tests: combined / per task / stable core (App. D.2); rock.knockout.stats.multiple_testing
_SIGN_KEYS = {
    "combined": ("combined.sign_negative", "combined.sign_positive", "combined.sign_p"),
    "math500": ("per_task.math500.sign_negative", "per_task.math500.sign_positive",
                "per_task.math500.sign_p"),
    "ifeval": ("per_task.ifeval.sign_negative", "per_task.ifeval.sign_positive",
               "per_task.ifeval.sign_p"),
    "core": ("combined.core_negative", "combined.core_positive", "combined.core_sign_p"),
}
for _t, (_neg, _pos, _pv) in _SIGN_KEYS.items():
    for _name, _key in (("n_neg", _neg), ("n_pos", _pos), ("p", _pv)):
        _add(f"knockout.sign_test.{_t}.{_name}", f"knockout/summary.json#{_key}",
             json_value("knockout_summary", _key, f"multiple_testing.{_key}"),
             f"sign test ({_t}): {_name} [D.2]")
_add("knockout.n_pillars_in_core", "knockout/summary.json#combined.core_negative",
     json_value("knockout_summary", "combined.core_negative", "multiple_testing.combined.core_negative"),
     "Strong Pillars within the K=100 core [D.2]")
for _s in ("median", "p90", "max", "n_singletons"):  # rock.knockout.analysis: window_sets
    _add(f"knockout.window_set_size.{_s}", f"knockout/summary.json#window_sets.{_s}",
         json_value("knockout_summary", f"window_sets.{_s}", f"multiple_testing.window_sets.{_s}"),
         f"window-level knockout sets |S_W(v)| over the pool: {_s} [Eq. 21]")

# ---- freeze training: Figure 5, Sec. 4.3 (rock.freeze.report regime table) ---------------------

def _regime(selection: str, column: str):
    """The row of the regime table with this selection (lambda 0 for rock/random, the paper's)."""
    def fn(df):
        sub = df[df["selection"] == selection]
        if selection != "none":
            sub = sub[sub["lambda"].astype(float) == 0.0]
        return float(sub[column].iloc[0])
    return fn


for _sel, _name in (("none", "baseline"), ("rock", "rock_freeze"), ("random", "random_freeze")):
    _add(f"freeze.final_acc.{_name}", f"freeze/results/regimes.csv[{_sel}, final_average]",
         csv_table("freeze_regimes", _regime(_sel, "final_average"), f"{_sel}, final_average"),
         f"final AIME/HMMT average Pass@1, {_name} [4.3, Fig. 5]")
_add("freeze.speedup_throughput", "freeze/results/regimes.csv[rock, throughput_speedup]",
     csv_table("freeze_regimes", _regime("rock", "throughput_speedup"), "rock, throughput_speedup"),
     "baseline / Rock-Freeze seconds per step [4.3, take-away, 7]", golden=False)  # wall-clock: varies run to run
_add("freeze.speedup_tta", "freeze/results/regimes.csv[rock, tta_speedup]",
     csv_table("freeze_regimes", _regime("rock", "tta_speedup"), "rock, tta_speedup"),
     "baseline / Rock-Freeze time to reach the target accuracy [4.3, take-away, 7]", golden=False)
_add("freeze.frozen_token_share", "freeze/results/regimes.csv[rock, frozen_fraction]",
     csv_table("freeze_regimes", _regime("rock", "frozen_fraction"), "rock, frozen_fraction"),
     "share of response tokens frozen by Rock-Freeze [4.3]")
for _q in ("window_length", "token_log2_freq"):
    _add(f"freeze.control_match_ks_d.{_q}", f"freeze/results/control_match.csv[{_q}, ks_D]",
         csv_table("freeze_control_match",
                   lambda d, q=_q: float(d.loc[d["quantity"] == q, "ks_D"].iloc[0]), f"{_q}, ks_D"),
         f"KS distance of W_R vs the random windows W_S in {_q} (matched control) [4.2]")
_add("freeze.acc_delta.rock_freeze_minus_baseline", "freeze/results/regimes.csv[final_average]",
     derived(lambda r, b: r - b, "freeze.final_acc.rock_freeze", "freeze.final_acc.baseline",
             what="Rock-Freeze - baseline"), "accuracy cost of Rock-Freeze [4.3, 7]")
_add("freeze.acc_delta.random_minus_rock_freeze", "freeze/results/regimes.csv[final_average]",
     derived(lambda x, r: x - r, "freeze.final_acc.random_freeze", "freeze.final_acc.rock_freeze",
             what="random - Rock-Freeze"), "random freeze vs Rock-Freeze [4.3]")

# ---- data sizes (Sec. 5.1-5.2, App. C): rows of the materialised jsonl files ----------------------
for _b in paths.BENCHMARKS:
    _add(f"data.n_problems.{_b}", f"data/{_b}.jsonl (rows)",
         jsonl_rows(functools.partial(lambda run_dir, b: paths.benchmark(run_dir, b), b=_b)),
         f"problems in the {_b} benchmark [5.2]")
for _st in (1, 2):
    _add(f"data.n_prompts.stage{_st}", f"data/prompts_stage{_st}.jsonl (rows)",
         jsonl_rows(functools.partial(lambda run_dir, st: paths.prompts(run_dir, st), st=_st)),
         f"prompts of the stage-{_st} slice [5.1, C]")

# ---- configuration claims (App. C, Sec. 5): checked against the run's config -------------------
for _k in ("models.teacher", "models.student", "models.enable_thinking",
           "teacher_samples.temperature", "teacher_samples.top_p", "teacher_samples.max_new_tokens",
           "teacher_samples.tensor_parallel_size",
           "stage1.loss", "stage1.kd_ratio", "stage1.kd_temperature", "stage1.lr",
           "stage1.warmup_ratio", "stage1.global_batch", "stage1.micro_batch", "stage1.epochs",
           "stage1.max_seq_len", "stage1.gradient_checkpointing",
           "stage2.loss", "stage2.kd_ratio", "stage2.kd_temperature", "stage2.lr",
           "stage2.warmup_ratio", "stage2.max_grad_norm", "stage2.global_batch",
           "stage2.micro_batch", "stage2.epochs", "stage2.n_rollouts", "stage2.temperature",
           "stage2.top_p", "stage2.max_new_tokens", "stage2.max_prompt_len", "stage2.n_checkpoints",
           "stage2.rollout_tensor_parallel_size", "stage2.teacher_tensor_parallel_size",
           "data.stage1_slice", "data.stage2_slice", "evaluation.n_runs",
           "knockout.epsilon", "knockout.alpha",
           "knockout.n_resamples", "knockout.fdr_q", "knockout.temperature",
           "detection.top_k", "detection.k_screen", "detection.stability.sizes",
           "evaluation.temperature", "evaluation.top_p", "freeze.eval_every"):
    _add(f"config.{_k}", f"config:{_k}", config_value(_k), f"config value {_k} [App. C / Sec. 5]",
         golden=False)

#: panel order of Figure 2 this reproduction follows (the caption's; see claims row F2-panels)
FIGURE2_PANELS = ("(a) mean KL vs frequency; (b) per-sequence rock density; "
                  "(c) coverage and stability vs K; (d) Jaccard vs K per sub-corpus size n")
#: the Strong Pillar rule this reproduction implements (rock.knockout.stats.categorize)
PILLAR_RULE = ("App. D.3 / Eq. 22: token- or window-level Delta <= -epsilon AND paired bootstrap "
               "p < alpha")
_add("report.pillar_rule", "rock/report/extract.py:PILLAR_RULE",
     constant(PILLAR_RULE, "rock.knockout.stats.categorize (App. D.3 rule)"),
     "Strong Pillar rule implemented", golden=False)
_add("report.figure2_panels", "rock/report/extract.py:FIGURE2_PANELS",
     constant(FIGURE2_PANELS, "rock.report.extract.FIGURE2_PANELS (caption order)"),
     "panel order of Figure 2 in this reproduction", golden=False)


# ============================================================================================
# lookup
# ============================================================================================

def resolve(metric: str) -> Metric:
    """The :class:`Metric` for a key: registered, or generic ``json:<relpath>#<dotted>``.

    Raises KeyError for an unknown key (the expected-table loader turns it into a DataError that
    names the file, line and field).
    """
    if metric in REGISTRY:
        return REGISTRY[metric]
    if metric.startswith("json:") and "#" in metric:
        spec = metric[len("json:"):]
        return Metric(metric, spec, json_path(spec), "generic JSON field")
    raise KeyError(metric)


@functools.lru_cache(maxsize=None)
def summary_keys() -> dict[str, list[str]]:
    """The summary fields each stage is expected to write (``rock report contract`` prints it)."""
    out: dict[str, list[str]] = {}
    for m in REGISTRY.values():
        if m.source:
            out.setdefault(ARTIFACTS[m.source[0]][0], []).append(m.source[1])
    return out


__all__ = ["ARTIFACTS", "FIGURES", "REGISTRY", "Context", "Measured", "Metric", "NotRun",
           "find_artifact", "resolve", "norm", "dig"]
