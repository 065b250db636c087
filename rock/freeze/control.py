"""Frequency- and window-length-matched random window freeze, the control of Sec. 4.2.

Paper: "the Freq-Matched Window Freeze (Random) applies the same lambda = 0 strategy to a randomly
sampled set of windows W_S whose token frequency distribution and window-length distribution are
matched to W_R". The authors' code froze a fixed list of 100 control ids (ranks 101-200 of their
score) that is *not* frequency matched (rock frequencies sum to 85,120, controls to 16,893;
reference/README.md). This module samples W_S per rollout batch instead:

1. the target units are the maximal runs ("spans") of the Rock-Freeze frozen set on the same
   rollouts (rock tokens and W_R; overlapping windows merge into one span, windows are clipped at
   the response edges, so span lengths vary);
2. each target span has a stratum ``(length, frequency bin of its centre token)``; frequency bins
   are powers of ``bin_base`` of the token's corpus count (``floor(log_base(count + 1))``);
3. for each target span (longest first) a control span of the same length is drawn uniformly among
   response positions whose centre token lies in the same frequency bin, does not overlap or touch
   (one-token gap) an already drawn control span, and stays inside the response; among up to
   ``n_proposals`` such placements the one whose sorted token log-frequencies are closest to the
   target span's is kept, so the frequency profile of the whole window is matched, not only its
   centre (on the Zipf corpus of tests/test_freeze_control.py the per-position KS distance drops
   from 0.035 with one proposal to about 0.027 with 16);
4. W_S lies **outside** the Rock-Freeze frozen set (issue 13): no control position is a rock
   token or inside W_R, so the control and Rock-Freeze freeze disjoint positions and their
   difference measures *which* positions are frozen, not how many. (Before, 66-85% of the toy's
   control positions fell inside W_R and random minus Rock-Freeze was exactly 0.) A control span
   may touch W_R but never overlaps it. Because every rock occurrence is in the target set, no
   control window contains a rock token at all (``exclude_rock_centres`` is then implied).
   When a stratum has no room, the nearest frequency bin is used (counted as a fallback); a span
   that cannot be placed outside W_R at all is counted as unmatched, with its tokens
   (``unmatched_tokens``), and the caller logs the counts: the control never overlaps silently.

How well the two sets match is measured, not assumed: :class:`MatchAccumulator` collects span
lengths, centre-token bins and the token log-frequency of every frozen position over a run, and
:func:`match_tests` runs two-sample tests (Kolmogorov-Smirnov and chi-square on binned counts) on
window length, centre-token frequency bin and per-position token log-frequency.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

log = logging.getLogger(__name__)


def freq_bin(counts: np.ndarray, base: float) -> np.ndarray:
    """Frequency bin of a corpus count: ``floor(log_base(count + 1))`` (0 for an unseen token)."""
    c = np.asarray(counts, dtype=np.float64)
    return np.floor(np.log(c + 1.0) / math.log(base) + 1e-9).astype(np.int64)


def spans(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal runs of True in a ``[B, L]`` bool array as ``(row, start, length)``, row-major."""
    m = np.asarray(mask, dtype=bool)
    out = []
    for b in range(m.shape[0]):
        row = np.concatenate([[False], m[b], [False]]).astype(np.int8)
        d = np.diff(row)
        starts = np.flatnonzero(d == 1)
        ends = np.flatnonzero(d == -1)
        out.extend((b, int(s), int(e - s)) for s, e in zip(starts, ends))
    return out


