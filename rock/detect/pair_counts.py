"""Exact within-type pair counts of Eq. 10 (:func:`rock.detect.context.context_consistency`).

Exactness and cost. Eq. 10 is computed exactly: no sketching, no sampling. Within each token type identical context vectors are merged
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

``spec`` is a :class:`rock.detect.context.ContextSpec` (representation, similarity, gamma and the
speed settings ``block_elements`` and ``max_patterns``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

#: tolerance of the test ``s >= gamma``: float32 dot products of equal vectors give 1 - 1e-7
SIM_TOLERANCE = 1e-6
#: cost of one sparse pair entry relative to one dense pattern pair (measured order of magnitude)
SPARSE_PAIR_COST = 20.0
#: at most this many heavy columns are tried (speed only)
MAX_HEAVY = 64


# --------------------------------------------------------------------------------------------
# representation matrices
# --------------------------------------------------------------------------------------------

def sparse_from_keys(keys: np.ndarray, spec) -> tuple[sp.csr_matrix, np.ndarray]:
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


def sim_values(dot, size_a, size_b, similarity: str) -> np.ndarray:
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
class PairBatch:
    """Rows of one or more token types, deduplicated within type."""

    labels: np.ndarray        # type label per unique row
    mult: np.ndarray          # multiplicity per unique row
    inverse: np.ndarray       # occurrence -> unique row


def dedupe(labels: np.ndarray, keys: np.ndarray | None) -> PairBatch:
    if keys is None:  # hidden states: no merging
        n = len(labels)
        return PairBatch(labels, np.ones(n, np.float32), np.arange(n))
    full = np.concatenate([labels[:, None].astype(np.int64), keys], axis=1)
    uniq, inverse, counts = np.unique(full, axis=0, return_inverse=True, return_counts=True)
    return PairBatch(uniq[:, 0], counts.astype(np.float32), inverse.ravel())


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


def count_dense(batch: PairBatch, dense: np.ndarray, spec) -> np.ndarray:
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


def count_sparse(batch: PairBatch, keys_unique: np.ndarray, spec) -> np.ndarray:
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
    x, size = sparse_from_keys(keys_unique, spec)
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


def plan_batches(type_sizes: list[tuple[int, int]], pack_rows: int):
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
