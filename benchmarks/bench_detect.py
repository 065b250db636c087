"""Benchmark: Rock Token detection at paper scale, and gradient-geometry memory (issue 4, "Scale").

1. **Detection at paper scale.** A synthetic occurrence table shaped like the paper's detection
   corpus: 500 trajectories of 3,000-5,000 tokens (about 2M occurrences), token ids drawn from a
   Zipf law (s = 1.1) over V = 151,936 ids, pre- and post-OPD losses log-normal and correlated.
   In a fresh process with 2 threads: read both token tables (parquet), run the whole context-aware
   detection with the default config (tau quantiles 0.8, w = 3, bag-of-tokens cosine, gamma 0.5,
   eta 0.05: thresholds, O_PH, rho over every type, CCR, R_ctx, ranking, windows, density) and
   write its tables. Wall-clock and the process's peak RSS (VmHWM) are measured.
   Targets: at most 120 s and 4 GB on 2 cores.
2. **Against naive all-pairs similarity.** On a subset (the persistent high-loss occurrences of the
   most frequent types, capped), Eq. 10 is computed (a) by ``rock.detect.context`` and (b) naively,
   by materialising every window's bag-of-tokens vector and the full ``n x n`` cosine matrix per
   type (dense numpy), and (c) by the pure-Python pair loop ``naive_rho`` on a smaller subset. The
   three agree exactly; the printed ratios are naive time / ours. The naive dense cost is also
   extrapolated to the whole corpus (sum over types of n_v^2 pairs).
3. **Geometry memory.** :class:`rock.geometry.GradientAccumulator` at V = 151,936 with 400 member
   types (100 rocks, 100 high-KL, 200 random) is fed reverse-KL gradients of random logits for
   1,024 and for 4,096 positions (each in a fresh process); peak RSS must not grow with positions.

    python benchmarks/bench_detect.py              # everything (~3-5 minutes on 2 shared cores)
    python benchmarks/bench_detect.py --quick      # 100 trajectories, smaller subsets
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

V = 151_936
THREADS = "2"


def _vm(field: str) -> float:
    """A /proc/self/status field in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def synthetic_tables(n_traj: int, seed: int = 0):
    """Post and pre token tables (pandas) with Zipf token ids and correlated log-normal losses."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    lengths = rng.integers(3000, 5001, size=n_traj)
    n = int(lengths.sum())
    p = np.arange(1, V + 1, dtype=np.float64) ** -1.1
    p /= p.sum()
    ids = rng.permutation(V)[rng.choice(V, size=n, p=p)]
    post = np.exp(rng.normal(-3.0, 1.5, size=n))
    pre = post * np.exp(0.8 * rng.normal(size=n))
    traj = np.repeat(np.arange(n_traj), lengths).astype(np.int32)
    pos = (np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)).astype(np.int32)
    base = {"trajectory": traj, "position": pos, "token_id": ids.astype(np.int32)}
    return (pd.DataFrame({**base, "reverse_kl": post.astype(np.float32)}),
            pd.DataFrame({**base, "reverse_kl": pre.astype(np.float32)}))


# --------------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------------

def child_detect(table_dir: str) -> dict:
    import pandas as pd

    from rock.detect.context import ContextSpec
    from rock.detect.core import DetectionConfig, Occurrences, detect

    rss0 = _vm("VmRSS")
    t0 = time.perf_counter()
    post = pd.read_parquet(Path(table_dir) / "tokens_post.parquet")
    pre = pd.read_parquet(Path(table_dir) / "tokens_pre.parquet")
    occ = Occurrences.from_tables(post, pre)
    t1 = time.perf_counter()
    ranking, windows, density, info = detect(occ, DetectionConfig(), ContextSpec())
    t2 = time.perf_counter()
    out = Path(table_dir) / "out"
    out.mkdir(exist_ok=True)
    ranking.to_parquet(out / "ranking.parquet")
    windows.to_parquet(out / "windows.parquet")
    density.to_csv(out / "density.csv", index=False)
    t3 = time.perf_counter()
    return {"seconds_total": t3 - t0, "seconds_load": t1 - t0, "seconds_detect": t2 - t1,
            "seconds_write": t3 - t2, "peak_rss_mib": _vm("VmHWM"), "rss_before_mib": rss0,
            "n_occurrences": info["n_occurrences"], "n_ph": info["n_ph"], "n_rock_occ": info["n_rock_occ"],
            "n_types": info["n_types"], "n_windows": len(windows)}


def child_geometry(positions: int) -> dict:
    import torch

    from rock.geometry import GradientAccumulator, reverse_kl_logit_grad

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 5000, (positions,), generator=g)
    counts = {int(t): int(c) for t, c in zip(*torch.unique(tokens, return_counts=True))}
    members = list(counts)[:400]
    _vm("VmHWM")
    acc = GradientAccumulator(counts, members, V)
    chunk = 128
    t0 = time.perf_counter()
    for a in range(0, positions, chunk):
        b = min(positions, a + chunk)
        s = torch.randn(b - a, V, generator=g)
        t = torch.randn(b - a, V, generator=g)
        acc.update(reverse_kl_logit_grad(s, t), tokens[a:b])
    acc.finalize()
    return {"positions": positions, "members": len(members), "accumulator_mib": acc.nbytes() / 2**20,
            "peak_rss_mib": _vm("VmHWM"), "seconds": time.perf_counter() - t0}


def _run_child(*args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS, MKL_NUM_THREADS=THREADS)
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# naive comparison (in this process, 2 threads)
# --------------------------------------------------------------------------------------------

def naive_dense_rho(ph_index, tokens, trajectory, spec):
    """Eq. 10 by brute force: every window's dense bag vector, the full cosine matrix per type."""
    import numpy as np

    from rock.detect.context import trajectory_bounds, window_keys

    lo, hi = trajectory_bounds(trajectory)
    keys = window_keys(ph_index, tokens, lo, hi, spec)
    rho = np.zeros(len(ph_index))
    types = tokens[ph_index]
    for v in np.unique(types):
        idx = np.flatnonzero(types == v)
        if len(idx) < 2:
            continue
        k = keys[idx]
        cols, inv = np.unique(k[k >= 0], return_inverse=True)
        x = np.zeros((len(idx), len(cols)), dtype=np.float64)
        rows = np.repeat(np.arange(len(idx)), k.shape[1])[k.reshape(-1) >= 0]
        np.add.at(x, (rows, inv), 1.0)
        norm = np.linalg.norm(x, axis=1)
        s = (x @ x.T) / np.outer(norm, norm)
        np.fill_diagonal(s, -np.inf)
        rho[idx] = (s >= spec.gamma - 1e-6).sum(1) / (len(idx) - 1)
    return rho


