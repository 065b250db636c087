"""Context windows, context representations and the context-consistency score rho [Sec. 2.2, Eq. 6-10].

For an occurrence ``o = (i, t)`` (token ``t`` of trajectory ``i``) the windowed context is
``c = x_{t-w : t+w}`` (Eq. 6), clipped to the trajectory's response. It is encoded by a context
representation ``h = f_ctx(c)`` (Eq. 7) and two occurrences are compared with ``s = sim(h, h')``
(Eq. 8). For every persistent high-loss occurrence ``o`` of type ``v`` (Eq. 9)::

    rho(o) = 1 / (|O_PH(v)| - 1) * sum_{o' in O_PH(v), o' != o} 1[s(o, o') >= gamma]      (Eq. 10)

Representations (``f_ctx``; the paper names none, all are ASSUMED choices):

* ``bag``: the multiset of tokens in the window (the centre excluded by default: it is ``v`` for
  every compared pair and would only add a constant). ``sim`` = ``cosine`` of the count vectors or
  ``jaccard`` of the token sets.
* ``positional``: the token at each relative offset ``k in [-w, w], k != 0``; the vector is the
  one-hot of the ``(offset, token)`` pairs. ``cosine`` = matches / sqrt(|A| |B|), ``jaccard`` =
  matches / (|A| + |B| - matches); with both windows full, both equal the share of aligned offsets
  whose tokens agree.
* ``hidden``: the mean of the student's final hidden states over the window positions (centre
  included), compared with ``cosine``.

Exactness and cost: Eq. 10 is computed exactly (no sketching, no sampling unless the documented cap
``max_per_type`` is set, see below) by the pair counts of :mod:`rock.detect.pair_counts`, in memory
bounded by ``block_elements`` per block whatever the number of occurrences.

Optional cap (``max_per_type``, default off). When a type has more than ``m = max_per_type``
occurrences in ``O_PH(v)``, each occurrence is compared with a uniform random sample (without
replacement) of ``m`` other occurrences of its type instead of all of them. The estimate is the mean
of ``m`` draws without replacement from a 0/1 population whose mean is ``rho(o)``, so by Hoeffding's
inequality (which holds for sampling without replacement) ``P(|rho_hat(o) - rho(o)| >= eps) <=
2 exp(-2 m eps^2)``; ``m = 2000`` gives ``|error| < 0.043`` with probability 0.999 per occurrence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from rock.detect.pair_counts import (MAX_HEAVY, SIM_TOLERANCE, SPARSE_PAIR_COST,  # noqa: F401  (re-exported)
                                     count_dense, count_sparse, dedupe, plan_batches, sim_values,
                                     sparse_from_keys)
from rock.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REPRESENTATIONS = ("bag", "positional", "hidden")
SIMILARITIES = ("cosine", "jaccard")


@dataclass(frozen=True)
class ContextSpec:
    """How contexts are built and compared (Eq. 6-10). Defaults are ASSUMED (see config.yaml)."""

    representation: str = "bag"       # f_ctx: bag | positional | hidden
    similarity: str = "cosine"        # sim: cosine | jaccard (jaccard: bag/positional only)
    radius: int = 3                   # w of Eq. 6
    gamma: float = 0.5                # similarity threshold of Eq. 10
    include_center: bool = False      # bag only: count the centre token (constant for a type)
    max_per_type: int | None = None   # documented sampling cap (module docstring); None = exact
    block_elements: int = 2**23       # floats per similarity block (32 MiB in fp32)
    pack_rows: int = 2048             # small types are packed into blocks of this many rows
    max_patterns: int = 4096          # speed only: cap on heavy-part patterns per batch
    seed: int = 0                     # only used by the cap

    def __post_init__(self):
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(f"detection.representation '{self.representation}' unknown; "
                              f"use one of {REPRESENTATIONS}")
        if self.similarity not in SIMILARITIES:
            raise ConfigError(f"detection.similarity '{self.similarity}' unknown; use one of {SIMILARITIES}")
        if self.representation == "hidden" and self.similarity != "cosine":
            raise ConfigError("detection.similarity: hidden-state contexts are compared with 'cosine'")
        if not isinstance(self.radius, int) or self.radius < 1:
            raise ConfigError(f"detection.radius must be an integer >= 1 (got {self.radius!r})")
        if not -1.0 <= self.gamma <= 1.0:
            raise ConfigError(f"detection.gamma must be in [-1, 1] (got {self.gamma})")
        if self.max_per_type is not None and self.max_per_type < 2:
            raise ConfigError(f"detection.max_per_type must be null or >= 2 (got {self.max_per_type})")
        if self.block_elements < 1 or self.pack_rows < 1 or self.max_patterns < 1:
            raise ConfigError("detection: block_elements, pack_rows and max_patterns must be positive")


# --------------------------------------------------------------------------------------------
# windows (Eq. 6)
# --------------------------------------------------------------------------------------------

def trajectory_bounds(trajectory: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a flat occurrence array sorted by (trajectory, position): per row, the first and last
    flat index of its trajectory (inclusive)."""
    trajectory = np.asarray(trajectory)
    n = len(trajectory)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if (np.diff(trajectory) < 0).any():
        raise DataError("occurrences are not sorted by trajectory", field="trajectory",
                        fix="sort the token table by (trajectory, position)")
    change = np.flatnonzero(np.diff(trajectory)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]]) - 1
    lengths = ends - starts + 1
    return np.repeat(starts, lengths), np.repeat(ends, lengths)


