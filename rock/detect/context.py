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

Exactness and cost. Eq. 10 is computed exactly: no sketching, no sampling (unless the documented cap
``max_per_type`` is set, see below). Within each token type identical context vectors are merged
(with multiplicities). For the sparse representations (bag, positional) a pair's dot product is split
by columns: the few columns present in many windows ("heavy") and the rest ("light"). Windows with
the same type, heavy part and size form a pattern; patterns are compared on their heavy part alone in
a small dense matrix, which is the exact verdict for every pair of windows that shares no light
column, and the pairs that do share one (found by a sparse product, bounded because light columns are
rare) get their exact verdict instead. The split is chosen by a cost model and changes only the
speed (tests compare every path with a naive all-pairs loop). Hidden-state contexts use blocked
dense products. Memory stays bounded by ``block_elements`` per block whatever the number of
occurrences. Types with few occurrences are packed together into one batch (``pack_rows``), pairs of
different types being masked out, so the per-type Python overhead does not dominate a Zipf tail.

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
import scipy.sparse as sp

from rock.errors import ConfigError, DataError

log = logging.getLogger(__name__)

REPRESENTATIONS = ("bag", "positional", "hidden")
SIMILARITIES = ("cosine", "jaccard")
#: tolerance of the test ``s >= gamma``: float32 dot products of equal vectors give 1 - 1e-7
SIM_TOLERANCE = 1e-6
#: cost of one sparse pair entry relative to one dense pattern pair (measured order of magnitude)
SPARSE_PAIR_COST = 20.0
#: at most this many heavy columns are tried (speed only)
MAX_HEAVY = 64


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


# --------------------------------------------------------------------------------------------
# representation matrices
# --------------------------------------------------------------------------------------------

