"""Gradient geometry and persistence of Rock Tokens [Sec. 2.6, Figure 3].

    rock geometry gradients --config config.yaml     # per-type mean gradients, G_balanced (models)
    rock geometry analyze   --config config.yaml     # tests, persistence, Figure 3 (tables only)

Per-position gradient. The reverse KL at one position, ``KL(p_s || p_T)`` with ``p_s = softmax(z)``,
has the logit-space gradient (the authors' form, reference/README.md)::

    g = p_s * (A - E_{p_s}[A]),   A = log p_s - log p_T + 1

The ``+ 1`` cancels (``E_{p_s}[A + c] = E_{p_s}[A] + c``), so ``g = p_s * (log p_s - log p_T - KL)``;
a test checks it against autograd.

Per-type means and the balanced direction. For a token type ``t`` with ``n_t`` occurrences,
``g_bar_t = (1 / n_t) sum_i g_i`` and ``G_balanced = sum_t g_bar_t`` over every observed type
(Eq. 16), i.e. ``G_balanced = sum_i g_i / n_{type(i)}``. The counts ``n_t`` come from the token table
(a counting pass), so one streaming pass over the positions accumulates ``G_balanced`` (one
V-vector) and the sums of the group members' gradients (one V-vector per member type): memory
``O(V x (members + 1))``, independent of the number of positions (:class:`GradientAccumulator`).
Then per member type: ``||g_bar_t||``, ``cos(g_bar_t, G_balanced)`` and
``contrib(t) = n_t ||g_bar_t|| cos(g_bar_t, G_balanced)`` (Eq. 16).

Groups (config ``geometry.groups``; the authors' definitions, reference/README.md): ``rock`` = the
detection's Rock set; ``high_kl`` = the top ``n`` types by mean KL with freq >= ``min_freq``, rocks
excluded; ``random`` = ``n`` types drawn with ``seed`` from the observed types with freq >=
``min_freq`` outside the other two groups (ASSUMED pool: the authors' pool is not stated).
Mann-Whitney U (two-sided) compares the groups' norms and cosines.

Persistence: per-type mean KL at an early and a late stage-2 checkpoint (both score the same
trajectories), ``Delta KL = KL_late - KL_early`` and a Wilcoxon signed-rank test per group. The
persistence groups are chosen on data the comparison does not reuse (``persistence_selection``:
the pre-OPD model, or a held-out half of the trajectories), and the late checkpoint must hold other
weights than the selection models (:mod:`rock.persistence`; issue 13).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rock import paths
from rock.atomic import atomic_path, save_figure, write_json
from rock.errors import ConfigError, DataError
from rock.persistence import (SELECTION_CHECKPOINTS, SELECTIONS, check_late_is_other_weights, describe,
                              restrict, split_trajectories)

log = logging.getLogger(__name__)

GROUPS = ("rock", "high_kl", "random")
GROUP_COLORS = {"rock": "tab:red", "high_kl": "tab:blue", "random": "0.5"}
#: group keys in summary.json (the names rock.report.extract reads)
SUMMARY_KEY = {"rock": "rock", "high_kl": "highkl", "random": "random"}


# --------------------------------------------------------------------------------------------
# gradient of the reverse KL in logit space
# --------------------------------------------------------------------------------------------

def reverse_kl_logit_grad(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``d KL(p_s || p_T) / d z_s`` per row, ``[n, V]`` fp32 (module docstring)."""
    ls = torch.log_softmax(student_logits.float(), dim=-1)
    lt = torch.log_softmax(teacher_logits.float(), dim=-1)
    ps = ls.exp()
    a = ls - lt + 1.0                                   # the authors' A; the +1 cancels below
    return ps * (a - (ps * a).sum(-1, keepdim=True))