def _lookup(freq: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Corpus counts of token ids; ids beyond the table count as unseen (0)."""
    ids = np.asarray(ids, dtype=np.int64)
    out = np.zeros(ids.shape, dtype=np.int64)
    ok = (ids >= 0) & (ids < len(freq))
    out[ok] = freq[ids[ok]]
    return out


@dataclass
class ControlSample:
    """One batch's control windows. ``mask`` is ``[B, L]`` bool (True = frozen)."""

    mask: np.ndarray
    n_target_spans: int
    n_matched: int
    n_fallback: int
    n_unmatched: int
    target_tokens: int
    control_tokens: int
    unmatched_tokens: int = 0
    """tokens of the target spans that found no placement outside W_R"""
    overlap_tokens: int = 0
    """control positions inside the target set (0 by construction; counted, not assumed)"""


def sample_matched_windows(input_ids: np.ndarray, response_mask: np.ndarray, target_mask: np.ndarray,
                           rock_ids, token_freq: np.ndarray, rng: np.random.Generator, *,
                           bin_base: float = 2.0, exclude_rock_centres: bool = True,
                           max_tries: int = 64, max_bin_distance: int = 4,
                           n_proposals: int = 16) -> ControlSample:
    """Draw control spans matched to the spans of ``target_mask`` (module docstring).

    Args:
        input_ids: ``[B, L]`` token ids; response_mask: ``[B, L]`` bool.
        target_mask: ``[B, L]`` bool, the Rock-Freeze frozen set (``x_t in R or t in W_R``);
            control spans are drawn outside it.
        rock_ids: the Rock set R; token_freq: ``[V]`` corpus counts per token id (detection's Freq(v)).
        rng: numpy Generator (seed it per step for determinism).
        bin_base: frequency bins are powers of this base.
        exclude_rock_centres: never centre a control span on a rock token (ASSUMED, see above).
        max_tries: random placements tried per stratum before falling back to the next bin.
        max_bin_distance: how far (in bins) a fallback may go; beyond it the span is unmatched.
        n_proposals: valid placements drawn per span; the one whose sorted token log-frequencies
            are closest (mean absolute difference) to the target span's is kept, so the frequency
            profile of the whole window is matched, not only its centre.
    """
    ids = np.asarray(input_ids, dtype=np.int64)
    resp = np.asarray(response_mask, dtype=bool)
    target = np.asarray(target_mask, dtype=bool) & resp
    grid = _PlacementGrid.build(ids, resp, target, rock_ids, token_freq, bin_base, exclude_rock_centres)
    target_spans = spans(target)
    # longest first packs better; ties keep row-major order (deterministic)
    order = sorted(range(len(target_spans)), key=lambda i: -target_spans[i][2])
    n_matched = n_fallback = n_unmatched = unmatched_tokens = 0
    for i in order:
        b, s, length = target_spans[i]
        best, dist = grid.place(b, s, length, rng, max_tries=max_tries,
                                max_bin_distance=max_bin_distance, n_proposals=n_proposals)
        if best is None:
            n_unmatched += 1
            unmatched_tokens += length
            continue
        cb, cs = best
        grid.occupied[cb, cs + 1:cs + length + 1] = True
        n_matched += 1
        n_fallback += dist > 0
    mask = grid.occupied[:, 1:grid.width + 1].copy()
    return ControlSample(mask=mask, n_target_spans=len(target_spans), n_matched=n_matched,
                         n_fallback=n_fallback, n_unmatched=n_unmatched,
                         target_tokens=int(target.sum()), control_tokens=int(mask.sum()),
                         unmatched_tokens=unmatched_tokens, overlap_tokens=int((mask & target).sum()))


@dataclass
class _PlacementGrid:
    """Where control spans may go in one batch (:func:`sample_matched_windows`): candidate centres
    per frequency bin, prefix sums of the response and target masks, and the spans drawn so far."""

    bins: np.ndarray         # [B, L] frequency bin of each position's token
    logf: np.ndarray         # [B, L] log2(count + 1) of each position's token
    by_bin: dict             # bin -> candidate centres as flat indices b * L + t
    csum: np.ndarray         # [B, L + 1] response prefix sums
    tsum: np.ndarray         # [B, L + 1] target prefix sums
    occupied: np.ndarray     # [B, L + 2] control spans drawn so far, padded by one on each side

    @property
    def width(self) -> int:
        return self.bins.shape[1]

    @classmethod
    def build(cls, ids, resp, target, rock_ids, token_freq, bin_base: float,
              exclude_rock_centres: bool) -> "_PlacementGrid":
        B, L = ids.shape
        freq = np.asarray(token_freq, dtype=np.int64)
        counts = _lookup(freq, ids)
        bins = freq_bin(counts, bin_base)
        logf = np.log2(counts.astype(np.float64) + 1.0)
        is_rock = np.isin(ids, np.asarray(list(rock_ids), dtype=np.int64))
        centre_ok = (resp & ~is_rock if exclude_rock_centres else resp.copy()) & ~target
        flat_bins = bins.reshape(-1)
        flat_ok = np.flatnonzero(centre_ok.reshape(-1))
        by_bin = {int(k): flat_ok[flat_bins[flat_ok] == k] for k in np.unique(flat_bins[flat_ok])}
        # response prefix sums: a span [s, e) lies inside the response iff it sums to its length
        csum = np.concatenate([np.zeros((B, 1), dtype=np.int64), np.cumsum(resp, axis=1)], axis=1)
        # a span [s, s + length) avoids W_R iff its count of target positions is 0
        tsum = np.concatenate([np.zeros((B, 1), dtype=np.int64), np.cumsum(target, axis=1)], axis=1)
        return cls(bins, logf, by_bin, csum, tsum, np.zeros((B, L + 2), dtype=bool))

    def place(self, b: int, s: int, length: int, rng: np.random.Generator, *, max_tries: int,
              max_bin_distance: int, n_proposals: int):
        """``((row, start) or None, bin distance)`` of the control span for target span ``(b, s, length)``:
        the centre's own bin first, then bins at growing distance."""
        offset = (length - 1) // 2
        k0 = int(self.bins[b, s + offset])
        goal = np.sort(self.logf[b, s:s + length])
        best, dist = None, 0
        for dist in range(0, max_bin_distance + 1):
            # at distance d try bins k0-d and k0+d in random order (no systematic drift)
            ks = [k0] if dist == 0 else [k0 - dist, k0 + dist][:: 1 if rng.random() < 0.5 else -1]
            for k in ks:
                cand = self.by_bin.get(k)
                if cand is None or len(cand) == 0:
                    continue
                best = self._closest(cand, offset, length, goal, rng, max_tries, n_proposals)
                if best is not None:
                    break
            if best is not None:
                break
        return best, dist

    def _closest(self, cand, offset: int, length: int, goal, rng, max_tries: int, n_proposals: int):
        """Draw candidate centres, keep the first ``n_proposals`` valid placements (inside the
        response, outside W_R, not touching an earlier control span), take the closest profile."""
        L = self.width
        picks = cand[rng.integers(0, len(cand), size=min(max_tries, 4 * len(cand)))]
        cb, cs = np.divmod(picks, L)
        cs = cs - offset
        ok = (cs >= 0) & (cs + length <= L)
        cb, cs = cb[ok], cs[ok]
        ok = ((self.csum[cb, cs + length] - self.csum[cb, cs] == length)
              & (self.tsum[cb, cs + length] == self.tsum[cb, cs]))
        cb, cs = cb[ok], cs[ok]
        if len(cb):
            # padded occupancy columns cs .. cs+length+1 = positions cs-1 .. cs+length
            free = ~self.occupied[cb[:, None], cs[:, None] + np.arange(length + 2)].any(axis=1)
            cb, cs = cb[free][:n_proposals], cs[free][:n_proposals]
        if not len(cb):
            return None
        win = np.sort(self.logf[cb[:, None], cs[:, None] + np.arange(length)], axis=1)
        j = int(np.argmin(np.abs(win - goal).mean(axis=1)))
        return int(cb[j]), int(cs[j])


#: resolution of the per-position token log-frequency histogram: 1/4 octave
LOG2_STEPS = 4


@dataclass
class MatchAccumulator:
    """Histograms of the target (W_R) and control (W_S) sets over a run, for :func:`match_tests`.

    Keys: ``length`` (span lengths), ``centre_bin`` (frequency bin of the span's centre token) and
    ``token_log2q`` (``floor(4 log2(count + 1))`` of the corpus count of every frozen position's
    token, i.e. its log-frequency in quarter octaves). All are small integer histograms, so one
    step's record is a few hundred bytes whatever the batch size.
    """

    bin_base: float = 2.0
    target: dict[str, Counter] = field(default_factory=lambda: {k: Counter() for k in _KEYS})
    control: dict[str, Counter] = field(default_factory=lambda: {k: Counter() for k in _KEYS})

    def update(self, input_ids: np.ndarray, target_mask: np.ndarray, control_mask: np.ndarray,
               token_freq: np.ndarray) -> None:
        ids = np.asarray(input_ids, dtype=np.int64)
        counts = _lookup(np.asarray(token_freq), ids)
        bins = freq_bin(counts, self.bin_base)
        log2q = np.floor(LOG2_STEPS * np.log2(counts + 1.0) + 1e-9).astype(np.int64)
        for hist, mask in ((self.target, target_mask), (self.control, control_mask)):
            mask = np.asarray(mask, dtype=bool)
            for b, s, length in spans(mask):
                hist["length"][length] += 1
                hist["centre_bin"][int(bins[b, s + (length - 1) // 2])] += 1
            hist["token_log2q"].update(log2q[mask].tolist())

    def to_json(self) -> dict:
        return {"bin_base": self.bin_base,
                **{side: {k: {str(v): int(c) for v, c in sorted(h.items())} for k, h in hists.items()}
                   for side, hists in (("target", self.target), ("control", self.control))}}

    @classmethod
    def from_json(cls, obj: dict) -> "MatchAccumulator":
        acc = cls(bin_base=float(obj["bin_base"]))
        for side in ("target", "control"):
            for k in _KEYS:
                getattr(acc, side)[k] = Counter({int(v): int(c) for v, c in obj[side][k].items()})
        return acc

    def merge(self, other: "MatchAccumulator") -> None:
        for side in ("target", "control"):
            for k in _KEYS:
                getattr(self, side)[k].update(getattr(other, side)[k])


_KEYS = ("length", "centre_bin", "token_log2q")


def ks_from_hist(a: Counter, b: Counter) -> tuple[float, float, int, int]:
    """Two-sample Kolmogorov-Smirnov on weighted values: ``(D, p, n_a, n_b)``.

    ``D`` is the largest gap between the two empirical CDFs; ``p`` uses the same asymptotic
    distribution as ``scipy.stats.ks_2samp(method="asymp")`` (``kstwo`` with ``n_a n_b/(n_a+n_b)``).
    With discrete values the test is conservative.
    """
    na, nb = sum(a.values()), sum(b.values())
    if na == 0 or nb == 0:
        return float("nan"), float("nan"), na, nb
    values = sorted(set(a) | set(b))
    ca = np.cumsum([a.get(v, 0) for v in values]) / na
    cb = np.cumsum([b.get(v, 0) for v in values]) / nb
    d = float(np.max(np.abs(ca - cb)))
    en = na * nb / (na + nb)
    p = float(stats.kstwo.sf(d, max(1, int(round(en)))))
    return d, min(1.0, p), na, nb


def chi2_from_hist(a: Counter, b: Counter, *, min_count: int = 10) -> tuple[float, int, float, float]:
    """Chi-square test of homogeneity on a ``2 x k`` table: ``(chi2, dof, p, cramers_v)``.

    Adjacent categories (in value order) are merged until each merged column holds at least
    ``min_count`` observations in total, so that expected counts are not tiny.
    """
    na, nb = sum(a.values()), sum(b.values())
    if na == 0 or nb == 0:
        return float("nan"), 0, float("nan"), float("nan")
    cols, cur = [], [0, 0]
    for v in sorted(set(a) | set(b)):
        cur = [cur[0] + a.get(v, 0), cur[1] + b.get(v, 0)]
        if sum(cur) >= min_count:
            cols.append(cur)
            cur = [0, 0]
    if sum(cur):
        if cols:
            cols[-1] = [cols[-1][0] + cur[0], cols[-1][1] + cur[1]]
        else:
            cols.append(cur)
    if len(cols) < 2:
        return 0.0, 0, 1.0, 0.0
    table = np.array(cols, dtype=np.float64).T
    chi2, p, dof, _ = stats.chi2_contingency(table, correction=False)
    v = math.sqrt(chi2 / table.sum())  # Cramér's V for a 2 x k table
    return float(chi2), int(dof), float(p), float(v)


def match_tests(acc: MatchAccumulator) -> pd.DataFrame:
    """Two-sample tests W_R vs W_S, one row per quantity (printed by ``rock freeze report``).

    Quantities: ``window_length`` (span lengths), ``centre_freq_bin`` (frequency bin of the span's
    centre token), ``token_log2_freq`` (``floor(log2(count + 1))`` of the corpus frequency of every
    frozen position's token, in octaves: the token-frequency distribution of the frozen positions)
    and ``token_log2_freq_fine`` (the same in quarter octaves; means in log2 units). With a small
    vocabulary the rock tokens are nearly alone in their quarter octave, and control windows are
    not centred on rock tokens, so the fine histogram shows what octave-level matching leaves.
    ``ks_D`` and ``cramers_v`` are effect sizes; with the hundreds of thousands of positions of a
    paper-scale run any difference is "significant", so read the p-values together with them.
    """
    def octaves(h: Counter) -> Counter:
        out: Counter = Counter()
        for k, c in h.items():
            out[k // LOG2_STEPS] += c
        return out

    rows = []
    pairs = {
        "window_length": (acc.target["length"], acc.control["length"], 1.0),
        "centre_freq_bin": (acc.target["centre_bin"], acc.control["centre_bin"], 1.0),
        "token_log2_freq": (octaves(acc.target["token_log2q"]), octaves(acc.control["token_log2q"]), 1.0),
        "token_log2_freq_fine": (acc.target["token_log2q"], acc.control["token_log2q"], 1.0 / LOG2_STEPS),
    }
    for name, (a, b, scale) in pairs.items():
        d, p_ks, na, nb = ks_from_hist(a, b)
        chi2, dof, p_chi, v = chi2_from_hist(a, b)
        mean = lambda h: (scale * sum(k * c for k, c in h.items()) / sum(h.values())) if h else float("nan")
        rows.append({"quantity": name, "n_rock": na, "n_control": nb,
                     "mean_rock": mean(a), "mean_control": mean(b),
                     "ks_D": d, "ks_p": p_ks, "chi2": chi2, "chi2_dof": dof, "chi2_p": p_chi,
                     "cramers_v": v})
    return pd.DataFrame(rows)