def window_spans(index: np.ndarray, lo: np.ndarray, hi: np.ndarray, radius: int):
    """Inclusive flat-index span ``[t - w, t + w]`` of each occurrence, clipped to its trajectory."""
    index = np.asarray(index, np.int64)
    return np.maximum(lo[index], index - radius), np.minimum(hi[index], index + radius)


def window_keys(index: np.ndarray, tokens: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                spec: ContextSpec) -> np.ndarray:
    """Integer key matrix of the windows of ``index`` for the sparse representations.

    ``positional``: column j holds the token at offset ``j - w`` (centre column dropped), -1 when
    the offset falls outside the trajectory. ``bag``: the same tokens sorted per row (a canonical
    multiset, -1 padding first), so equal keys mean equal bags.
    """
    w = spec.radius
    offsets = [k for k in range(-w, w + 1) if k != 0 or (spec.representation == "bag" and spec.include_center)]
    keys = np.full((len(index), len(offsets)), -1, dtype=np.int64)
    start, end = lo[index], hi[index]
    for j, k in enumerate(offsets):
        pos = index + k
        ok = (pos >= start) & (pos <= end)
        keys[ok, j] = tokens[pos[ok]]
    if spec.representation == "bag":
        keys.sort(axis=1)
    return keys


def pooled_hidden(index: np.ndarray, hidden: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  radius: int) -> np.ndarray:
    """Mean of ``hidden`` rows over each window (Eq. 6-7 with f_ctx = mean-pooled hidden states).

    ``hidden`` is ``[n_occurrences, d]`` aligned with the flat occurrence array (may be a
    read-only memory map; only the needed rows are read). Returns float32 ``[len(index), d]``.
    """
    index = np.asarray(index, np.int64)
    out = np.zeros((len(index), hidden.shape[1]), dtype=np.float32)
    count = np.zeros(len(index), dtype=np.float32)
    start, end = lo[index], hi[index]
    for k in range(-radius, radius + 1):
        pos = index + k
        ok = (pos >= start) & (pos <= end)
        if ok.any():
            out[ok] += np.asarray(hidden[pos[ok]], dtype=np.float32)
            count[ok] += 1
    return out / np.maximum(count, 1)[:, None]


