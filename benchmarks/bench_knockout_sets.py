"""Benchmark: window-level knockout set sizes (Eq. 21) on a paper-scale Zipf simulation (issue 13).

The corpus is :func:`rock.knockout.simulate.zipf_corpus`: 500 trajectories of 300-1,500 tokens
(the MATH-500 detection set), Zipf (s = 1.1) token ids over 6,000 types, log-normal correlated
pre/post losses, and 30 planted recurring high-divergence segments (2-3 rock tokens after two
fixed context tokens). The whole context-aware detection runs with its default config (tau
quantiles 0.8, w = 3, bag cosine, gamma 0.5, eta 0.05; K_screen = 200), then the screening pool's
window sets are built by

* the old rule: every pool token at any position of any of v's windows (``any_occurrence``,
  share 0), and
* the new rule: pool tokens that are high-divergence occurrences themselves inside v's
  high-divergence windows, in at least ``window_min_share`` of them (default 0.25), printed for a
  grid of shares.

Printed per rule: the size distribution of |S_W(v)| (v included), the sizes at ranks 1 and 10,
planted rock tokens whose set is exactly their segment's pool rock tokens, and members that share
no planted segment with v (chance co-occurrences). Targets (issue 13): median <= 5, max <= 20.

    python benchmarks/bench_knockout_sets.py              # 500 trajectories (~10-30 s)
    python benchmarks/bench_knockout_sets.py --trajectories 100
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARES = (0.0, 0.05, 0.1, 0.2, 0.25, 0.5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=int, default=500)
    ap.add_argument("--k-screen", type=int, default=200)
    ap.add_argument("--share", type=float, default=None, help="the new rule's share (default: config default)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")

    from protocol import emit
    from rock.detect.context import ContextSpec
    from rock.detect.core import DetectionConfig, Occurrences, detect
    from rock.knockout import pool as kpool
    from rock.knockout.config import KnockoutConfig
    from rock.knockout.simulate import planted_partners, unexplained_members, zipf_corpus

    share = KnockoutConfig().window_min_share if args.share is None else args.share
    t0 = time.perf_counter()
    post, pre, segments = zipf_corpus(args.trajectories)
    ranking, windows, _, info = detect(Occurrences.from_tables(post, pre),
                                       DetectionConfig(k_screen=args.k_screen), ContextSpec())
    pool = kpool.screening_pool(ranking)
    print(f"corpus: {args.trajectories} trajectories, {len(post):,} tokens, {post['token_id'].nunique():,} "
          f"types; detection: {info['n_rock_occ']:,} rock occurrences, {len(windows):,} windows; "
          f"pool {len(pool)} ({time.perf_counter() - t0:.1f} s)")
    planted = planted_partners(segments, pool["token_id"])

    def report(label, sets):
        d = kpool.size_distribution(sets["window_set_size"])
        ws = sets.set_index("token_id")["window_set"]
        exact = sum(set(ws[v]) == planted[v] for v in planted)
        print(f"{label:28s} median {d['median']:5g}  mean {d['mean']:6.2f}  p90 {d['p90']:5g}  max {d['max']:4d}"
              f"  rank1 {sets['window_set_size'].iloc[0]:4d}  rank10 {sets['window_set_size'].iloc[9]:4d}"
              f"  planted exact {exact}/{len(planted)}  chance members {unexplained_members(sets, segments)}")
        return d

    members = pool["token_id"]
    old = report("old (any occurrence, union)",
                 kpool.window_sets(pool, windows, post, members=members, min_share=0.0, rule="any_occurrence"))
    for s in SHARES:
        report(f"new (high-div., share {s:g})", kpool.window_sets(pool, windows, post, members=members, min_share=s))
    new = report(f"new, default share {share:g}", kpool.window_sets(pool, windows, post, members=members,
                                                                    min_share=share))
    print(f"ratio (new median set size): {new['median']:g}   (target <= 5; old rule {old['median']:g})")
    print(f"ratio (new max set size): {new['max']}   (target <= 20; old rule {old['max']})")
    note = f"{args.trajectories} trajectories Zipf + planted segments, share {share:g}"
    emit("knockout_window_set_median", new["median"], 5, direction="<=", unit="tokens",
         note=f"{note}; old rule {old['median']:g}")
    emit("knockout_window_set_max", new["max"], 20, direction="<=", unit="tokens",
         note=f"{note}; old rule {old['max']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
