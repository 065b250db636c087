"""The library of :mod:`rock.geometry` [Sec. 2.6]: logit-space gradients and their per-type
accumulator, groups, tests, persistence and the ``geometry:`` config (the package docstring
states the maths). Figure 3 is drawn by :mod:`rock.geometry.figure`, the CLI is
:mod:`rock.geometry.cli`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rock import paths
from rock.errors import ConfigError, DataError
from rock.persistence import SELECTIONS

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


# --------------------------------------------------------------------------------------------
# config
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
    groups: GroupSpec = field(default_factory=GroupSpec)
    accumulate_dtype: str = "float64"

    def __post_init__(self):
        if self.detection_mode not in (None, *paths.DETECTION_MODES):
            raise ConfigError(f"geometry.detection_mode must be null or one of {paths.DETECTION_MODES}")
        if self.persistence_selection not in SELECTIONS:
            raise ConfigError(f"geometry.persistence_selection must be one of {SELECTIONS}")
        if self.accumulate_dtype not in ("float32", "float64"):
            raise ConfigError("geometry.accumulate_dtype must be float32 or float64")

    @staticmethod
    def from_dict(data: dict | None) -> "GeometryConfig":
        from rock.config import from_dict

        return from_dict(GeometryConfig, data, "geometry")