class GradientAccumulator:
    """Streaming ``G_balanced`` and per-member-type gradient sums (module docstring).

    Args:
        counts: ``{token_id: n_t}`` for every observed type (the counting pass).
        members: token ids whose mean gradient is kept (the union of the groups).
        vocab: logit width V.
    """

    def __init__(self, counts: dict[int, int], members, vocab: int, *, device="cpu",
                 dtype: torch.dtype = torch.float64):
        self.vocab = int(vocab)
        size = max(self.vocab, max(counts) + 1 if counts else 0)
        self.inv_count = torch.zeros(size, dtype=dtype, device=device)
        ids = torch.tensor(list(counts), dtype=torch.long, device=device)
        self.inv_count[ids] = 1.0 / torch.tensor(list(counts.values()), dtype=dtype, device=device)
        self.members = [int(m) for m in members]
        self.row_of = torch.full((size,), -1, dtype=torch.long, device=device)
        self.row_of[torch.tensor(self.members, dtype=torch.long, device=device)] = torch.arange(
            len(self.members), device=device)
        self.g_balanced = torch.zeros(self.vocab, dtype=dtype, device=device)
        self.sums = torch.zeros(len(self.members), self.vocab, dtype=dtype, device=device)
        self.seen = torch.zeros(size, dtype=torch.long, device=device)
        self.expected = torch.zeros(size, dtype=torch.long, device=device)
        self.expected[ids] = torch.tensor(list(counts.values()), dtype=torch.long, device=device)

    def update(self, grad: torch.Tensor, tokens: torch.Tensor) -> None:
        """Add one chunk: ``grad`` ``[n, V]`` (row i is the gradient at the position of ``tokens[i]``)."""
        tokens = tokens.to(self.inv_count.device).long()
        w = self.inv_count[tokens]
        if bool((w == 0).any()):
            bad = int(tokens[w == 0][0])
            raise DataError(f"token {bad} has no count in the token table", field="token_id",
                            fix="use the token table of the same trajectories and checkpoint")
        g = grad.to(self.inv_count.device)
        self.g_balanced += (w.to(g.dtype) @ g).to(self.g_balanced.dtype)
        rows = self.row_of[tokens]
        keep = rows >= 0
        if bool(keep.any()):
            self.sums.index_add_(0, rows[keep], g[keep].to(self.sums.dtype))
        self.seen.index_add_(0, tokens, torch.ones_like(tokens))

    def nbytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.inv_count, self.row_of, self.g_balanced,
                                                           self.sums, self.seen, self.expected))

    def finalize(self) -> tuple[np.ndarray, np.ndarray]:
        """``(G_balanced [V], means [members, V])``; checks every position was seen exactly once."""
        if not torch.equal(self.seen, self.expected):
            diff = int((self.seen != self.expected).sum())
            raise DataError(f"the gradient pass saw other positions than the token table counts "
                            f"({diff} types differ)", field="token_id",
                            fix="score and count the same trajectories with the same checkpoint")
        counts = self.expected[torch.tensor(self.members, dtype=torch.long, device=self.sums.device)]
        means = self.sums / counts.clamp_min(1).to(self.sums.dtype)[:, None]
        return self.g_balanced.cpu().numpy(), means.cpu().numpy()