def compare_naive(post, pre, cap: int, cap_python: int) -> dict:
    import numpy as np

    from rock.detect.context import ContextSpec, context_consistency, naive_rho
    from rock.detect.core import DetectionConfig, Occurrences, persistent_high_loss, thresholds

    occ = Occurrences.from_tables(post, pre)
    tp, tq = thresholds(occ, DetectionConfig())
    ph = np.flatnonzero(persistent_high_loss(occ.loss_pre, occ.loss_post, tp, tq))
    counts = np.bincount(occ.token_id[ph])
    spec = ContextSpec()
    out = {}
    total_pairs = float((counts.astype(np.float64) ** 2).sum())
    for label, limit, naive_fn in (("dense", cap, naive_dense_rho), ("python", cap_python, naive_rho)):
        top = np.argsort(-counts)[:3]
        sub = np.concatenate([ph[occ.token_id[ph] == v][:limit] for v in top])
        sub.sort()
        t0 = time.perf_counter()
        fast = context_consistency(sub, occ.token_id, occ.trajectory, spec)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = naive_fn(sub, occ.token_id, occ.trajectory, spec)
        t_slow = time.perf_counter() - t0
        pairs = float(sum(min(limit, counts[v]) ** 2 for v in top))
        out[label] = {"occurrences": int(len(sub)), "pairs": pairs, "seconds_ours": t_fast,
                      "seconds_naive": t_slow, "ratio": t_slow / t_fast,
                      "max_abs_diff": float(np.abs(fast - slow).max()),
                      "naive_full_corpus_estimate_s": t_slow / pairs * total_pairs}
    out["total_pairs"] = total_pairs
    out["ph_occurrences"] = int(len(ph))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="100 trajectories and small subsets")
    ap.add_argument("--trajectories", type=int, default=500)
    args = ap.parse_args()
    if args.child:
        kind, value = args.child
        res = child_detect(value) if kind == "detect" else child_geometry(int(value))
        print(json.dumps(res))
        return 0

    from protocol import emit

    os.environ.update(OMP_NUM_THREADS=THREADS, OPENBLAS_NUM_THREADS=THREADS)
    n_traj = 100 if args.quick else args.trajectories
    t0 = time.perf_counter()
    post, pre = synthetic_tables(n_traj)
    print(f"synthetic corpus: {n_traj} trajectories, {len(post):,} occurrences, "
          f"{post['token_id'].nunique():,} types, V = {V:,} ({time.perf_counter() - t0:.1f} s to build)")
    with tempfile.TemporaryDirectory() as tmp:
        post.to_parquet(Path(tmp) / "tokens_post.parquet")
        pre.to_parquet(Path(tmp) / "tokens_pre.parquet")
        det = _run_child("detect", tmp)
    print("\n1. whole context-aware detection, fresh process, 2 threads")
    print(f"   load {det['seconds_load']:.1f} s + detect {det['seconds_detect']:.1f} s + write "
          f"{det['seconds_write']:.1f} s = {det['seconds_total']:.1f} s; peak RSS {det['peak_rss_mib']:.0f} MiB "
          f"(interpreter + imports {det['rss_before_mib']:.0f} MiB)")
    print(f"   |O_PH| = {det['n_ph']:,}, rock occurrences {det['n_rock_occ']:,}, types {det['n_types']:,}, "
          f"windows {det['n_windows']:,}")
    print(f"ratio (detection wall-clock): {det['seconds_total']:.1f} s   (target <= 120 s)")
    print(f"ratio (detection peak memory): {det['peak_rss_mib']:.0f} MiB   (target <= 4096 MiB)")
    emit("detect_paper_scale_seconds", det["seconds_total"], 120, direction="<=", unit="s",
         note=f"{det['n_occurrences']:,} occurrences, 2 threads, load+detect+write")
    emit("detect_paper_scale_peak_rss", det["peak_rss_mib"], 4096, direction="<=", unit="MiB",
         note="VmHWM of the detection process")

    cmp = compare_naive(post, pre, cap=1500 if args.quick else 3000, cap_python=150 if args.quick else 250)
    print("\n2. Eq. 10 on a subset (3 most frequent types), ours vs naive all-pairs")
    for label in ("dense", "python"):
        c = cmp[label]
        print(f"   naive {label:6s}: {c['occurrences']:,} occurrences, {c['pairs']:.2e} pairs: ours "
              f"{c['seconds_ours']:.3f} s, naive {c['seconds_naive']:.3f} s, ratio {c['ratio']:.1f}x, "
              f"max |rho diff| {c['max_abs_diff']:.1e}; naive on the whole corpus ~"
              f"{c['naive_full_corpus_estimate_s']:.0f} s")
    print(f"   whole corpus: {cmp['ph_occurrences']:,} PH occurrences, {cmp['total_pairs']:.2e} same-type pairs")
    print(f"ratio (naive dense all-pairs / ours, same subset): {cmp['dense']['ratio']:.1f}x   (target >= 1x)")
    emit("detect_vs_naive_dense_all_pairs", cmp["dense"]["ratio"], 1.0, unit="x",
         note=f"{cmp['dense']['occurrences']} occurrences, exact agreement {cmp['dense']['max_abs_diff']:.0e}")
    emit("detect_vs_naive_python_pairs", cmp["python"]["ratio"], 1.0, unit="x",
         note=f"{cmp['python']['occurrences']} occurrences")

    small, large = (512, 2048) if args.quick else (1024, 4096)
    g1, g2 = _run_child("geometry", str(small)), _run_child("geometry", str(large))
    print("\n3. gradient geometry accumulator, V = 151,936, fresh processes")
    for g in (g1, g2):
        print(f"   {g['positions']:5d} positions, {g['members']} member types: accumulator "
              f"{g['accumulator_mib']:.0f} MiB, peak RSS {g['peak_rss_mib']:.0f} MiB, {g['seconds']:.1f} s")
    growth = g2["peak_rss_mib"] / g1["peak_rss_mib"]
    print(f"ratio (peak RSS at {large} / {small} positions): {growth:.3f}x   (target <= 1.1x)")
    emit("geometry_memory_growth_4x_positions", growth, 1.1, direction="<=", unit="x",
         note=f"accumulator {g2['accumulator_mib']:.0f} MiB = V x (400 members + G_balanced) x 8 B + indices")
    return 0


if __name__ == "__main__":
    sys.exit(main())