def context_consistency(ph_index: np.ndarray, tokens: np.ndarray, trajectory: np.ndarray,
                        spec: ContextSpec, *, hidden: np.ndarray | None = None,
                        progress: bool = False) -> np.ndarray:
    """rho(o) of Eq. 10 for every persistent high-loss occurrence.

    Args:
        ph_index: flat indices (into the occurrence arrays) of O_PH (Eq. 5).
        tokens: ``[n_occ]`` token id per occurrence; trajectory: ``[n_occ]`` trajectory id, the
            arrays sorted by (trajectory, position).
        spec: representation, similarity, radius w, threshold gamma.
        hidden: ``[n_occ, d]`` student hidden states (``representation='hidden'`` only).

    Returns ``rho`` aligned with ``ph_index`` (float64). A type with a single PH occurrence has no
    other occurrence to recur with: its rho is 0 (ASSUMED; Eq. 10 divides by zero there).
    """
    ph_index = np.asarray(ph_index, np.int64)
    tokens = np.asarray(tokens)
    lo, hi = trajectory_bounds(trajectory)
    if spec.representation == "hidden":
        _check_hidden(hidden, tokens)
    rho = np.zeros(len(ph_index), dtype=np.float64)
    if len(ph_index) == 0:
        return rho
    v_of = tokens[ph_index]
    groups = _type_groups(v_of)
    sizes = [(v, len(g)) for v, g in groups.items() if len(g) >= 2]
    rng = np.random.default_rng(spec.seed)
    batches = plan_batches(sizes, spec.pack_rows)
    iterator = batches
    if progress:
        from tqdm import tqdm
        iterator = tqdm(batches, desc="rho", unit="batch", mininterval=5)
    for batch_types in iterator:
        if len(batch_types) == 1 and spec.max_per_type and len(groups[batch_types[0]]) > spec.max_per_type:
            members = groups[batch_types[0]]
            rho[members] = _rho_sampled(ph_index[members], tokens, lo, hi, spec, hidden, rng)
            continue
        members = np.concatenate([groups[v] for v in batch_types])
        labels = v_of[members].astype(np.int64)
        counts, inverse = _batch_counts(ph_index[members], labels, tokens, lo, hi, spec, hidden)
        n_type = {v: len(groups[v]) for v in batch_types}
        denom = np.array([n_type[int(v)] - 1 for v in labels], dtype=np.float64)
        rho[members] = counts[inverse] / denom
    return rho


def _check_hidden(hidden: np.ndarray | None, tokens: np.ndarray) -> None:
    if hidden is None:
        raise DataError("representation 'hidden' needs the student's hidden states",
                        field="detection.representation",
                        fix="run rock stats score with save_hidden, or use 'bag'/'positional'")
    if len(hidden) != len(tokens):
        raise DataError(f"hidden states have {len(hidden)} rows, the token table {len(tokens)}",
                        field="hidden", fix="re-run rock stats score for this checkpoint")


def _type_groups(v_of: np.ndarray) -> dict[int, np.ndarray]:
    """Token type -> positions in ``v_of`` of its occurrences (ascending)."""
    order = np.argsort(v_of, kind="stable")
    sorted_v = v_of[order]
    change = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(order)]])
    return {int(sorted_v[s]): order[s:e] for s, e in zip(starts, ends)}


def _batch_counts(occ: np.ndarray, labels: np.ndarray, tokens, lo, hi, spec: ContextSpec, hidden):
    """``(counts per unique row, occurrence -> unique row)`` of one batch of token types: how many
    other occurrences of the same type have ``s >= gamma`` (:mod:`rock.detect.pair_counts`)."""
    if spec.representation == "hidden":
        batch = dedupe(labels, None)
        return count_dense(batch, pooled_hidden(occ, hidden, lo, hi, spec.radius), spec), batch.inverse
    keys = window_keys(occ, tokens, lo, hi, spec)
    batch = dedupe(labels, keys)
    keys_u = np.zeros((len(batch.labels), keys.shape[1]), np.int64)
    keys_u[batch.inverse] = keys
    return count_sparse(batch, keys_u, spec), batch.inverse