def _sparse_from_keys(keys: np.ndarray, spec: ContextSpec) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sparse nonnegative rows and their "sizes" (the normaliser used by ``sim``).

    bag/cosine: counts, size = L2 norm. bag/jaccard: 0/1 set indicator, size = |set|.
    positional: one-hot of (offset, token), size = number of valid offsets (cosine uses sqrt).
    """
    n, m = keys.shape
    if spec.representation == "positional":
        cols = np.where(keys >= 0, keys * m + np.arange(m)[None, :], -1)
    else:
        cols = keys
    rows = np.repeat(np.arange(n), m)
    flat = cols.reshape(-1)
    ok = flat >= 0
    rows, flat = rows[ok], flat[ok]
    uniq, local = np.unique(flat, return_inverse=True)
    x = sp.csr_matrix((np.ones(len(local), np.float32), (rows, local)), shape=(n, max(1, len(uniq))))
    x.sum_duplicates()
    if spec.similarity == "jaccard":
        x.data[:] = 1.0
        size = np.asarray(x.sum(axis=1)).ravel().astype(np.float64)
    else:
        size = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel().astype(np.float64))
    return x, size


def _sim_values(dot, size_a, size_b, similarity: str) -> np.ndarray:
    """``sim`` from raw dot products and row sizes (float64); empty windows are similar to nothing."""
    dot = np.asarray(dot, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if similarity == "cosine":
            s = dot / (size_a * size_b)
        else:
            s = dot / (size_a + size_b - dot)
    return np.where((size_a > 0) & (size_b > 0), s, 0.0)


# --------------------------------------------------------------------------------------------
# rho (Eq. 10)
# --------------------------------------------------------------------------------------------

@dataclass
class _Batch:
    """Rows of one or more token types, deduplicated within type."""

    labels: np.ndarray        # type label per unique row
    mult: np.ndarray          # multiplicity per unique row
    inverse: np.ndarray       # occurrence -> unique row


def _dedupe(labels: np.ndarray, keys: np.ndarray | None) -> _Batch:
    if keys is None:  # hidden states: no merging
        n = len(labels)
        return _Batch(labels, np.ones(n, np.float32), np.arange(n))
    full = np.concatenate([labels[:, None].astype(np.int64), keys], axis=1)
    uniq, inverse, counts = np.unique(full, axis=0, return_inverse=True, return_counts=True)
    return _Batch(uniq[:, 0], counts.astype(np.float32), inverse.ravel())


def _row_blocks(lo_row: np.ndarray, hi_row: np.ndarray, budget: int):
    """Split rows into blocks ``[a, b)`` whose columns are ``[lo_row[a], hi_row[b-1])`` (the rows'
    own types, contiguous because rows are sorted by type) with ``(b - a) * width <= budget``."""
    u = len(lo_row)
    a = 0
    while a < u:
        b = a + 1
        step = 1
        while b < u and (b + step - a) * (hi_row[min(u, b + step) - 1] - lo_row[a]) <= budget:
            b = min(u, b + step)
            step *= 2
        while step > 1:  # refine downwards from the last accepted size
            step //= 2
            nb = min(u, b + step)
            if nb > b and (nb - a) * (hi_row[nb - 1] - lo_row[a]) <= budget:
                b = nb
        yield a, b, int(lo_row[a]), int(hi_row[b - 1])
        a = b


def _type_ranges(labels: np.ndarray):
    u = len(labels)
    change = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.concatenate([[0], change]), np.concatenate([change, [u]])
    return np.repeat(starts, ends - starts), np.repeat(ends, ends - starts)


def _count_dense(batch: _Batch, dense: np.ndarray, spec: ContextSpec) -> np.ndarray:
    """Hidden-state contexts: blocked cosine similarities (BLAS), counted per row."""
    labels = batch.labels
    u = len(labels)
    lo_row, hi_row = _type_ranges(labels)
    gamma = spec.gamma - SIM_TOLERANCE
    norms = np.linalg.norm(dense, axis=1)
    x = (dense / np.maximum(norms, 1e-30)[:, None]).astype(np.float32)   # zero rows stay zero (s = 0)
    counts = np.zeros(u, dtype=np.float64)
    for a, b, lo, hi in _row_blocks(lo_row, hi_row, spec.block_elements):
        hit = (x[a:b] @ x[lo:hi].T) >= gamma
        if labels[a] != labels[b - 1]:
            hit &= labels[a:b, None] == labels[None, lo:hi]
        idx = np.arange(b - a)
        hit[idx, a + idx - lo] = False                   # the occurrence itself
        counts[a:b] = np.count_nonzero(hit, axis=1)
    return counts


def _heavy_patterns(x: sp.csr_matrix, labels: np.ndarray, size: np.ndarray, max_patterns: int):
    """Choose the "heavy" columns and group rows into patterns (module docstring; speed only).

    Columns are taken in order of decreasing presence. Pattern ids are refined one column at a
    time (exact integer ids, no hashing). The number h of heavy columns minimises
    ``n_patterns(h)^2 + SPARSE_PAIR_COST * sum_{light c} presence_c^2`` subject to
    ``n_patterns <= max_patterns`` and ``h <= MAX_HEAVY``. Returns ``(heavy_cols, light_cols, pattern_id_per_row)``.
    """
    xc = x.tocsc()
    presence = np.diff(xc.indptr)
    order = np.argsort(-presence, kind="stable")
    tail = np.concatenate([np.cumsum((presence[order].astype(np.float64) ** 2)[::-1])[::-1], [0.0]])
    _, ids = np.unique(np.stack([labels.astype(np.float64), size], axis=1), axis=0, return_inverse=True)
    ids = ids.ravel().astype(np.int64)
    best_cost, best_h, best_ids = float(ids.max() + 1) ** 2 + SPARSE_PAIR_COST * tail[0], 0, ids
    for h in range(1, min(len(order), MAX_HEAVY) + 1):
        if presence[order[h - 1]] < 2:  # a column in one window pairs with nothing
            break
        col = xc[:, int(order[h - 1])].toarray().ravel().astype(np.int64)
        _, ids = np.unique(ids * (int(col.max()) + 1) + col, return_inverse=True)
        n_pat = int(ids.max()) + 1
        if n_pat > max_patterns or float(n_pat) ** 2 >= best_cost:
            break
        cost = float(n_pat) ** 2 + SPARSE_PAIR_COST * tail[h]
        if cost < best_cost:
            best_cost, best_h, best_ids = cost, h, ids
    return order[:best_h], order[best_h:], best_ids


def _verdict(dot, size_a, size_b, similarity: str, gamma: float) -> np.ndarray:
    """``sim >= gamma`` from dot products: cosine rows are pre-normalised (``dot`` is the cosine);
    jaccard ``g / (a + b - g) >= gamma`` is ``g (1 + gamma) >= gamma (a + b)`` (integers, exact).
    An empty window has similarity 0 with everything."""
    if similarity == "cosine":
        return dot >= gamma
    hit = dot * (1.0 + gamma) >= gamma * (size_a + size_b)
    both_empty = (size_a == 0) & (size_b == 0)
    return np.where(both_empty, gamma <= 0, hit) if np.any(both_empty) else hit


def _count_sparse(batch: _Batch, keys_unique: np.ndarray, spec: ContextSpec) -> np.ndarray:
    """Exact counts for the sparse (bag/positional) representations via heavy patterns.

    ``gram(r, k) = heavy(r) . heavy(k) + light(r) . light(k)``. Rows with equal (type, size, heavy
    part) form a pattern; pairs of patterns are compared on the heavy part alone (a small dense
    matrix), which is exact for every pair of rows sharing no light column. The pairs that do share
    a light column come from a sparse product and replace their heavy-only verdict with the exact
    one. Exact for any split; the split only decides the speed.
    """
    labels = batch.labels
    u = len(labels)
    gamma = spec.gamma - SIM_TOLERANCE
    sim = spec.similarity
    x, size = _sparse_from_keys(keys_unique, spec)
    heavy, light, pat = _heavy_patterns(x, labels, size, spec.max_patterns)
    if sim == "cosine":   # normalise rows: dot products become cosines
        x = (sp.diags(np.where(size > 0, 1.0 / np.maximum(size, 1e-30), 0.0)) @ x).tocsr()
    dtype = np.float32 if sim == "cosine" else np.float64   # jaccard dots are exact integers
    n_pat = int(pat.max()) + 1
    first = np.zeros(n_pat, dtype=np.int64)
    first[pat[::-1]] = np.arange(u)[::-1]
    # pattern ids are sorted by (type, size, heavy part): each type is a contiguous range
    p_label, p_size = labels[first], size[first]
    p_xh = x[first][:, heavy].toarray().astype(dtype)
    p_mult = np.bincount(pat, weights=batch.mult, minlength=n_pat)
    gpat = p_xh @ p_xh.T
    p_hits = np.zeros(n_pat)
    lo_row, hi_row = _type_ranges(p_label)
    for a, b, lo, hi in _row_blocks(lo_row, hi_row, spec.block_elements):
        hit = _verdict(gpat[a:b, lo:hi], p_size[a:b, None], p_size[None, lo:hi], sim, gamma)
        if p_label[a] != p_label[b - 1]:
            hit &= p_label[a:b, None] == p_label[None, lo:hi]
        p_hits[a:b] = hit @ p_mult[lo:hi]
    counts = p_hits[pat]
    # exact verdicts for the pairs that share a light column
    if len(light):
        xl = x[:, light].tocsr().astype(dtype)
        xlt = xl.T.tocsr()
        presence = np.diff(xlt.indptr).astype(np.float64)
        work = np.cumsum(np.asarray((xl != 0) @ presence).ravel())
        n_blocks = int(work[-1] // spec.block_elements) + 1
        edges = np.unique(np.concatenate([[0], np.searchsorted(work, np.arange(1, n_blocks) * spec.block_elements), [u]]))
        one_type = labels[0] == labels[-1]
        for a, b in zip(edges[:-1], edges[1:]):
            q = (xl[a:b] @ xlt).tocoo()
            r, k, qd = q.row.astype(np.int64) + a, q.col.astype(np.int64), q.data
            if not one_type:
                same = labels[r] == labels[k]
                r, k, qd = r[same], k[same], qd[same]
            hd = gpat[pat[r], pat[k]]
            sa, sb = size[r], size[k]
            change = _verdict(hd + qd, sa, sb, sim, gamma) != _verdict(hd, sa, sb, sim, gamma)
            if change.any():
                rc, kc = r[change], k[change]
                sign = np.where(_verdict((hd + qd)[change], sa[change], sb[change], sim, gamma), 1.0, -1.0)
                counts += np.bincount(rc, weights=sign * batch.mult[kc], minlength=u)
    # counts include the row itself: s(r, r) = 1 unless the window is empty (then 0)
    counts -= np.where(size > 0, 1.0, 0.0) >= gamma
    return counts


def _plan_batches(type_sizes: list[tuple[int, int]], pack_rows: int):
    """Group (type, n) pairs: large types alone, small ones packed up to ``pack_rows`` rows."""
    batches, cur, cur_n = [], [], 0
    for v, n in sorted(type_sizes, key=lambda x: (x[1], x[0])):
        if n >= pack_rows:
            batches.append([v])
            continue
        if cur and cur_n + n > pack_rows:
            batches.append(cur)
            cur, cur_n = [], 0
        cur.append(v)
        cur_n += n
    if cur:
        batches.append(cur)
    return batches


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
        if hidden is None:
            raise DataError("representation 'hidden' needs the student's hidden states",
                            field="detection.representation",
                            fix="run rock stats score with save_hidden, or use 'bag'/'positional'")
        if len(hidden) != len(tokens):
            raise DataError(f"hidden states have {len(hidden)} rows, the token table {len(tokens)}",
                            field="hidden", fix="re-run rock stats score for this checkpoint")
    rho = np.zeros(len(ph_index), dtype=np.float64)
    if len(ph_index) == 0:
        return rho
    v_of = tokens[ph_index]
    order = np.argsort(v_of, kind="stable")
    sorted_v = v_of[order]
    change = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(order)]])
    groups = {int(sorted_v[s]): order[s:e] for s, e in zip(starts, ends)}
    sizes = [(v, len(g)) for v, g in groups.items() if len(g) >= 2]
    rng = np.random.default_rng(spec.seed)
    batches = _plan_batches(sizes, spec.pack_rows)
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
        occ = ph_index[members]
        if spec.representation == "hidden":
            batch = _dedupe(labels, None)
            counts = _count_dense(batch, pooled_hidden(occ, hidden, lo, hi, spec.radius), spec)
        else:
            keys = window_keys(occ, tokens, lo, hi, spec)
            batch = _dedupe(labels, keys)
            keys_u = np.zeros((len(batch.labels), keys.shape[1]), np.int64)
            keys_u[batch.inverse] = keys
            counts = _count_sparse(batch, keys_u, spec)
        n_type = {v: len(groups[v]) for v in batch_types}
        denom = np.array([n_type[int(v)] - 1 for v in labels], dtype=np.float64)
        rho[members] = counts[batch.inverse] / denom
    return rho


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
        mat, size = _sparse_from_keys(keys, spec)
        x, xs, size_ref = mat, mat[ref], size[ref]
    hits = np.zeros(n, dtype=np.float64)
    rows = max(1, spec.block_elements // (m + 1))
    for a in range(0, n, rows):
        b = min(n, a + rows)
        if size is None:
            s = x[a:b] @ xs.T
        else:
            gram = (x[a:b] @ xs.T).toarray()
            s = _sim_values(gram, size[a:b, None], size_ref[None, :], spec.similarity)
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