def per_type_geometry(g_balanced: np.ndarray, means: np.ndarray, members, counts: dict[int, int]) -> pd.DataFrame:
    """Norm, cosine to G_balanced and contrib (Eq. 16) per member type."""
    gb_norm = float(np.linalg.norm(g_balanced))
    norms = np.linalg.norm(means, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (means @ g_balanced) / (norms * gb_norm)
    cos = np.clip(np.where(norms > 0, cos, 0.0), -1.0, 1.0)   # rounding can exceed 1 by 1e-16
    n = np.array([counts[int(m)] for m in members], dtype=np.int64)
    return pd.DataFrame({"token_id": np.asarray(members, dtype=np.int64), "n": n, "grad_norm": norms,
                         "cos_balanced": cos, "contrib": n * norms * cos})


# --------------------------------------------------------------------------------------------
# groups
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupSpec:
    """``geometry.groups`` (defaults: the authors' definitions, reference/README.md)."""

    high_kl_n: int = 100
    high_kl_min_freq: int = 2
    random_n: int = 200
    random_min_freq: int = 2
    random_seed: int = 0

    def __post_init__(self):
        for name in ("high_kl_n", "random_n", "high_kl_min_freq", "random_min_freq"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"geometry.groups.{name} must be an integer >= 1 (got {getattr(self, name)!r})")


def define_groups(types: pd.DataFrame, rocks, spec: GroupSpec) -> dict[str, list[int]]:
    """``types``: ``token_id, freq, mean_kl`` (post-OPD). Returns disjoint id lists per group."""
    rocks = [int(r) for r in rocks]
    rock_set = set(rocks)
    elig = types[(types["freq"] >= spec.high_kl_min_freq) & ~types["token_id"].isin(rock_set)]
    high = elig.sort_values(["mean_kl", "token_id"], ascending=[False, True]).head(spec.high_kl_n)
    high_ids = [int(v) for v in high["token_id"]]
    pool = types[(types["freq"] >= spec.random_min_freq) & ~types["token_id"].isin(rock_set | set(high_ids))]
    pool_ids = np.sort(pool["token_id"].to_numpy(np.int64))
    rng = np.random.default_rng(spec.random_seed)
    pick = rng.choice(pool_ids, size=min(spec.random_n, len(pool_ids)), replace=False) if len(pool_ids) else []
    return {"rock": rocks, "high_kl": high_ids, "random": sorted(int(v) for v in pick)}


def type_kl(table: pd.DataFrame) -> pd.DataFrame:
    """Per type: ``freq`` and ``mean_kl`` (Eq. 15) from a token table."""
    g = table.groupby("token_id")["reverse_kl"]
    return pd.DataFrame({"freq": g.size(), "mean_kl": g.mean()}).reset_index()


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------

def group_tests(per_type: pd.DataFrame) -> pd.DataFrame:
    """Mann-Whitney U (two-sided) between groups on ``grad_norm`` and ``cos_balanced``."""
    from scipy import stats

    rows = []
    for metric in ("grad_norm", "cos_balanced", "contrib"):
        for a, b in (("rock", "high_kl"), ("rock", "random"), ("high_kl", "random")):
            x = per_type.loc[per_type["group"] == a, metric].to_numpy()
            y = per_type.loc[per_type["group"] == b, metric].to_numpy()
            if len(x) and len(y):
                res = stats.mannwhitneyu(x, y, alternative="two-sided")
                u, p = float(res.statistic), float(res.pvalue)
            else:
                u = p = float("nan")
            rows.append({"test": "mann_whitney_u", "metric": metric, "group_a": a, "group_b": b,
                         "n_a": len(x), "n_b": len(y), "median_a": float(np.median(x)) if len(x) else np.nan,
                         "median_b": float(np.median(y)) if len(y) else np.nan, "statistic": u, "pvalue": p})
    return pd.DataFrame(rows)


def persistence(early: pd.DataFrame, late: pd.DataFrame, groups: dict[str, list[int]]):
    """Per-type mean KL at the early and late checkpoints, Delta KL, Wilcoxon per group.

    Returns ``(per_type, tests)``: ``per_type`` has ``token_id, group, kl_early, kl_late, delta_kl``;
    ``tests`` one row per group (medians, relative change of the median, Wilcoxon statistic and p).
    """
    from scipy import stats

    e = type_kl(early).set_index("token_id")["mean_kl"]
    la = type_kl(late).set_index("token_id")["mean_kl"]
    rows, tests = [], []
    for name, ids in groups.items():
        ids = [i for i in ids if i in e.index and i in la.index]
        ke, kl = e.loc[ids].to_numpy(), la.loc[ids].to_numpy()
        for i, a, b in zip(ids, ke, kl):
            rows.append({"token_id": int(i), "group": name, "kl_early": float(a), "kl_late": float(b),
                         "delta_kl": float(b - a)})
        if len(ids) and np.any(kl - ke != 0):
            res = stats.wilcoxon(kl, ke)
            w, p = float(res.statistic), float(res.pvalue)
        else:
            w = p = float("nan")
        me, ml = (float(np.median(ke)), float(np.median(kl))) if len(ids) else (np.nan, np.nan)
        tests.append({"test": "wilcoxon_signed_rank", "group": name, "n": len(ids), "median_kl_early": me,
                      "median_kl_late": ml, "median_delta_kl": float(np.median(kl - ke)) if len(ids) else np.nan,
                      "relative_change": (ml - me) / me if me else np.nan, "statistic": w, "pvalue": p})
    return pd.DataFrame(rows), pd.DataFrame(tests)


def geometry_summary(per_type: pd.DataFrame, tests: pd.DataFrame, ptests: pd.DataFrame) -> dict:
    """The numbers of Sec. 2.6 as a nested dict ``{quantity: {group: value}}`` (summary.json)."""
    def by_group(series_fn):
        return {SUMMARY_KEY[g]: series_fn(sub) for g, sub in per_type.groupby("group") if g in SUMMARY_KEY}

    pt = ptests.set_index("group")
    out = {
        "median_grad_norm": by_group(lambda d: float(d["grad_norm"].median())),
        "median_cos": by_group(lambda d: float(d["cos_balanced"].median())),
        "max_cos": by_group(lambda d: float(d["cos_balanced"].max())),
        "share_cos_above_0.3": by_group(lambda d: float((d["cos_balanced"] > 0.3).mean())),
        "contrib_sum": by_group(lambda d: float(d["contrib"].sum())),
        "n_sum": by_group(lambda d: int(d["n"].sum())),
    }
    for key, col in (("median_kl_early", "median_kl_early"), ("median_kl_late", "median_kl_late"),
                     ("median_delta_kl", "median_delta_kl"), ("wilcoxon_p", "pvalue"),
                     ("relative_kl_change", "relative_change")):
        out[key] = {SUMMARY_KEY[g]: float(pt.loc[g, col]) for g in pt.index if g in SUMMARY_KEY}
    mw = tests[tests["test"] == "mann_whitney_u"]
    out["mannwhitney_p"] = {f"{r.metric}_{SUMMARY_KEY[r.group_a]}_vs_{SUMMARY_KEY[r.group_b]}": float(r.pvalue)
                            for r in mw.itertuples()}
    return out


def figure3(per_type: pd.DataFrame, persist: pd.DataFrame, *, title: str, outputs) -> None:
    """Figure 3's four panels (caption order): (a) gradient norm by group, (b) cosine to
    G_balanced by group, (c) early vs late mean KL (log-log, diagonal), (d) Delta KL by group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    present = [g for g in GROUPS if (per_type["group"] == g).any()]
    for ax, metric, label, logy in ((axes[0, 0], "grad_norm", "||mean gradient||", True),
                                    (axes[0, 1], "cos_balanced", "cos(mean gradient, G_balanced)", False)):
        data = [per_type.loc[per_type["group"] == g, metric].to_numpy() for g in present]
        if any(len(d) for d in data):
            ax.boxplot(data, tick_labels=present, showfliers=False)
        rng = np.random.default_rng(0)
        for i, (g, d) in enumerate(zip(present, data)):
            ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(d)), d, s=6, alpha=0.5, c=GROUP_COLORS[g])
        if logy:
            ax.set_yscale("log")
        ax.set_ylabel(label)
    axes[0, 0].set_title("(a) per-token logit-gradient magnitude")
    axes[0, 1].set_title("(b) alignment with G_balanced")
    axes[0, 1].axhline(0, color="k", lw=0.5)
    ax = axes[1, 0]
    lo = hi = None
    for g in GROUPS:
        sub = persist[persist["group"] == g]
        if len(sub):
            x, y = sub["kl_early"].clip(lower=1e-6), sub["kl_late"].clip(lower=1e-6)
            ax.scatter(x, y, s=8, alpha=0.6, c=GROUP_COLORS[g], label=g)
            lo = min(lo or np.inf, float(min(x.min(), y.min())))
            hi = max(hi or 0, float(max(x.max(), y.max())))
    if lo is not None:
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("mean KL, early checkpoint")
    ax.set_ylabel("mean KL, late checkpoint")
    ax.set_title("(c) per-token KL across checkpoints")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    all_d = persist["delta_kl"].to_numpy()
    bins = np.linspace(all_d.min(), all_d.max(), 31) if len(all_d) and np.ptp(all_d) > 0 else 30
    for g in GROUPS:
        d = persist.loc[persist["group"] == g, "delta_kl"].to_numpy()
        if len(d):   # shared bins, so the groups' spreads compare directly
            ax.hist(d, bins=bins, alpha=0.5, color=GROUP_COLORS[g], label=f"{g} (median {np.median(d):+.3f})")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("Delta KL = KL_late - KL_early")
    ax.set_ylabel("token types")
    ax.set_title("(d) Delta KL by group")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, outputs)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

@dataclass
class GeometryConfig:
    """``geometry:`` section."""

    checkpoint: str = "post"
    """stats checkpoint whose gradients are measured (ASSUMED: the post-OPD student; not stated)"""
    detection_mode: str | None = None
    """whose Rock set forms the rock group; null = detection.downstream_mode"""
    early: str = "early"
    late: str = "late"
    persistence_selection: str = "pre"
    """[2.6] persistence groups chosen on the pre-OPD model (default) or, ASSUMED, on a held-out
    half of the trajectories ('holdout'); rock.persistence"""
    holdout_seed: int = 0
    """seed of the trajectory split of persistence_selection 'holdout' (ASSUMED)"""
    groups: dict = field(default_factory=dict)
    accumulate_dtype: str = "float64"

    def __post_init__(self):
        if self.detection_mode not in (None, *paths.DETECTION_MODES):
            raise ConfigError(f"geometry.detection_mode must be null or one of {paths.DETECTION_MODES}")
        if self.persistence_selection not in SELECTIONS:
            raise ConfigError(f"geometry.persistence_selection must be one of {SELECTIONS}")
        if self.accumulate_dtype not in ("float32", "float64"):
            raise ConfigError("geometry.accumulate_dtype must be float32 or float64")
        allowed = set(GroupSpec.__dataclass_fields__)
        if set(self.groups) - allowed:
            raise ConfigError(f"geometry.groups: unknown keys {sorted(set(self.groups) - allowed)}")

    @staticmethod
    def from_dict(data: dict | None) -> "GeometryConfig":
        from rock.config import from_dict

        return from_dict(GeometryConfig, data, "geometry")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("gradients", "analyze"))
    parser.add_argument("--config", required=True, help="config YAML (run_dir, models, stats, detection, geometry)")
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--threads", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    from rock.config import load_config
    from rock.stats import StatsConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config)
    run_dir = args.run_dir or config["run_dir"]
    gcfg = GeometryConfig.from_dict(config["geometry"])
    mode = gcfg.detection_mode or config["detection"]["downstream_mode"]
    spec = GroupSpec(**gcfg.groups)
    post = pd.read_parquet(_need(paths.token_stats(run_dir, gcfg.checkpoint)))
    rocks = json.loads(_need(paths.detection_file(run_dir, mode, "rocks.json")).read_text())["rocks"]
    types = type_kl(post)
    groups = define_groups(types, rocks, spec)
    if args.action == "gradients":
        return _gradients(config, run_dir, gcfg, StatsConfig.from_dict(config["stats"]), post, types, groups)
    return _analyze(config, run_dir, gcfg, groups, mode)


def _need(path):
    if not path.is_file():
        raise DataError("input not found", file=str(path), fix="run the stage that writes it (rock stats / detect)")
    return path


def _gradients(config, run_dir, gcfg: GeometryConfig, scfg, post, types, groups) -> int:
    import time

    from rock.stats import iter_scored_chunks, load_models, read_trajectories, resolve_checkpoint
    from rock.distill.losses import chunk_rows

    models = dict(config["models"])
    student_path = resolve_checkpoint(scfg.checkpoints[gcfg.checkpoint], run_dir, models)
    student, teacher, _, vocab, runtime = load_models(student_path, str(models["teacher"]), models, scfg)
    counts = {int(t): int(n) for t, n in zip(types["token_id"], types["freq"])}
    members = [m for g in GROUPS for m in groups[g]]
    acc = GradientAccumulator(counts, members, vocab, device=runtime.device,
                              dtype=getattr(torch, gcfg.accumulate_dtype))
    log.info("gradient pass: %d member types, accumulator %.1f MiB", len(members), acc.nbytes() / 2**20)
    t0 = time.time()
    rows = chunk_rows(vocab, scfg.chunk_size)
    for ch in iter_scored_chunks(student, teacher, read_trajectories(paths.trajectories(run_dir)), vocab=vocab,
                                 chunk_size=rows, device=runtime.device):
        acc.update(reverse_kl_logit_grad(ch.student_logits, ch.teacher_logits), ch.tokens)
    g_bal, means = acc.finalize()
    per = per_type_geometry(g_bal, means, members, counts)
    group_of = {m: g for g in GROUPS for m in groups[g]}
    per.insert(1, "group", [group_of[int(m)] for m in per["token_id"]])
    per = per.merge(types[["token_id", "mean_kl"]], on="token_id", how="left")
    with atomic_path(paths.geometry_file(run_dir, "per_type.csv")) as tmp:
        per.to_csv(tmp, index=False)
    write_json(paths.geometry_file(run_dir, "gradients.json"),
               {"checkpoint": gcfg.checkpoint, "model": student_path, "g_balanced_norm": float(np.linalg.norm(g_bal)),
                "n_types": len(counts), "n_positions": int(sum(counts.values())), "members": len(members),
                "accumulator_mib": acc.nbytes() / 2**20, "seconds": time.time() - t0})
    return 0


def _late_is_other_weights(config, run_dir, gcfg: GeometryConfig) -> None:
    """The late checkpoint's weights differ from every selection model's (rock.persistence)."""
    from rock.stats import StatsConfig, resolve_checkpoint

    specs = StatsConfig.from_dict(config.get("stats")).checkpoints
    models = dict(config.get("models") or {})
    where = lambda name: resolve_checkpoint(specs[name], run_dir, models)  # noqa: E731
    check_late_is_other_weights((gcfg.late, where(gcfg.late)),
                                {n: where(n) for n in SELECTION_CHECKPOINTS if n in specs})


def persistence_groups(config, run_dir, gcfg: GeometryConfig, rocks, mode, early, late):
    """``(groups, early, late, selection info)`` of Fig. 3c-d (rock.persistence): groups on the
    pre model over all trajectories, or on half A (rocks re-detected there) with early/late
    restricted to half B."""
    spec = GroupSpec(**gcfg.groups)
    pre = pd.read_parquet(_need(paths.token_stats(run_dir, "pre")))
    if gcfg.persistence_selection == "pre":
        return define_groups(type_kl(pre), rocks, spec), early, late, describe("pre", 0, None)
    from rock.detect.cli import load_occurrences
    from rock.detect.config import DetectionSettings
    from rock.detect.core import select_scores

    halves = split_trajectories(pre["trajectory"], gcfg.holdout_seed)
    settings = DetectionSettings.from_dict(config.get("detection"))
    occ = load_occurrences(run_dir, settings, mode).subset(halves[0])
    ranking = select_scores(occ, settings.modes[mode], settings.context)
    rocks_a = [int(v) for v in ranking.loc[ranking["is_rock"], "token_id"]]
    log.info("persistence: holdout selection on %d trajectories (%d rocks re-detected), measured on %d",
             len(halves[0]), len(rocks_a), len(halves[1]))
    groups = define_groups(type_kl(restrict(pre, halves[0])), rocks_a, spec)
    return (groups, restrict(early, halves[1]), restrict(late, halves[1]),
            describe("holdout", gcfg.holdout_seed, halves))


def _analyze(config, run_dir, gcfg: GeometryConfig, groups, mode) -> int:
    per = pd.read_csv(_need(paths.geometry_file(run_dir, "per_type.csv")))
    _late_is_other_weights(config, run_dir, gcfg)
    early = pd.read_parquet(_need(paths.token_stats(run_dir, gcfg.early)))
    late = pd.read_parquet(_need(paths.token_stats(run_dir, gcfg.late)))
    pgroups, early, late, selection = persistence_groups(config, run_dir, gcfg, groups["rock"], mode,
                                                         early, late)
    persist, ptests = persistence(early, late, pgroups)
    tests = pd.concat([group_tests(per), ptests], ignore_index=True)
    with atomic_path(paths.geometry_file(run_dir, "tests.csv")) as tmp:
        tests.to_csv(tmp, index=False)
    with atomic_path(paths.geometry_file(run_dir, "persistence.csv")) as tmp:
        persist.to_csv(tmp, index=False)
    summary = geometry_summary(per, tests, ptests)
    summary.update({"detection_mode": mode, "groups": {SUMMARY_KEY[g]: len(v) for g, v in groups.items()},
                    "persistence_groups": {SUMMARY_KEY[g]: len(v) for g, v in pgroups.items()},
                    "persistence_selection": selection, "early": gcfg.early, "late": gcfg.late})
    write_json(paths.geometry_file(run_dir, "summary.json"), summary)
    figure3(per, persist, title=f"Figure 3 ({run_dir}, rocks from {mode} detection; persistence groups "
                                f"selected on {selection['selection']}, {gcfg.early} vs {gcfg.late})",
            outputs=[paths.figure3(run_dir, "png"), paths.figure3(run_dir, "pdf")])
    return 0