def _rho_sampled(occ: np.ndarray, tokens, lo, hi, spec: ContextSpec, hidden, rng) -> np.ndarray:
    """Capped estimate of rho for one large type (module docstring: Hoeffding bound)."""
    n, m = len(occ), spec.max_per_type
    ref = rng.choice(n, size=m + 1, replace=False)  # one spare to replace the occurrence itself
    if spec.representation == "hidden":
        x = pooled_hidden(occ, hidden, lo, hi, spec.radius)
        x /= np.maximum(np.linalg.norm(x, axis=1), 1e-30)[:, None]
        xs = x[ref]
        size = size_ref = None
    else:
        keys = window_keys(occ, tokens, lo, hi, spec)
        mat, size = sparse_from_keys(keys, spec)
        x, xs, size_ref = mat, mat[ref], size[ref]
    hits = np.zeros(n, dtype=np.float64)
    rows = max(1, spec.block_elements // (m + 1))
    for a in range(0, n, rows):
        b = min(n, a + rows)
        if size is None:
            s = x[a:b] @ xs.T
        else:
            gram = (x[a:b] @ xs.T).toarray()
            s = sim_values(gram, size[a:b, None], size_ref[None, :], spec.similarity)
        hit = s >= spec.gamma - SIM_TOLERANCE
        is_self = np.arange(a, b)[:, None] == ref[None, :]
        # use the first m references that are not the occurrence itself
        keep = ~is_self
        keep &= np.cumsum(keep, axis=1) <= m
        hits[a:b] = (hit & keep).sum(axis=1)
    return hits / m


def naive_rho(ph_index, tokens, trajectory, spec: ContextSpec, hidden=None) -> np.ndarray:
    """Direct all-pairs evaluation of Eq. 10 (tests and the benchmark's reference only)."""
    ph_index = np.asarray(ph_index, np.int64)
    lo, hi = trajectory_bounds(trajectory)
    rho = np.zeros(len(ph_index))
    if spec.representation == "hidden":
        x = pooled_hidden(ph_index, hidden, lo, hi, spec.radius).astype(np.float64)
    else:
        keys = window_keys(ph_index, tokens, lo, hi, spec)
    for a in range(len(ph_index)):
        same = [b for b in range(len(ph_index)) if b != a and tokens[ph_index[b]] == tokens[ph_index[a]]]
        if not same:
            continue
        hit = 0
        for b in same:
            if spec.representation == "hidden":
                na, nb = np.linalg.norm(x[a]), np.linalg.norm(x[b])
                s = float(x[a] @ x[b] / (na * nb)) if na > 0 and nb > 0 else 0.0
            else:
                s = _pair_similarity(keys[a], keys[b], spec)
            hit += s >= spec.gamma - SIM_TOLERANCE
        rho[a] = hit / len(same)
    return rho


def _pair_similarity(ka: np.ndarray, kb: np.ndarray, spec: ContextSpec) -> float:
    from collections import Counter
    if spec.representation == "positional":
        a = {(j, t) for j, t in enumerate(ka) if t >= 0}
        b = {(j, t) for j, t in enumerate(kb) if t >= 0}
        ca, cb = Counter(a), Counter(b)
    else:
        ca, cb = Counter(int(t) for t in ka if t >= 0), Counter(int(t) for t in kb if t >= 0)
    if spec.similarity == "jaccard":
        sa, sb = set(ca), set(cb)
        union = len(sa | sb)
        return len(sa & sb) / union if union else 0.0
    dot = sum(ca[k] * cb[k] for k in ca)
    na = np.sqrt(sum(v * v for v in ca.values()))
    nb = np.sqrt(sum(v * v for v in cb.values()))
    return dot / (na * nb) if na > 0 and nb > 0 else 0.0
